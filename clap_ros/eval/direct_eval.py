"""`clap-ros eval-sim --mode direct`: the closed loop in one process, on a virtual clock.

The same episodes as ``--mode ros`` (seeds ``seed, seed+1, ...``, the task's layout, instruction,
success predicate and timeout, goal distance and progress, result.json / report.md, optional MCAP
bags with the ROS-mode topics), without DDS and without real time:

* the world and the driver's rules are clap_ros.sim.driver_core.SimDriverCore, the code
  ``sim_driver`` runs: JTC acceptance, forward-mode limits, gripper commands, controller rate,
  the joint-state / camera / status schedule, rejected-command counts;
* the clock is the driver clock, stepped one controller update at a time; camera frames are
  rendered at the camera rate when the policy looks at them (the CLAP stack) or a bag records them;
* the policy is either the CLAP cores driven by clap_ros.runtime's VirtualStack (each inference
  delays its output on the virtual clock by the wall time it really took, or ``--latency-ms``),
  or the scripted expert streamed as JointTrajectory chunks exactly as expert_node streams them
  (clap_ros.sim.expert.ExpertStreamer), so both go through the driver's acceptance rules.

One episode mirrors SimEvaluator._episode: reset to the seed, publish the instruction, wait for
the policy to be ready (the planner's second plan after the reset) plus ``settle_s``, enable, run
until success or the timeout (sim seconds after enable), stop smoothly and let 0.5 s pass, read
the end status. ``--jobs N`` spreads episodes over N processes.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.eval.sim_results import EpisodeOutcome, EvalConfig, summarize, write_result

STOP_SETTLE_S = 0.5  # sim time after the stop before the end status (as ROS mode sleeps)
POLICIES = ("model", "expert")


# --- policies -----------------------------------------------------------------------------------


@dataclass
class Command:
    """A policy output for the driver: at driver time ``t``, ``kind`` with ``payload``
    (SimDriverCore.command terms); ``stamp_s`` is a trajectory header stamp (0: on receipt)."""

    t: float
    kind: str
    payload: object
    stamp_s: float = 0.0


@dataclass
class PolicyCounters:
    plans: int = 0
    diagnostics: Dict[str, dict] = field(default_factory=dict)  # node -> level, message
    figures: Dict[str, Dict[str, str]] = field(default_factory=dict)


class ExpertPolicy:
    """The scripted expert as expert_node runs it: plan from the seed's layout, then every
    streaming period the ExpertStreamer's commands (chunk + gripper), until the plan is done."""

    needs_frames = False
    needs_pixels = False

    def __init__(self, world, command_mode: str):
        from clap_ros.sim.expert import ExpertStreamConfig, ExpertStreamer, make_expert

        self.streamer = ExpertStreamer(
            make_expert(world).plan(), ExpertStreamConfig(command_mode=command_mode)
        )
        self.period = self.streamer.config.period_s
        self.counters = PolicyCounters()
        self.t0: Optional[float] = None
        self.next_tick = math.inf

    def on_instruction(self, text: str, t: float) -> None:
        pass

    def on_joint_state(self, js, t: float) -> None:
        pass

    def on_frame(self, rgb, info, stamp: float, t: float) -> None:
        pass

    def ready(self, t: float) -> bool:
        return True

    def enable(self, t: float) -> None:
        self.t0 = self.next_tick = t

    def stop(self, t: float) -> None:
        self.next_tick = math.inf  # the driver holds the last target

    def advance_to(self, t: float) -> List[Command]:
        out: List[Command] = []
        while self.next_tick <= t + 1e-12:
            tick = self.next_tick
            tau = tick - self.t0
            out += [Command(tick, kind, payload) for kind, payload in self.streamer.commands(tau)]
            self.next_tick = math.inf if self.streamer.done(tau) else tick + self.period
        return out


