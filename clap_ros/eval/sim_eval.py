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
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from clap_ros import topics as T

# Sim-time budget per episode. The expert needs about a third of these; a learned policy gets room
# to correct itself, but not so much that a stuck episode costs minutes.
TASK_TIMEOUT_S = {"reach": 20.0, "push": 30.0, "pick_place": 30.0, "stack": 40.0}
DEFAULT_TIMEOUT_S = 30.0
DRIVER = "sim_driver"
ACTION_NODE = "action_node"


class EvalError(RuntimeError):
    """The evaluation could not run (a node died, a service never came up); names the cause."""


@dataclass
class EvalConfig:
    robot: str = "fr3"
    tasks: Sequence[str] = ("pick_place",)
    episodes: int = 20
    model: str = "models/default"
    backend: str = "auto"
    command_mode: str = "joint_trajectory"
    seed: int = 0                        # first episode seed; episode i uses seed + i
    out: Optional[str] = None            # result directory (default: eval_results/<stamp>)
    timeout_s: float = 0.0               # sim seconds per episode; 0 = TASK_TIMEOUT_S[task]
    randomize: bool = True
    real_time_factor: float = 1.0        # other than 1: every node runs on sim time
    settle_s: float = 0.5                # wait after the first post-reset plan before enabling
    plan_timeout_s: float = 60.0         # wall seconds for the first plan of an episode
    startup_timeout_s: float = 120.0     # wall seconds for the graph to come up
    record_bags: bool = False
    domain_id: Optional[int] = None      # None: $ROS_DOMAIN_ID, else a random one
    params_file: str = ""                # ros__parameters for the CLAP nodes ("" = package's)
    progress: bool = True

    def timeout_for(self, task: str) -> float:
        if self.timeout_s > 0:
            return float(self.timeout_s)
        return TASK_TIMEOUT_S.get(task, DEFAULT_TIMEOUT_S)

    def validate(self) -> None:
        from clap_ros.sim.tasks import TASKS
        if not self.tasks:
            raise ValueError("no task to evaluate")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError("unknown task%s %s (known: %s)" % (
                "s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(sorted(TASKS))))
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("a task is listed twice: %s" % ", ".join(self.tasks))
        if self.episodes < 1:
            raise ValueError("episodes must be >= 1, not %d" % self.episodes)
        if self.command_mode not in ("joint_trajectory", "forward_position"):
            raise ValueError("command_mode must be joint_trajectory or forward_position, not %r"
                             % self.command_mode)
        if self.backend not in ("auto", "cpu", "cuda", "tensorrt"):
            raise ValueError("backend must be auto, cpu, cuda or tensorrt, not %r" % self.backend)
        if self.real_time_factor <= 0:
            raise ValueError("real_time_factor must be > 0 (the policy runs in real time), not %r"
                             % self.real_time_factor)


@dataclass
class EpisodeOutcome:
    task: str
    seed: int
    instruction: str = ""
    success: bool = False
    time_to_success_s: Optional[float] = None   # sim seconds from enable to success
    duration_s: float = 0.0                     # sim seconds from enable to stop
    wall_s: float = 0.0                         # wall seconds for the whole episode
    commands: int = 0                           # arm commands the action node sent
    gripper_commands: int = 0
    plans: int = 0                              # /clap/plan messages during the episode
    arm_motion_rad: float = 0.0                 # max over the episode of max |q - q_enable|
    rejected_commands: int = 0                  # commands the driver refused (limits, names)
    # metres from what the task moves to its goal (Task.goal_distance), from /sim/status (2 Hz):
    # at enable, at the stop, and the least seen in between
    goal_distance_start_m: Optional[float] = None
    goal_distance_end_m: Optional[float] = None
    goal_distance_min_m: Optional[float] = None
    worst_diagnostics: Dict[str, dict] = field(default_factory=dict)  # node -> level, message
    # each node's last rates and latencies before the stop (keys *_rate_hz, *_p50_ms, *_p99_ms)
    figures: Dict[str, Dict[str, str]] = field(default_factory=dict)
    bag: str = ""
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_model(model: str) -> Path:
    """The bundle directory, found as the nodes find it (clap_logic.resolve_model_dir), made
    absolute so every node process gets the same one. EvalError if it holds no manifest."""
    from clap_ros.nodes.clap_logic import resolve_model_dir
    path = Path(resolve_model_dir(model))
    if not (path / "manifest.yaml").is_file():
        raise EvalError("model bundle %s not found (no manifest.yaml in %s)" % (model, path))
    return path.resolve()


def _eval_client_class():
    """The rclpy side, built on the episode recorder (its driver services, status parsing and
    raw-CDR bag writing), plus what evaluation adds: the instruction, the action node's services
    and per-episode counters. Defined lazily so importing this module needs no rclpy."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Int32MultiArray, String
    from std_srvs.srv import SetBool, Trigger
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import LATCHED_QOS
    from clap_ros.nodes.episode_runner import _Recorder, _recorded_topics

    # Best effort matches reliable and best-effort publishers alike: the evaluator only observes.
    observe = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT)

    class EvalClient(_Recorder):
        def __init__(self, domain_id: int, profile, command_mode: str, use_sim_time: bool):
            topics = _recorded_topics(profile, command_mode, wrist_camera=False)
            topics[T.PLAN] = (JointTrajectory, observe, T.TYPES["joint_trajectory"])
            topics[T.PLAN_TOKENS] = (Int32MultiArray, observe, T.TYPES["int32_array"])
            topics[T.DIAGNOSTICS] = (DiagnosticArray, observe, T.TYPES["diagnostics"])
            self.bag_topics = {k: v[2] for k, v in topics.items()}
            drv = profile.driver
            self.arm_topic = (drv.trajectory_topic if command_mode == "joint_trajectory"
                              else drv.forward_topic)
            self.gripper_topic = drv.gripper_command_topic
            self.arm_joints = list(profile.joint_names)
            self.counts: Dict[str, int] = {}
            self.q0: Optional[np.ndarray] = None
            self.q_last: Optional[np.ndarray] = None
            self.motion = 0.0
            self.worst: Dict[str, dict] = {}
            self.last_diag: Dict[str, dict] = {}
            self.counting = False
            self.judging = False   # diagnostics count against the episode only while enabled
            self.figures: Dict[str, Dict[str, str]] = {}
            super().__init__(domain_id, {k: (v[0], v[1]) for k, v in topics.items()},
                             use_sim_time, DRIVER, drv.joint_states_topic)
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
                        entry = {"level": int.from_bytes(st.level, "little")
                                 if isinstance(st.level, bytes) else int(st.level),
                                 "message": st.message,
                                 "values": {kv.key: kv.value for kv in st.values}}
                        self.last_diag[st.name] = entry
                        if self.counting and self.judging:
                            prev = self.worst.get(st.name)
                            if prev is None or entry["level"] > prev["level"]:
                                self.worst[st.name] = {"level": entry["level"],
                                                       "message": entry["message"]}
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
                self.figures = {name: {k: v for k, v in d["values"].items()
                                       if k.endswith(("_rate_hz", "_p50_ms", "_p99_ms", "_run_n"))}
                                for name, d in self.last_diag.items()}

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
        self.cfg = cfg
        self.model = resolve_model(cfg.model)
        self.out = Path(cfg.out) if cfg.out else Path("eval_results") / time.strftime(
            "%Y%m%d-%H%M%S", time.gmtime())
        self.domain_id = int(cfg.domain_id if cfg.domain_id is not None else
                             os.environ.get("ROS_DOMAIN_ID")
                             or random.SystemRandom().randint(1, 100))
        self.use_sim_time = cfg.real_time_factor != 1.0
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        # Nothing earlier is overwritten: refuse before any process starts.
        if (self.out / "result.json").exists():
            raise EvalError("%s already holds a result.json; choose another --out" % self.out)
        if cfg.record_bags:
            from clap_ros.nodes.episode_runner import episode_bag_name
            taken = [str(self.out / "bags" / episode_bag_name(cfg.robot, t, cfg.seed + i))
                     for t in cfg.tasks for i in range(cfg.episodes)]
            taken = [p for p in taken if Path(p).exists()]
            if taken:
                raise EvalError("bags already exist (never overwritten): %s" % ", ".join(taken))
        self._stop_requested = False

    # -- the graph -------------------------------------------------------------------------------
    def _graph_values(self, task: str) -> dict:
        from clap_ros.launching.graph import BRINGUP, resolve_arguments
        overrides = {
            "robot": self.cfg.robot, "model": str(self.model), "backend": self.cfg.backend,
            "command_mode": self.cfg.command_mode, "use_sim": "true", "task": task,
            "seed": str(self.cfg.seed), "randomize": str(self.cfg.randomize).lower(),
            "real_time_factor": repr(float(self.cfg.real_time_factor)),
            "use_sim_time": str(self.use_sim_time).lower(), "enable_on_start": "false",
        }
        if self.cfg.params_file:
            overrides["params_file"] = str(Path(self.cfg.params_file).resolve())
        return resolve_arguments(BRINGUP, overrides)

    def _start_graph(self, task: str):
        from clap_ros.launching.graph import BRINGUP
        from clap_ros.launching.runner import GraphRunner
        log_dir = self.out / "logs" / task
        log_dir.mkdir(parents=True, exist_ok=True)
        runner = GraphRunner(
            BRINGUP, self._graph_values(task), log_dir=log_dir,
            out=open(log_dir / "graph.log", "a"), stop_timeout=10.0,
            env={"ROS_DOMAIN_ID": str(self.domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
        runner.start()
        return runner

    def _check_alive(self, runner) -> None:
        for p in runner.procs:
            if not p.running():
                raise EvalError("%s exited (code %s) during the evaluation; its log (%s) ends:\n%s"
                                % (p.name, p.returncode, p.log_path, p.log_text(tail=2500)))

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
        from clap_ros.data.bags import BagWriter
        from clap_ros.nodes.episode_runner import RecordingError, episode_bag_name
        from rclpy.serialization import serialize_message
        from std_msgs.msg import String

        out = EpisodeOutcome(task=task, seed=seed)
        wall0 = time.monotonic()
        try:
            client.set_seed(seed, timeout=30.0)
            with client.lock:
                resets_before = int(client.status.get("resets", -1))
            client.reset(timeout=60.0)
        except RecordingError as e:
            raise EvalError("sim_driver: %s" % e) from None
        status = self._wait(runner, lambda: client.wait_status(
            lambda s: s.get("seed") == seed and int(s.get("resets", 0)) > resets_before, 0.1),
            30.0, "no /sim/status for seed %d after the reset" % seed)
        out.instruction = str(status.get("instruction", ""))
        bag = None
        if self.cfg.record_bags:
            path = self.out / "bags" / episode_bag_name(self.cfg.robot, task, seed)
            bag = BagWriter(path).__enter__()
            for topic, msgtype in client.bag_topics.items():
                bag.add_topic(topic, msgtype)
            bag.add_topic(T.EPISODE_OUTCOME, T.TYPES["string"])
            for k, v in (("robot", self.cfg.robot), ("task", task), ("seed", seed),
                         ("command_mode", self.cfg.command_mode), ("policy", str(self.model))):
                bag.set_custom_data(k, str(v))
            client.arm_bag(bag)
            out.bag = str(path)
        start_status = status
        try:
            plans0 = client.count(T.PLAN)
            client.publish_instruction(out.instruction)
            # A plan made after the reset (from a post-reset camera frame and this instruction)
            # must exist before the arm is enabled, else the first chunk is the old episode's.
            self._wait(runner, lambda: client.count(T.PLAN) >= plans0 + 2, self.cfg.plan_timeout_s,
                       "planner_node published no plan after the reset of seed %d" % seed)
            time.sleep(self.cfg.settle_s)
            with client.lock:
                start_status = dict(client.status)
            client.begin_counting()
            res = client.enable(True)
            if not res.success:
                raise EvalError("action_node refused to enable: %s" % res.message)
            timeout = self.cfg.timeout_for(task)
            t_enable = float(start_status.get("sim_time", 0.0))
            out.goal_distance_start_m = _goal_distance(start_status)
            out.goal_distance_min_m = out.goal_distance_start_m
            wall_limit = time.monotonic() + timeout / self.cfg.real_time_factor * 2.0 + 30.0
            while not self._stop_requested:
                self._check_alive(runner)
                with client.lock:
                    st = dict(client.status)
                elapsed = float(st.get("sim_time", t_enable)) - t_enable
                same_episode = int(st.get("resets", 0)) == int(start_status.get("resets", 0))
                d = _goal_distance(st) if same_episode else None
                if d is not None and (out.goal_distance_min_m is None
                                      or d < out.goal_distance_min_m):
                    out.goal_distance_min_m = d
                if st.get("success") and same_episode:
                    out.success = True
                    out.time_to_success_s = elapsed
                    break
                if elapsed >= timeout:
                    break
                if time.monotonic() > wall_limit:
                    out.error = "sim time stalled: %.1f of %.0f s after %.0f wall s" % (
                        elapsed, timeout, time.monotonic() - wall0)
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
            out.duration_s = float(end.get("sim_time", 0.0)) - float(start_status.get("sim_time", 0.0))
            if int(end.get("resets", 0)) == int(start_status.get("resets", 0)):
                out.goal_distance_end_m = _goal_distance(end)
                if out.goal_distance_end_m is not None and out.goal_distance_min_m is not None:
                    out.goal_distance_min_m = min(out.goal_distance_min_m, out.goal_distance_end_m)
            out.rejected_commands = int(end.get("rejected_commands", 0)) - int(
                start_status.get("rejected_commands", 0))
            out.wall_s = time.monotonic() - wall0
            if bag is not None:
                client.start_now()
                client.stop_bag()
                outcome = dict(out.to_dict(), robot=self.cfg.robot, appearance=end.get(
                    "appearance", {}), command_mode=self.cfg.command_mode, duration=out.duration_s)
                bag.write_cdr(T.EPISODE_OUTCOME, client.now_ns(), serialize_message(
                    String(data=json.dumps(outcome, sort_keys=True, default=str))))
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
            self._wait(runner, lambda: client.reset_client.service_is_ready(), t,
                       "sim_driver's ~/reset service did not come up")
            self._wait(runner, lambda: client.wait_status(lambda s: True, 0.1), t,
                       "no /sim/status from sim_driver")
            self._wait(runner, lambda: client.enable_client.service_is_ready()
                       and client.stop_client.service_is_ready(), t,
                       "action_node's ~/enable and ~/stop services did not come up")
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
                self.log("%s seed %d: %s%s" % (
                    task, seed, "success in %.1f s" % out.time_to_success_s if out.success
                    else "failure", (" (%s)" % out.error) if out.error else ""))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(task=task, success="%d/%d" % (
                        sum(o.success for o in outcomes), len(outcomes)))
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
            bar = tqdm(total=self.cfg.episodes * len(self.cfg.tasks), unit="episode",
                       desc="eval-sim %s" % self.cfg.robot)
        episodes: List[EpisodeOutcome] = []
        error = ""
        old = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            for task in self.cfg.tasks:
                episodes += self._run_task(task, bar)
        except (EvalError, KeyboardInterrupt) as e:
            error = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        finally:
            signal.signal(signal.SIGTERM, old)
            if bar is not None:
                bar.close()
        if self._stop_requested and not error:
            error = "stopped by SIGTERM"
        result = summarize(self.cfg, str(self.model), episodes, wall_s=time.time() - t0,
                           error=error)
        write_result(self.out, result)
        return result

    def _on_signal(self, signum, frame) -> None:
        self._stop_requested = True


def _goal_distance(status: dict) -> Optional[float]:
    v = status.get("goal_distance_m")
    return None if v is None else float(v)


def goal_progress(e: EpisodeOutcome) -> Optional[float]:
    """Share of the start distance to the goal closed at the stop (1 = at the goal, 0 = no
    closer, negative = further away), None when the driver reported no distance."""
    if e.goal_distance_start_m is None or e.goal_distance_end_m is None \
            or e.goal_distance_start_m <= 0:
        return None
    return 1.0 - e.goal_distance_end_m / e.goal_distance_start_m


def _median(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def summarize(cfg: EvalConfig, model: str, episodes: Sequence[EpisodeOutcome], wall_s: float,
              error: str = "") -> dict:
    tasks = {}
    for task in cfg.tasks:
        eps = [e for e in episodes if e.task == task]
        times = [e.time_to_success_s for e in eps if e.success]
        tasks[task] = {
            "episodes": len(eps),
            "successes": sum(e.success for e in eps),
            "success_rate": (sum(e.success for e in eps) / len(eps)) if eps else None,
            "median_time_to_success_s": float(np.median(times)) if times else None,
            "timeout_s": cfg.timeout_for(task),
            "episodes_with_errors": sum(bool(e.error) for e in eps),
            "rejected_commands": sum(e.rejected_commands for e in eps),
            "median_arm_motion_rad": float(np.median([e.arm_motion_rad for e in eps]))
            if eps else None,
            "median_final_goal_distance_m": _median(e.goal_distance_end_m for e in eps),
            "median_min_goal_distance_m": _median(e.goal_distance_min_m for e in eps),
            "median_goal_progress": _median(goal_progress(e) for e in eps),
        }
    config = asdict(cfg)
    config["tasks"] = list(cfg.tasks)
    return {
        "format": "clap_ros_sim_eval", "version": 1,
        "robot": cfg.robot, "model": model, "config": config,
        "complete": not error and all(t["episodes"] == cfg.episodes for t in tasks.values()),
        "error": error, "wall_s": wall_s,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": tasks, "episodes": [e.to_dict() for e in episodes],
    }


def report_markdown(result: dict) -> str:
    cfg = result["config"]
    lines = ["# Closed-loop evaluation: %s, model %s" % (result["robot"], result["model"]), "",
             "Full stack over DDS (sim_driver, encoder_node, planner_node, action_node), "
             "backend %s, command_mode %s, seeds %d..%d, randomisation %s, real-time factor %g."
             % (cfg["backend"], cfg["command_mode"], cfg["seed"], cfg["seed"] + cfg["episodes"] - 1,
                "on" if cfg["randomize"] else "off", cfg["real_time_factor"]), "",
             "| task | success | rate | median time to success (s) | final / closest distance "
             "to goal (m) | progress | timeout (s) | rejected commands | episodes with errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, t in result["tasks"].items():
        rate = "-" if t["success_rate"] is None else "%.0f %%" % (100 * t["success_rate"])
        tts = "-" if t["median_time_to_success_s"] is None else "%.1f" % t["median_time_to_success_s"]
        dist = "-" if t.get("median_final_goal_distance_m") is None else "%.3f / %.3f" % (
            t["median_final_goal_distance_m"], t["median_min_goal_distance_m"])
        prog = "-" if t.get("median_goal_progress") is None else "%.0f %%" % (
            100 * t["median_goal_progress"])
        lines.append("| %s | %d/%d | %s | %s | %s | %s | %.0f | %d | %d |" % (
            task, t["successes"], t["episodes"], rate, tts, dist, prog, t["timeout_s"],
            t["rejected_commands"], t["episodes_with_errors"]))
    lines += ["", "Distances and progress are medians over episodes: the distance from what the "
              "task moves (TCP or object) to where success puts it, from /sim/status; progress = "
              "share of the distance at enable closed by the stop.", ""]
    if result["error"]:
        lines += ["**Incomplete:** %s" % result["error"], ""]
    errors = [e for e in result["episodes"] if e["error"]]
    if errors:
        lines.append("Episode errors:")
        lines += ["- %s seed %d: %s" % (e["task"], e["seed"], e["error"].splitlines()[0])
                  for e in errors]
        lines.append("")
    figures = runtime_figures(result["episodes"])
    if figures:
        lines += ["Runtime figures (median over episodes of each node's last 5 s before the "
                  "stop, from /clap/diagnostics):", ""]
        for node, values in figures.items():
            lines.append("- %s: %s" % (node, ", ".join("%s %.3g" % kv for kv in values.items())))
        lines.append("")
    lines.append("Wall time %.0f s. Per-episode details in result.json." % result["wall_s"])
    return "\n".join(lines) + "\n"


def runtime_figures(episodes: Sequence[dict]) -> Dict[str, Dict[str, float]]:
    """node -> figure -> median over the episodes that report it (non-numbers skipped)."""
    samples: Dict[str, Dict[str, List[float]]] = {}
    for e in episodes:
        for node, values in (e.get("figures") or {}).items():
            for key, text in values.items():
                try:
                    x = float(text)
                except ValueError:
                    continue
                if np.isfinite(x):
                    samples.setdefault(node, {}).setdefault(key, []).append(x)
    return {node: {k: float(np.median(v)) for k, v in sorted(keys.items())}
            for node, keys in sorted(samples.items())}


def write_result(out: Path, result: dict) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=False, default=str))
    (out / "report.md").write_text(report_markdown(result))


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

exit status: 0 when every episode ran (whatever the success rate), 1 if the evaluation could not
finish (a node died, a service never came up; result.json says why), 2 for bad arguments.

examples:
  clap-ros eval-sim --robot fr3 --task pick_place --episodes 20 --model models/default
  clap-ros eval-sim --task reach --task push --task pick_place --episodes 20 --out eval/fr3
  clap-ros eval-sim --task all --episodes 5 --command-mode forward_position --record-bags
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-sim", help="closed-loop success rates of a model bundle on the simulated arm",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robot", default="fr3", help="robot profile (fr3, panda, ur5e); default fr3")
    p.add_argument("--task", action="append", default=None, metavar="TASK",
                   help="sim task to evaluate; repeat or comma-separate for several, `all` for "
                        "every task (default: pick_place)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    p.add_argument("--model", default="models/default",
                   help="model bundle directory (default models/default)")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"),
                   help="inference backend of the three nodes (default auto)")
    p.add_argument("--command-mode", default="joint_trajectory",
                   choices=("joint_trajectory", "forward_position"),
                   help="how the action node commands the driver (default joint_trajectory)")
    p.add_argument("--seed", type=int, default=0,
                   help="first episode seed; episode i uses SEED+i (default 0)")
    p.add_argument("--out", default=None,
                   help="result directory (default eval_results/<UTC time>)")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="sim seconds per episode (default per task: %s)" % ", ".join(
                       "%s %g" % kv for kv in TASK_TIMEOUT_S.items()))
    p.add_argument("--no-randomize", action="store_true",
                   help="turn the sim's visual randomisation off (on by default)")
    p.add_argument("--real-time-factor", type=float, default=1.0,
                   help="sim seconds per wall second; below 1 gives a slow machine headroom "
                        "(every node then runs on /clock); default 1")
    p.add_argument("--params-file", default="",
                   help="ros__parameters YAML for the CLAP nodes (default config/clap_nodes.yaml)")
    p.add_argument("--record-bags", action="store_true",
                   help="write one MCAP rosbag2 bag per episode under OUT/bags/")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for the stack (default $ROS_DOMAIN_ID, else random)")
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
            robot=args.robot, tasks=parse_tasks(args.task), episodes=args.episodes,
            model=args.model, backend=args.backend, command_mode=args.command_mode,
            seed=args.seed, out=args.out, timeout_s=args.timeout,
            randomize=not args.no_randomize, real_time_factor=args.real_time_factor,
            record_bags=args.record_bags, domain_id=args.domain_id,
            params_file=args.params_file, progress=not args.no_progress)
        evaluator = SimEvaluator(cfg)
    except (ValueError, EvalError) as e:
        print("clap-ros eval-sim: error: %s" % e, file=sys.stderr)
        return 2
    result = evaluator.run()
    print(report_markdown(result))
    print("results in %s" % evaluator.out.resolve())
    return 0 if result["complete"] else 1
