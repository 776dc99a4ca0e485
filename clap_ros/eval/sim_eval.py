"""`clap-ros eval-sim`: closed-loop evaluation of a model bundle on the simulated arm, over DDS.

The stack under test is the ``bringup`` launch graph with ``use_sim:=true`` (sim_driver,
encoder_node, planner_node, action_node as separate processes, started by the same
clap_ros.launching runner `clap-ros launch` uses), on loopback with its own ROS_DOMAIN_ID. Nothing
is shortcut: the evaluator only does what an operator would do, through the nodes' public
interfaces. Per episode it

1. sets the driver's ``seed`` parameter and calls ``/sim_driver/reset`` (layout + appearance),
2. publishes the world's instruction (from ``/sim/status``) on ``/clap/instruction``,
3. waits until the planner has produced a plan for the new episode, then calls
   ``/action_node/enable``,
4. runs until ``/sim/status`` reports success or the task's timeout (sim time) passes,
5. calls ``/action_node/stop`` (smooth stop) and records what crossed the wire: commands sent,
   how far the arm moved, commands the driver rejected, the nodes' worst diagnostics.

The graph is started once per task (the sim task is a start-up parameter of the driver) and kept
up across that task's episodes. Episode seeds are ``seed, seed+1, ...``, identical for every task.
Bags (``--record-bags``) are written with the episode recorder of clap_ros.nodes.episode_runner.

``--policy expert`` runs the scripted expert instead of the stack: a sim_driver process and one
expert_node process per episode (record_episodes_ros, as `clap-ros demo --policy expert`).
``--mode direct`` is clap_ros.eval.direct_eval (one process, virtual clock, the same episodes,
figures and files); what both modes report is clap_ros.eval.sim_results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from clap_ros import topics as T
from clap_ros.eval.sim_results import (  # noqa: F401  (re-exported: the eval-sim API)
    ACTION_NODE,
    DEFAULT_TIMEOUT_S,
    DRIVER,
    MODES,
    POLICIES,
    TASK_TIMEOUT_S,
    EpisodeOutcome,
    EvalConfig,
    EvalError,
    goal_progress,
    report_markdown,
    resolve_model,
    runtime_figures,
    status_goal_distance,
    summarize,
    write_result,
)


def _eval_client_class():
    """The rclpy side, built on the episode recorder (its driver services, status parsing and
    raw-CDR bag writing), plus what evaluation adds: the instruction, the action node's services
    and per-episode counters. Defined lazily so importing this module needs no rclpy."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Int32MultiArray, String
    from std_srvs.srv import SetBool, Trigger
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import LATCHED_QOS
    from clap_ros.nodes.episode_runner import EpisodeRecorder, recorded_topics

    # Best effort matches reliable and best-effort publishers alike: the evaluator only observes.
    observe = QoSProfile(
        depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT
    )

    class EvalClient(EpisodeRecorder):
        def __init__(self, domain_id: int, profile, command_mode: str, use_sim_time: bool):
            topics = recorded_topics(profile, command_mode, wrist_camera=False)
            topics[T.PLAN] = (JointTrajectory, observe, T.TYPES["joint_trajectory"])
            topics[T.PLAN_TOKENS] = (Int32MultiArray, observe, T.TYPES["int32_array"])
            topics[T.DIAGNOSTICS] = (DiagnosticArray, observe, T.TYPES["diagnostics"])
            self.bag_topics = {k: v[2] for k, v in topics.items()}
            drv = profile.driver
            self.arm_topic = (
                drv.trajectory_topic if command_mode == "joint_trajectory" else drv.forward_topic
            )
            self.gripper_topic = drv.gripper_command_topic
            self.arm_joints = list(profile.joint_names)
            self.counts: Dict[str, int] = {}
            self.q0: Optional[np.ndarray] = None
            self.q_last: Optional[np.ndarray] = None
            self.motion = 0.0
            self.worst: Dict[str, dict] = {}
            self.last_diag: Dict[str, dict] = {}
            self.counting = False
            self.judging = False  # diagnostics count against the episode only while enabled
            self.figures: Dict[str, Dict[str, str]] = {}
            super().__init__(
                domain_id,
                {k: (v[0], v[1]) for k, v in topics.items()},
                use_sim_time,
                DRIVER,
                drv.joint_states_topic,
            )
            self.pub_instruction = self.node.create_publisher(String, T.INSTRUCTION, LATCHED_QOS)
            self.enable_client = self.node.create_client(SetBool, "/%s/enable" % ACTION_NODE)
            self.stop_client = self.node.create_client(Trigger, "/%s/stop" % ACTION_NODE)
            self._SetBool, self._Trigger = SetBool, Trigger

        def _callback(self, topic: str):
            write = super()._callback(topic)

            def cb(data: bytes):
                write(data)
                self._observe(topic, data)

            return cb

        def _observe(self, topic: str, data: bytes) -> None:
            if topic == self.joint_states_topic:
                msg = deserialize_message(data, JointState)
                index = {n: i for i, n in enumerate(msg.name)}
                if all(j in index for j in self.arm_joints):
                    q = np.array([msg.position[index[j]] for j in self.arm_joints])
                    with self.lock:
                        self.q_last = q
                        if self.counting and self.q0 is not None:
                            self.motion = max(self.motion, float(np.max(np.abs(q - self.q0))))
                return
            if topic == T.DIAGNOSTICS:
                msg = deserialize_message(data, DiagnosticArray)
                with self.lock:
                    for st in msg.status:
                        entry = {
                            "level": int.from_bytes(st.level, "little")
                            if isinstance(st.level, bytes)
                            else int(st.level),
                            "message": st.message,
                            "values": {kv.key: kv.value for kv in st.values},
                        }
                        self.last_diag[st.name] = entry
                        if self.counting and self.judging:
                            prev = self.worst.get(st.name)
                            if prev is None or entry["level"] > prev["level"]:
                                self.worst[st.name] = {
                                    "level": entry["level"],
                                    "message": entry["message"],
                                }
                return
            with self.lock:
                self.counts[topic] = self.counts.get(topic, 0) + 1

        def count(self, topic: str) -> int:
            with self.lock:
                return self.counts.get(topic, 0)

        def begin_counting(self) -> None:
            with self.lock:
                self.counts = {}
                self.worst = {}
                self.motion = 0.0
                self.q0 = None if self.q_last is None else self.q_last.copy()
                self.counting = True
                self.judging = True
                self.figures = {}

        def end_judging(self) -> None:
            """Diagnostics from here on (the requested stop) say nothing about the episode."""
            with self.lock:
                self.judging = False
                self.figures = {
                    name: {
                        k: v
                        for k, v in d["values"].items()
                        if k.endswith(("_rate_hz", "_p50_ms", "_p99_ms", "_run_n"))
                    }
                    for name, d in self.last_diag.items()
                }

        def end_counting(self) -> None:
            with self.lock:
                self.counting = False

        def publish_instruction(self, text: str) -> None:
            self.pub_instruction.publish(String(data=text))

        def enable(self, on: bool, timeout: float = 10.0):
            return self.call(self.enable_client, self._SetBool.Request(data=bool(on)), timeout)

        def stop(self, timeout: float = 10.0):
            return self.call(self.stop_client, self._Trigger.Request(), timeout)

    return EvalClient