class StackPolicy:
    """The CLAP cores on the virtual clock (clap_ros.runtime.virtual_stack.VirtualStack), with
    the parameters the bringup graph gives the three nodes (params file + the evaluator's
    overrides: model, backend, robot, command_mode, not enabled on start)."""

    needs_frames = True
    needs_pixels = True  # the encoder reads the rendered frame (an OraclePolicy does not)

    def __init__(self, stack_params, profile, runtime, latency_ms: Optional[float]):
        from clap_ros.runtime.virtual_stack import VirtualStack

        self.stack = VirtualStack(
            profile, runtime, stack_params, latency_ms=latency_ms, keep_rf_chunks=False
        )
        self.counters = PolicyCounters()
        self._plans_at_instruction = 0
        self._plans_at_enable = 0
        self._info_sent = False

    def on_instruction(self, text: str, t: float) -> None:
        self.stack.on_instruction(text, t)
        self._plans_at_instruction = self.stack.record.plans

    def on_joint_state(self, js, t: float) -> None:
        self.stack.on_joint_state(js.names, js.positions, js.stamp_s, t)

    def on_frame(self, rgb, info, stamp: float, t: float) -> None:
        if not self._info_sent:  # the camera's CameraInfo, as the encoder node subscribes it
            self.stack.on_camera_info(camera_info_fields(info), t)
            self._info_sent = True
        self.stack.on_frame(rgb, stamp, t)

    def ready(self, t: float) -> bool:
        # As ROS mode: a plan made after the reset (from a post-reset frame and this
        # instruction) must exist before the arm is enabled; the second one surely is.
        self.stack.advance_to(t)
        return self.stack.record.plans >= self._plans_at_instruction + 2

    def enable(self, t: float) -> None:
        self._plans_at_enable = self.stack.record.plans
        self.stack.enable(t)

    def stop(self, t: float) -> None:
        self.stack.stop(t)

    def advance_to(self, t: float) -> List[Command]:
        from clap_ros.runtime.virtual_stack import ARM, GRIPPER, TRAJECTORY

        out: List[Command] = []
        for o in self.stack.advance_to(t):
            if o.kind == TRAJECTORY:
                out.append(
                    Command(o.t, "trajectory", (list(o.value.joint_names), list(o.value.points)))
                )
            elif o.kind == ARM:
                out.append(Command(o.t, "forward", [float(x) for x in o.value]))
            elif o.kind == GRIPPER:
                out.append(Command(o.t, "gripper", [float(o.value)]))
        return out

    def finish(self, t: float) -> None:
        r = self.stack.record
        self.counters.plans = r.plans - self._plans_at_enable  # as ROS mode: while enabled
        self.counters.figures = stack_figures(r)
        if r.stops:
            t_stop, reason = r.stops[0]
            self.counters.diagnostics["action_node"] = {"level": 1, "message": reason}


class OraclePolicy(StackPolicy):
    """The cores over a clap_ros.eval.oracle_policy.OracleRuntime (the diagnostic ladder): the
    oracle learns when the arm is enabled; no frame is rendered (it reads the world)."""

    needs_pixels = False

    def __init__(self, stack_params, profile, oracle, latency_ms: Optional[float]):
        super().__init__(stack_params, profile, oracle, latency_ms)
        self.oracle = oracle

    def enable(self, t: float) -> None:
        self.oracle.t_enable = t
        super().enable(t)


def camera_info_fields(info: dict):
    """A CameraInfo-like object (width, height, k, d, r, p) from SimWorld.camera_info."""
    import types

    return types.SimpleNamespace(
        width=int(info["width"]),
        height=int(info["height"]),
        k=[float(v) for v in np.asarray(info["K"]).ravel()],
        d=[float(v) for v in np.asarray(info.get("D", np.zeros(5))).ravel()],
        r=[float(v) for v in np.asarray(info.get("R", np.eye(3))).ravel()],
        p=[float(v) for v in np.asarray(info["P"]).ravel()],
        distortion_model=str(info.get("distortion_model", "plumb_bob")),
    )


def stack_figures(record) -> Dict[str, Dict[str, str]]:
    """The latency figures of an episode, named as the nodes' diagnostics name them."""

    def pct(key: str, seconds: Sequence[float]) -> Dict[str, str]:
        if not seconds:
            return {}
        ms = 1e3 * np.asarray(seconds, dtype=np.float64)
        return {
            key + "_p50_ms": "%.3f" % np.percentile(ms, 50),
            key + "_p99_ms": "%.3f" % np.percentile(ms, 99),
        }

    f2c = pct("frame_to_command_run", record.frame_to_command_s)
    if f2c:
        f2c["frame_to_command_run_n"] = str(len(record.frame_to_command_s))
    return {
        "encoder_node": pct("encode", record.encode_s),
        "planner_node": pct("plan", record.plan_s),
        "action_node": dict(pct("inference", record.act_s), **f2c),
    }


def stack_params_for(cfg: EvalConfig, model: str):
    """StackParams as the bringup graph configures the nodes: the params file's sections (the
    package's config/clap_nodes.yaml unless --params-file), then the evaluator's overrides."""
    import yaml

    from clap_ros.runtime.params import ActionParams, EncoderParams, PlannerParams
    from clap_ros.runtime.virtual_stack import StackParams

    sections: Dict[str, dict] = {}
    if cfg.params_file:
        data = yaml.safe_load(Path(cfg.params_file).read_text()) or {}
        for node in ("encoder_node", "planner_node", "action_node"):
            body = data.get(node) or data.get("/" + node) or {}
            sections[node] = dict(body.get("ros__parameters") or {})
    common = {"model": model, "backend": cfg.backend}
    enc = dict(sections.get("encoder_node", {}), **common)
    plan = dict(sections.get("planner_node", {}), robot=cfg.robot, **common)
    act = dict(
        sections.get("action_node", {}),
        robot=cfg.robot,
        command_mode=cfg.command_mode,
        enable_on_start=False,
        **common,
    )
    for d in (enc, plan, act):
        d.pop("use_sim_time", None)
    return StackParams(
        encoder=EncoderParams.from_mapping(enc),
        planner=PlannerParams.from_mapping(plan),
        action=ActionParams.from_mapping(act),
    )


def load_runtime(model: str, backend: str, robot_joints: Sequence[str]):
    """The bundle's ClapRuntime (one intra-op thread per graph, as the nodes run it)."""
    from clap_ros.inference.bundle import load_bundle
    from clap_ros.inference.policy import ClapRuntime

    bundle = load_bundle(model)
    if list(bundle.joint_names) != list(robot_joints):
        raise ValueError(
            "model %s is for joints %s, the robot has %s"
            % (model, bundle.joint_names, list(robot_joints))
        )
    return ClapRuntime(bundle, backend=backend, intra_op_num_threads=1)


# --- one episode --------------------------------------------------------------------------------