class SimEvaluator:
    """Runs an EvalConfig; ``run()`` returns the result dict that is also written to disk."""

    def __init__(self, cfg: EvalConfig, log=None):
        cfg.validate()
        if cfg.mode != "ros":
            raise ValueError(
                "SimEvaluator runs --mode ros; direct mode is clap_ros.eval.direct_eval.evaluate"
            )
        self.cfg = cfg
        self.model = "expert" if cfg.policy == "expert" else resolve_model(cfg.model)
        self.out = (
            Path(cfg.out)
            if cfg.out
            else Path("eval_results") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        )
        self.domain_id = int(
            cfg.domain_id
            if cfg.domain_id is not None
            else os.environ.get("ROS_DOMAIN_ID") or random.SystemRandom().randint(1, 100)
        )
        self.use_sim_time = cfg.real_time_factor != 1.0
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        # Nothing earlier is overwritten: refuse before any process starts.
        if (self.out / "result.json").exists():
            raise EvalError("%s already holds a result.json; choose another --out" % self.out)
        if cfg.record_bags:
            from clap_ros.nodes.episode_runner import episode_bag_name

            taken = [
                str(self.out / "bags" / episode_bag_name(cfg.robot, t, cfg.seed + i))
                for t in cfg.tasks
                for i in range(cfg.episodes)
            ]
            taken = [p for p in taken if Path(p).exists()]
            if taken:
                raise EvalError("bags already exist (never overwritten): %s" % ", ".join(taken))
        self._stop_requested = False

    # -- the graph -------------------------------------------------------------------------------
    def _graph_values(self, task: str) -> dict:
        from clap_ros.launching.graph import BRINGUP, resolve_arguments

        overrides = {
            "robot": self.cfg.robot,
            "model": str(self.model),
            "backend": self.cfg.backend,
            "command_mode": self.cfg.command_mode,
            "use_sim": "true",
            "task": task,
            "seed": str(self.cfg.seed),
            "randomize": str(self.cfg.randomize).lower(),
            "real_time_factor": repr(float(self.cfg.real_time_factor)),
            "use_sim_time": str(self.use_sim_time).lower(),
            "enable_on_start": "false",
        }
        if self.cfg.params_file:
            overrides["params_file"] = str(Path(self.cfg.params_file).resolve())
        if self.cfg.reflexes is not None:
            overrides["reflexes"] = str(self.cfg.reflexes).lower()
        return resolve_arguments(BRINGUP, overrides)

    def _start_graph(self, task: str):
        from clap_ros.launching.graph import BRINGUP
        from clap_ros.launching.runner import GraphRunner

        log_dir = self.out / "logs" / task
        log_dir.mkdir(parents=True, exist_ok=True)
        runner = GraphRunner(
            BRINGUP,
            self._graph_values(task),
            log_dir=log_dir,
            out=open(log_dir / "graph.log", "a"),
            stop_timeout=10.0,
            env={
                "ROS_DOMAIN_ID": str(self.domain_id),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            },
        )
        runner.start()
        return runner

    def _check_alive(self, runner) -> None:
        for p in runner.procs:
            if not p.running():
                raise EvalError(
                    "%s exited (code %s) during the evaluation; its log (%s) ends:\n%s"
                    % (p.name, p.returncode, p.log_path, p.log_text(tail=2500))
                )

    def _wait(self, runner, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(runner)
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise EvalError("%s within %.0f s (node logs: %s)" % (what, timeout, runner.log_dir))

    # -- episodes --------------------------------------------------------------------------------
    def _episode(self, client, runner, task: str, seed: int) -> EpisodeOutcome:
        from rclpy.serialization import serialize_message
        from std_msgs.msg import String

        from clap_ros.data.bags import BagWriter
        from clap_ros.nodes.episode_runner import RecordingError, episode_bag_name

        out = EpisodeOutcome(task=task, seed=seed)
        wall0 = time.monotonic()
        try:
            client.set_seed(seed, timeout=30.0)
            with client.lock:
                resets_before = int(client.status.get("resets", -1))
            client.reset(timeout=60.0)
        except RecordingError as e:
            raise EvalError("sim_driver: %s" % e) from None
        status = self._wait(
            runner,
            lambda: client.wait_status(
                lambda s: s.get("seed") == seed and int(s.get("resets", 0)) > resets_before, 0.1
            ),
            30.0,
            "no /sim/status for seed %d after the reset" % seed,
        )
        out.instruction = str(status.get("instruction", ""))
        bag = None
        if self.cfg.record_bags:
            path = self.out / "bags" / episode_bag_name(self.cfg.robot, task, seed)
            bag = BagWriter(path).__enter__()
            for topic, msgtype in client.bag_topics.items():
                bag.add_topic(topic, msgtype)
            bag.add_topic(T.EPISODE_OUTCOME, T.TYPES["string"])
            for k, v in (
                ("robot", self.cfg.robot),
                ("task", task),
                ("seed", seed),
                ("command_mode", self.cfg.command_mode),
                ("policy", str(self.model)),
            ):
                bag.set_custom_data(k, str(v))
            client.arm_bag(bag)
            out.bag = str(path)
        start_status = status
        try:
            plans0 = client.count(T.PLAN)
            client.publish_instruction(out.instruction)
            # A plan made after the reset (from a post-reset camera frame and this instruction)
            # must exist before the arm is enabled, else the first chunk is the old episode's.
            self._wait(
                runner,
                lambda: client.count(T.PLAN) >= plans0 + 2,
                self.cfg.plan_timeout_s,
                "planner_node published no plan after the reset of seed %d" % seed,
            )
            time.sleep(self.cfg.settle_s)
            with client.lock:
                start_status = dict(client.status)
            client.begin_counting()
            res = client.enable(True)
            if not res.success:
                raise EvalError("action_node refused to enable: %s" % res.message)
            timeout = self.cfg.timeout_for(task)
            t_enable = float(start_status.get("sim_time", 0.0))
            out.goal_distance_start_m = status_goal_distance(start_status)
            out.goal_distance_min_m = out.goal_distance_start_m
            wall_limit = time.monotonic() + timeout / self.cfg.real_time_factor * 2.0 + 30.0
            while not self._stop_requested:
                self._check_alive(runner)
                with client.lock:
                    st = dict(client.status)
                elapsed = float(st.get("sim_time", t_enable)) - t_enable
                same_episode = int(st.get("resets", 0)) == int(start_status.get("resets", 0))
                d = status_goal_distance(st) if same_episode else None
                if d is not None and (
                    out.goal_distance_min_m is None or d < out.goal_distance_min_m
                ):
                    out.goal_distance_min_m = d
                if same_episode and int(st.get("reflexes", 0)) > int(
                    start_status.get("reflexes", 0)
                ):
                    rf = st.get("reflex") or {}
                    out.reflex = str(rf.get("reason", "reflex"))
                    out.reflex_detail = str(rf.get("detail", ""))
                    break  # the real arm stops here: the episode failed
                if st.get("success") and same_episode:
                    out.success = True
                    out.time_to_success_s = elapsed
                    break
                if elapsed >= timeout:
                    break
                if time.monotonic() > wall_limit:
                    out.error = "sim time stalled: %.1f of %.0f s after %.0f wall s" % (
                        elapsed,
                        timeout,
                        time.monotonic() - wall0,
                    )
                    break
                time.sleep(0.02)
            client.end_judging()
            res = client.stop()
            if not res.success:
                out.error = out.error or "action_node ~/stop failed: %s" % res.message
            # let the smooth stop finish before the next reset moves the world
            time.sleep(0.5)
        except (EvalError, RecordingError) as e:
            out.error = str(e)
            err = e if isinstance(e, EvalError) else EvalError(str(e))
            err.outcome = out  # kept in the result although the evaluation stops
            raise err from None
        finally:
            client.end_counting()
            with client.lock:
                end = dict(client.status)
                out.commands = client.counts.get(client.arm_topic, 0)
                out.gripper_commands = client.counts.get(client.gripper_topic, 0)
                out.plans = client.counts.get(T.PLAN, 0)
                out.arm_motion_rad = client.motion
                out.worst_diagnostics = dict(client.worst)
                out.figures = dict(client.figures)
            out.duration_s = float(end.get("sim_time", 0.0)) - float(
                start_status.get("sim_time", 0.0)
            )
            if int(end.get("resets", 0)) == int(start_status.get("resets", 0)):
                out.first_point = end.get("first_point")  # the driver's, since the reset
                out.goal_distance_end_m = status_goal_distance(end)
                if out.goal_distance_end_m is not None and out.goal_distance_min_m is not None:
                    out.goal_distance_min_m = min(out.goal_distance_min_m, out.goal_distance_end_m)
            out.rejected_commands = int(end.get("rejected_commands", 0)) - int(
                start_status.get("rejected_commands", 0)
            )
            out.wall_s = time.monotonic() - wall0
            if bag is not None:
                client.start_now()
                client.stop_bag()
                outcome = dict(
                    out.to_dict(),
                    robot=self.cfg.robot,
                    appearance=end.get("appearance", {}),
                    command_mode=self.cfg.command_mode,
                    duration=out.duration_s,
                )
                bag.write_cdr(
                    T.EPISODE_OUTCOME,
                    client.now_ns(),
                    serialize_message(
                        String(data=json.dumps(outcome, sort_keys=True, default=str))
                    ),
                )
                bag.__exit__(None, None, None)
        return out

    def _run_task(self, task: str, bar) -> List[EpisodeOutcome]:
        from clap_ros.robots import load_profile

        profile = load_profile(self.cfg.robot)
        EvalClient = _eval_client_class()
        runner = self._start_graph(task)
        client = None
        outcomes: List[EpisodeOutcome] = []
        try:
            client = EvalClient(self.domain_id, profile, self.cfg.command_mode, self.use_sim_time)
            t = self.cfg.startup_timeout_s
            self._wait(
                runner,
                lambda: client.reset_client.service_is_ready(),
                t,
                "sim_driver's ~/reset service did not come up",
            )
            self._wait(
                runner,
                lambda: client.wait_status(lambda s: True, 0.1),
                t,
                "no /sim/status from sim_driver",
            )
            self._wait(
                runner,
                lambda: (
                    client.enable_client.service_is_ready()
                    and client.stop_client.service_is_ready()
                ),
                t,
                "action_node's ~/enable and ~/stop services did not come up",
            )
            for i in range(self.cfg.episodes):
                if self._stop_requested:
                    break
                seed = self.cfg.seed + i
                try:
                    out = self._episode(client, runner, task, seed)
                except EvalError as e:
                    if getattr(e, "outcome", None) is not None:
                        outcomes.append(e.outcome)
                    raise
                outcomes.append(out)
                self.log(
                    "%s seed %d: %s%s"
                    % (
                        task,
                        seed,
                        "success in %.1f s" % out.time_to_success_s if out.success else "failure",
                        (" (%s)" % out.error) if out.error else "",
                    )
                )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        task=task,
                        success="%d/%d" % (sum(o.success for o in outcomes), len(outcomes)),
                    )
        finally:
            if client is not None:
                client.close()
            runner.stop_all(signal.SIGINT)
            runner.out.close()
        return outcomes

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        bar = None
        if self.cfg.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=self.cfg.episodes * len(self.cfg.tasks),
                unit="episode",
                desc="eval-sim %s" % self.cfg.robot,
            )
        episodes: List[EpisodeOutcome] = []
        error = ""
        old = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            for task in self.cfg.tasks:
                if self._stop_requested:
                    break
                run_task = self._run_task_expert if self.cfg.policy == "expert" else self._run_task
                episodes += run_task(task, bar)
        except (EvalError, KeyboardInterrupt) as e:
            error = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        finally:
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        if self._stop_requested and not error:
            error = "stopped by SIGTERM"
        result = summarize(
            self.cfg, str(self.model), episodes, wall_s=time.time() - t0, error=error
        )
        write_result(self.out, result)
        return result

    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True

    def _run_task_expert(self, task: str, bar) -> List[EpisodeOutcome]:
        """The scripted expert over DDS, as `clap-ros demo --policy expert` runs it: one
        sim_driver process and an expert_node process per episode (record_episodes_ros), which
        streams the plan and exits once it is done; success is the driver's status then."""
        import shutil
        import tempfile

        from clap_ros.nodes.episode_runner import RecordingError, record_episodes_ros
        from clap_ros.robots import load_profile

        drv = load_profile(self.cfg.robot).driver
        arm_topic = (
            drv.trajectory_topic
            if self.cfg.command_mode == "joint_trajectory"
            else drv.forward_topic
        )
        seeds = [self.cfg.seed + i for i in range(self.cfg.episodes)]
        bag_dir = (
            (self.out / "bags")
            if self.cfg.record_bags
            else Path(tempfile.mkdtemp(prefix="eval_expert_bags_"))
        )
        try:
            results = record_episodes_ros(
                self.cfg.robot,
                task,
                seeds,
                bag_dir,
                command_mode=self.cfg.command_mode,
                randomize=self.cfg.randomize,
                real_time_factor=self.cfg.real_time_factor,
                domain_id=self.domain_id,
                progress=False,
                log_dir=self.out / "logs" / task,
            )
        except RecordingError as e:
            raise EvalError("expert episodes of %s: %s" % (task, e)) from None
        finally:
            if not self.cfg.record_bags:
                shutil.rmtree(bag_dir, ignore_errors=True)
        outcomes = []
        for r in results:
            o = EpisodeOutcome(
                task=task,
                seed=r.seed,
                instruction=r.instruction,
                success=r.success,
                time_to_success_s=r.time_to_success_s if r.success else None,
                duration_s=r.duration_s,
                wall_s=r.wall_s,
                commands=r.counts.get(arm_topic, 0),
                gripper_commands=r.counts.get(drv.gripper_command_topic, 0),
                rejected_commands=r.rejected_commands,
                goal_distance_start_m=r.goal_distance_start_m,
                goal_distance_end_m=r.goal_distance_end_m,
                goal_distance_min_m=r.goal_distance_min_m,
                first_point=r.first_point,
                bag=r.bag if self.cfg.record_bags else "",
                error=r.error,
            )
            outcomes.append(o)
            self.log(
                "%s seed %d: %s%s"
                % (
                    task,
                    o.seed,
                    "success" if o.success else "failure",
                    (" (%s)" % o.error) if o.error else "",
                )
            )
            if bar is not None:
                bar.update(1)
        return outcomes