class DirectEpisodes:
    """Runs episodes of one robot in this process; worlds are built once per task."""

    def __init__(self, cfg: EvalConfig, out_dir: Optional[Path] = None):
        from clap_ros.robots import load_profile

        self.cfg = cfg
        self.profile = load_profile(cfg.robot)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._cores: Dict[str, object] = {}
        self._runtime = None
        self._oracle = None
        # called with (world, sim time) at every camera tick (e.g. clap-ros filmstrip)
        self.on_camera: Optional[Callable[[object, float], None]] = None
        self.wrist_camera = False  # build the worlds with the wrist camera (vision: always)

    def core(self, task: str):
        from clap_ros.eval.vision_policy import is_vision
        from clap_ros.sim.driver_core import SimDriverCore, SimDriverParams

        if task not in self._cores:
            params = SimDriverParams(
                robot=self.cfg.robot,
                task=task,
                seed=self.cfg.seed,
                randomize=self.cfg.randomize,
                real_time_factor=0.0,
                use_sim_time=True,
            )
            if self.cfg.reflexes is not None:
                params = params.replace(reflexes=self.cfg.reflexes)
            if is_vision(self.cfg.policy) or self.wrist_camera:
                params = params.replace(wrist_camera=True)
            self._cores[task] = SimDriverCore(params.validate())
        return self._cores[task]

    def runtime(self):
        if self._runtime is None:
            self._runtime = load_runtime(self.cfg.model, self.cfg.backend, self.profile.joint_names)
            self._stack_params = stack_params_for(self.cfg, self.cfg.model)
        return self._runtime

    def policy(self, core, seed: int):
        from clap_ros.eval.oracle_policy import OracleRuntime, is_oracle
        from clap_ros.eval.vision_policy import VisionRuntime, is_vision

        if self.cfg.policy == "expert":
            return ExpertPolicy(core.world, self.cfg.command_mode)
        if is_vision(self.cfg.policy):
            if self._oracle is None:
                self._oracle = VisionRuntime(
                    self.runtime(), core.world, self.cfg.policy, lambda: core.clock_s
                )
            self._oracle.reset(core.world, lambda: core.clock_s)
            return OraclePolicy(self._stack_params, self.profile, self._oracle, self.cfg.latency_ms)
        if is_oracle(self.cfg.policy):
            if self._oracle is None:
                self._oracle = OracleRuntime(
                    self.runtime(), core.world, self.cfg.policy, lambda: core.clock_s
                )
            self._oracle.reset(core.world, lambda: core.clock_s)
            return OraclePolicy(self._stack_params, self.profile, self._oracle, self.cfg.latency_ms)
        return StackPolicy(self._stack_params, self.profile, self.runtime(), self.cfg.latency_ms)

    def run(self, task: str, seed: int) -> EpisodeOutcome:
        out = EpisodeOutcome(task=task, seed=seed)
        bag = None
        try:
            # Set-up (world compile, model load) is once per process, not part of an episode.
            self.core(task)
            if self.cfg.policy != "expert":
                self.runtime()
        except Exception as e:
            out.error = "set-up failed: %s: %s" % (type(e).__name__, e)
            return out
        wall0 = time.perf_counter()
        try:
            out, bag = self._run(task, seed, out)
        except Exception as e:  # one broken episode must not lose the others
            import traceback

            out.error = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=4))
        finally:
            out.wall_s = time.perf_counter() - wall0
            if bag is not None:
                import json

                bag.string(
                    T.EPISODE_OUTCOME,
                    self._last_t,
                    json.dumps(
                        dict(
                            out.to_dict(),
                            robot=self.cfg.robot,
                            command_mode=self.cfg.command_mode,
                            duration=out.duration_s,
                            mode="direct",
                        ),
                        sort_keys=True,
                        default=str,
                    ),
                )
                bag.close()
        return out

    def _run(self, task: str, seed: int, out: EpisodeOutcome):
        cfg = self.cfg
        core = self.core(task)
        core.reset(seed)
        world = core.world
        out.instruction = world.instruction
        policy = self.policy(core, seed)
        bag = None
        if cfg.record_bags and self.out_dir is not None:
            from clap_ros.eval.direct_bag import EpisodeBag
            from clap_ros.nodes.episode_runner import episode_bag_name

            path = self.out_dir / "bags" / episode_bag_name(cfg.robot, task, seed)
            bag = EpisodeBag(
                path,
                self.profile,
                cfg.command_mode,
                {
                    "robot": cfg.robot,
                    "task": task,
                    "seed": seed,
                    "command_mode": cfg.command_mode,
                    "policy": cfg.policy if cfg.policy == "expert" else str(cfg.model),
                    "mode": "direct",
                },
            )
            out.bag = str(path)
        render = policy.needs_frames or bag is not None
        pixels = policy.needs_pixels or bag is not None
        info = world.camera_info("scene")
        blank = np.zeros((int(info["height"]), int(info["width"]), 3), dtype=np.uint8)
        arm_topic = (
            core.trajectory_topic if cfg.command_mode == "joint_trajectory" else core.forward_topic
        )
        state = _EpisodeState()
        self._last_t = core.clock_s

        def step_once(counting: bool) -> None:
            for c in policy.advance_to(core.clock_s):
                reason = core.command(c.kind, c.payload, stamp_s=c.stamp_s)
                if counting:
                    state.count(c.kind)
                if bag is not None:
                    _bag_command(bag, c, arm_topic, core.gripper_topic)
                if reason is not None:
                    state.last_rejection = reason
            now = core.step()
            self._last_t = now
            for event in core.due(now):
                if event == "js":
                    js = core.joint_state(core.js_period)
                    policy.on_joint_state(js, now)
                    if counting:
                        state.track_motion(js.positions[: self.profile.dof])
                    if bag is not None:
                        bag.joint_state(
                            core.joint_states_topic, now, js.names, js.positions, js.velocities
                        )
                elif event == "cam":
                    if self.on_camera is not None:
                        self.on_camera(world, now)
                    if render:
                        rgb = world.render("scene") if pixels else blank
                        policy.on_frame(rgb, info, now, now)
                        if bag is not None:
                            bag.image(now, rgb, info)
                elif event == "status":
                    st = core.status_dict()
                    state.status = st
                    if bag is not None:
                        bag.status(now, st)

        # Episode start: the instruction, then wait for the policy (plans) and settle.
        t_reset = core.clock_s
        policy.on_instruction(out.instruction, t_reset)
        if bag is not None:
            bag.status(t_reset, core.status_dict())
            bag.string(T.INSTRUCTION, t_reset, out.instruction)
        while not policy.ready(core.clock_s):
            if core.clock_s - t_reset > cfg.plan_timeout_s:
                raise RuntimeError(
                    "the planner produced no plan within %.0f s of sim time "
                    "after the reset of seed %d" % (cfg.plan_timeout_s, seed)
                )
            step_once(False)
        if cfg.policy != "expert":
            t_settle = core.clock_s + cfg.settle_s
            while core.clock_s < t_settle:
                step_once(False)
        start = core.status_dict()
        t_enable = core.clock_s
        out.goal_distance_start_m = float(start["goal_distance_m"])
        out.goal_distance_min_m = out.goal_distance_start_m
        state.q0 = world.arm_qpos()
        policy.enable(t_enable)
        timeout = cfg.timeout_for(task)
        while True:
            step_once(True)
            elapsed = core.clock_s - t_enable
            if state.status is not None and state.status.get("resets") == start["resets"]:
                d = float(state.status["goal_distance_m"])
                out.goal_distance_min_m = min(out.goal_distance_min_m, d)
                state.status = None
            if core.success:
                out.success = True
                out.time_to_success_s = elapsed
                break
            if elapsed >= timeout:
                break
        t_stop = core.clock_s
        policy.stop(t_stop)
        while core.clock_s < t_stop + STOP_SETTLE_S:
            step_once(True)  # as ROS mode: the smooth stop's commands and motion count too
        if hasattr(policy, "finish"):
            policy.finish(core.clock_s)
        end = core.status_dict()
        if bag is not None:
            bag.status(core.clock_s, end)
        out.duration_s = float(end["sim_time"]) - float(start["sim_time"])
        out.goal_distance_end_m = float(end["goal_distance_m"])
        out.goal_distance_min_m = min(out.goal_distance_min_m, out.goal_distance_end_m)
        out.rejected_commands = int(end["rejected_commands"]) - int(start["rejected_commands"])
        if int(end.get("reflexes", 0)) > int(start.get("reflexes", 0)):
            # the real arm would have stopped: the episode failed, whatever happened after
            first = core.safety.monitor.history[int(start.get("reflexes", 0))]
            out.reflex, out.reflex_detail = first.reason, first.detail
            out.success, out.time_to_success_s = False, None
        out.commands = state.counts.get("trajectory", 0) + state.counts.get("forward", 0)
        out.gripper_commands = state.counts.get("gripper", 0)
        out.plans = policy.counters.plans
        out.arm_motion_rad = state.motion
        out.worst_diagnostics = dict(policy.counters.diagnostics)
        out.figures = dict(policy.counters.figures)
        return out, bag