# ---------------------------------------------------------------------------------------------
# Command line

DESCRIPTION = """\
Closed-loop evaluation of a model bundle on the simulated arm: the whole runtime (sim_driver,
encoder_node, planner_node, action_node; the `bringup` launch graph with use_sim:=true) as separate
processes over DDS on loopback with a private ROS_DOMAIN_ID. Per episode the driver is reset to the
episode's seed (layout and appearance), the world's instruction is published on /clap/instruction,
the action node is enabled once the planner has a plan, and the episode ends at success (from
/sim/status) or at the task's timeout in sim time; then the action node is stopped smoothly.

Writes OUT/result.json (per task: success rate, median time to success; per episode: seed,
instruction, success, commands sent, arm motion, rejected commands, worst diagnostics) and
OUT/report.md, plus node logs under OUT/logs/<task>/ and, with --record-bags, one MCAP bag per
episode under OUT/bags/.

--mode direct runs the same episodes in one process on a virtual clock: the sim driver's rules
(clap_ros.sim.driver_core, the code sim_driver runs), cameras rendered at their rate, the CLAP
cores driven at the nodes' rates with each inference delaying its output by the wall time it took
(or --latency-ms); --jobs N spreads episodes over N processes. --policy expert streams the
scripted expert's plan as JointTrajectory chunks through the same driver rules (in ROS mode: a
sim_driver and an expert_node process per episode). Ctrl-C writes what finished.

exit status: 0 when every episode ran (whatever the success rate), 1 if the evaluation could not
finish (a node died, a service never came up; result.json says why), 2 for bad arguments.

examples:
  clap-ros eval-sim --robot fr3 --task pick_place --episodes 20 --model models/default
  clap-ros eval-sim --task reach --task push --task pick_place --episodes 20 --out eval/fr3
  clap-ros eval-sim --task all --episodes 5 --command-mode forward_position --record-bags
  clap-ros eval-sim --mode direct --task all --episodes 50 --jobs 2
  clap-ros eval-sim --mode direct --policy expert --robot ur5e --task all --episodes 50
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-sim",
        help="closed-loop success rates of a model bundle on the simulated arm",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--robot", default="fr3", help="robot profile (fr3, panda, ur5e); default fr3")
    p.add_argument(
        "--task",
        action="append",
        default=None,
        metavar="TASK",
        help="sim task to evaluate; repeat or comma-separate for several, `all` for "
        "every task (default: pick_place)",
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    p.add_argument(
        "--model", default="models/default", help="model bundle directory (default models/default)"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        help="inference backend of the three nodes (default auto)",
    )
    p.add_argument(
        "--command-mode",
        default="joint_trajectory",
        choices=("joint_trajectory", "forward_position"),
        help="how the action node commands the driver (default joint_trajectory)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="first episode seed; episode i uses SEED+i (default 0)"
    )
    p.add_argument("--out", default=None, help="result directory (default eval_results/<UTC time>)")
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="sim seconds per episode (default per task: %s)"
        % ", ".join("%s %g" % kv for kv in TASK_TIMEOUT_S.items()),
    )
    p.add_argument(
        "--no-randomize",
        action="store_true",
        help="turn the sim's visual randomisation off (on by default)",
    )
    p.add_argument(
        "--reflexes",
        dest="reflexes",
        action="store_true",
        default=None,
        help="turn the sim driver's reflex emulation on (Franka collision/motion reflexes, UR "
        "protective stop; an episode with a reflex fails; default: the driver's, off for now)",
    )
    p.add_argument(
        "--no-reflexes", dest="reflexes", action="store_false", help="turn it off explicitly"
    )
    p.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="sim seconds per wall second; below 1 gives a slow machine headroom "
        "(every node then runs on /clock); default 1",
    )
    p.add_argument(
        "--params-file",
        default="",
        help="ros__parameters YAML for the CLAP nodes (default config/clap_nodes.yaml)",
    )
    p.add_argument(
        "--record-bags",
        action="store_true",
        help="write one MCAP rosbag2 bag per episode under OUT/bags/",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for the stack (default $ROS_DOMAIN_ID, else random)",
    )
    p.add_argument(
        "--mode",
        default="ros",
        choices=MODES,
        help="ros (default): the bringup graph's processes over DDS in real time; "
        "direct: one process, the sim driver's rules and the CLAP cores on a "
        "virtual clock (same episodes, figures and result files)",
    )
    p.add_argument(
        "--policy",
        default="model",
        metavar="{%s,oracle-expert,oracle-field,oracle:FILE.onnx,vision:FILE.onnx}"
        % ",".join(POLICIES),
        help="model (default): the bundle drives; expert: the scripted expert, "
        "streamed as expert_node streams it; --mode direct only, the diagnostic ladder: "
        "oracle-expert (the expert's plan as every RF chunk, through the action core) "
        "oracle-field (the feedback expert's chunk from the measured state, reach), "
        "oracle:FILE.onnx (a learned state-oracle: object positions + state -> chunk, "
        "from clap-train oracle) and vision:FILE.onnx (an image policy without the planner: "
        "workspace + wrist camera, instruction words, state -> chunk, from clap-train vision)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="--mode direct: run episodes in this many processes (default 1)",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help="--mode direct: delay every inference output by this much virtual time "
        "instead of the wall time the inference really took",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_tasks(items: Optional[Sequence[str]]) -> List[str]:
    from clap_ros.sim.tasks import TASKS

    names: List[str] = []
    for item in items or ["pick_place"]:
        names += [t.strip() for t in item.split(",") if t.strip()]
    if "all" in names:
        return sorted(TASKS)
    return names


def run(args) -> int:
    try:
        cfg = EvalConfig(
            robot=args.robot,
            tasks=parse_tasks(args.task),
            episodes=args.episodes,
            model=args.model,
            backend=args.backend,
            command_mode=args.command_mode,
            seed=args.seed,
            out=args.out,
            timeout_s=args.timeout,
            randomize=not args.no_randomize,
            reflexes=args.reflexes,
            real_time_factor=args.real_time_factor,
            record_bags=args.record_bags,
            domain_id=args.domain_id,
            params_file=args.params_file,
            progress=not args.no_progress,
            mode=args.mode,
            policy=args.policy,
            jobs=args.jobs,
            latency_ms=args.latency_ms,
        )
        if cfg.mode == "direct":
            from clap_ros.eval.direct_eval import evaluate

            cfg.validate()
            if cfg.policy != "expert":
                resolve_model(cfg.model)  # a missing bundle is a usage error, before any work
            result, out = evaluate(cfg)
            print(report_markdown(result))
            print("results in %s" % out.resolve())
            return 0 if result["complete"] else 1
        evaluator = SimEvaluator(cfg)
    except (ValueError, EvalError) as e:
        print("clap-ros eval-sim: error: %s" % e, file=sys.stderr)
        return 2
    result = evaluator.run()
    print(report_markdown(result))
    print("results in %s" % evaluator.out.resolve())
    return 0 if result["complete"] else 1