class _EpisodeState:
    def __init__(self):
        self.counts: Dict[str, int] = {}
        self.q0: Optional[np.ndarray] = None
        self.motion = 0.0
        self.status: Optional[dict] = None
        self.last_rejection = ""

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def track_motion(self, q: np.ndarray) -> None:
        if self.q0 is not None:
            self.motion = max(self.motion, float(np.max(np.abs(np.asarray(q) - self.q0))))


def _bag_command(bag, c: Command, arm_topic: str, gripper_topic: str) -> None:
    if c.kind == "trajectory":
        names, points = c.payload
        bag.trajectory(arm_topic, c.t, names, points, c.stamp_s)
    elif c.kind == "forward":
        bag.float_array(arm_topic, c.t, c.payload)
    else:
        bag.float_array(gripper_topic, c.t, c.payload)


# --- many episodes ------------------------------------------------------------------------------

_WORKER: Optional[DirectEpisodes] = None


def _worker_init(cfg: EvalConfig, out_dir: Optional[str]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    global _WORKER
    _WORKER = DirectEpisodes(cfg, Path(out_dir) if out_dir else None)


def _worker_run(job: Tuple[str, int]) -> EpisodeOutcome:
    return _WORKER.run(*job)


def episode_jobs(cfg: EvalConfig) -> List[Tuple[str, int]]:
    return [(task, cfg.seed + i) for task in cfg.tasks for i in range(cfg.episodes)]


def run_outcomes(
    cfg: EvalConfig, out_dir: Optional[Path] = None, jobs: int = 1, on_episode=None
) -> Tuple[List[EpisodeOutcome], str]:
    """Every (task, seed) episode of ``cfg``; returns (outcomes in job order, error). Ctrl-C
    returns what finished with error "interrupted". ``on_episode(outcome)`` after each."""
    todo = episode_jobs(cfg)
    done: Dict[Tuple[str, int], EpisodeOutcome] = {}
    error = ""
    try:
        if jobs <= 1:
            runner = DirectEpisodes(cfg, out_dir)
            for task, seed in todo:
                o = runner.run(task, seed)
                done[(task, seed)] = o
                if on_episode:
                    on_episode(o)
        else:
            # spawn: a fresh interpreter per worker (MuJoCo's GL contexts do not survive fork)
            ctx = mp.get_context("spawn")
            with ctx.Pool(
                jobs, initializer=_worker_init, initargs=(cfg, str(out_dir) if out_dir else None)
            ) as pool:
                try:
                    for o in pool.imap_unordered(_worker_run, todo):
                        done[(o.task, o.seed)] = o
                        if on_episode:
                            on_episode(o)
                except KeyboardInterrupt:
                    pool.terminate()
                    raise
    except KeyboardInterrupt:
        error = "interrupted"
    return [done[j] for j in todo if j in done], error


def evaluate(cfg: EvalConfig, log=None) -> Tuple[dict, Path]:
    """The direct-mode evaluation of ``cfg`` (result dict, as written to OUT/result.json)."""
    import sys

    cfg.validate()
    out = (
        Path(cfg.out)
        if cfg.out
        else Path("eval_results") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    )
    if (out / "result.json").exists():
        raise ValueError("%s already holds a result.json; choose another --out" % out)
    if cfg.record_bags:
        from clap_ros.nodes.episode_runner import episode_bag_name

        taken = [
            str(out / "bags" / episode_bag_name(cfg.robot, t, s)) for t, s in episode_jobs(cfg)
        ]
        taken = [p for p in taken if Path(p).exists()]
        if taken:
            raise ValueError("bags already exist (never overwritten): %s" % ", ".join(taken))
    model = "expert" if cfg.policy == "expert" else str(_resolve_model(cfg.model))
    if cfg.policy != "expert":
        cfg.model = model
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(episode_jobs(cfg)),
            unit="episode",
            desc="eval-sim direct %s %s" % (cfg.robot, cfg.policy),
        )
    finished: List[EpisodeOutcome] = []

    def on_episode(o: EpisodeOutcome) -> None:
        finished.append(o)
        line = "%s seed %d: %s%s" % (
            o.task,
            o.seed,
            "success in %.1f s" % o.time_to_success_s if o.success else "failure",
            (" (%s)" % o.error.splitlines()[0]) if o.error else "",
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                task=o.task, success="%d/%d" % (sum(e.success for e in finished), len(finished))
            )
            bar.write(line, file=sys.stderr)
        else:
            log(line)

    t0 = time.time()
    # SIGTERM (a background run being stopped) ends it like Ctrl-C: what finished is written.
    import signal
    import threading

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        episodes, error = run_outcomes(cfg, out, jobs=cfg.jobs, on_episode=on_episode)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        if bar is not None:
            bar.close()
    result = summarize(cfg, model, episodes, wall_s=time.time() - t0, error=error)
    write_result(out, result)
    return result, out


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _resolve_model(model: str) -> Path:
    from clap_ros.eval.sim_results import resolve_model

    return resolve_model(model)


def wall_per_episode(result: dict) -> Dict[str, float]:
    """Median and mean wall seconds per episode of a result (for `make bench`)."""
    walls = [float(e["wall_s"]) for e in result.get("episodes", [])]
    if not walls:
        return {"episodes": 0, "median_wall_s": math.nan, "mean_wall_s": math.nan}
    return {
        "episodes": len(walls),
        "median_wall_s": float(np.median(walls)),
        "mean_wall_s": float(np.mean(walls)),
    }


def run_episodes(cfg: EvalConfig, out_dir: Optional[Path] = None) -> dict:
    """For `make bench` and tests: cfg's episodes in direct mode (``cfg.jobs`` processes), no
    result files written (bags only with ``record_bags`` and an ``out_dir``); the result dict as
    summarize() builds it, plus ``wall_per_episode`` (``episodes[i]["wall_s"]``: wall seconds of
    each episode)."""
    cfg.validate()
    if cfg.policy != "expert":
        cfg.model = str(_resolve_model(cfg.model))
    t0 = time.time()
    episodes, error = run_outcomes(cfg, out_dir, jobs=cfg.jobs)
    model = "expert" if cfg.policy == "expert" else str(cfg.model)
    result = summarize(cfg, model, episodes, wall_s=time.time() - t0, error=error)
    result["wall_per_episode"] = wall_per_episode(result)
    return result


def run_direct(cfg: EvalConfig, log=None) -> dict:
    """``eval-sim --mode direct`` of ``cfg`` (whatever its ``mode`` says), writing result.json /
    report.md to ``cfg.out`` like the CLI; returns the result dict (for `make bench`)."""
    import dataclasses

    cfg = dataclasses.replace(cfg, mode="direct")
    result, _ = evaluate(cfg, log=log)
    return result


def default_tasks() -> Sequence[str]:
    from clap_ros.sim.tasks import TASKS

    return sorted(TASKS)
