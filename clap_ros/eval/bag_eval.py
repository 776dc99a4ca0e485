"""``clap-ros eval-bag``: replay recorded bags through the CLAP stack and score it against them.

Open-loop evaluation: the policy sees the operator's camera frames and joint states, exactly as
recorded, and its commands go nowhere (no arm moves); they are compared with what the operator
commanded at the same times. Two ways to run the stack:

* ``offline`` (default): no ROS. The bag's messages drive ``ClapRuntime`` (encoder, planner, RF)
  and the action node's own controller (``clap_ros.nodes.action_logic.ActionController``: chunk
  queue, safety filter, watchdog) on a virtual clock = the bag's log time. Each model call takes
  its measured wall time on the virtual clock (its result is delivered that much later), so
  latencies are those of this machine without the scheduling noise of separate processes.
* ``ros``: encoder_node, planner_node and action_node run as separate processes on sim time; a
  player (``clap_ros.eval.bag_player``) publishes ``/clock`` and the bag's inputs at the recorded
  pace (``--rate``) and records everything the stack publishes into a new MCAP bag.

Both end in the same ``Replay`` record, scored by ``clap_ros.eval.bag_metrics`` and written as
``metrics.json`` + a self-contained ``report.html`` (``clap_ros.eval.report``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.data.bags import BagError

MODES = ("offline", "ros")
COMMAND_MODES = ("auto", "joint_trajectory", "forward_position")
# In replay the measured joint states are the operator's, not the result of our commands, so the
# action node's tracking check (measured pose vs recent commands) would stop the run as soon as
# the policy disagrees with the operator. 3 rad (the parameter's maximum) effectively disables
# it; the watchdog (stale inputs) stays active.
REPLAY_TRACKING_TOLERANCE_RAD = 3.0
# A header stamp further than this from the message's log time is on another clock (a camera's
# hardware clock, a bag recorded without sim time): the log time stands in for it.
STAMP_CLOCK_TOLERANCE_S = 1.0
METRIC_GRID_HZ = 100.0     # commanded vs reference trajectories are compared on this grid


class BagEvalError(RuntimeError):
    """A bag (or the configuration) cannot be evaluated; the message names the cause."""


@dataclass
class BagEvalConfig:
    bags: List[str]
    out: str
    model: str = "models/default"
    mode: str = "offline"
    rate: Optional[float] = 1.0             # ros mode replay speed; None = as fast as possible
    topic_map: Optional[str] = None
    robot: Optional[str] = None             # None: the model bundle's robot
    command_mode: str = "auto"              # auto: what the bag's operator commands used
    backend: str = "cpu"
    seed: int = 0
    planner_rate_hz: float = 5.0
    instruction: Optional[str] = None       # overrides the bag's instruction
    domain_id: Optional[int] = None         # ros mode
    progress: bool = True

    def validate(self) -> None:
        if not self.bags:
            raise BagEvalError("no --bag given")
        if self.mode not in MODES:
            raise BagEvalError("--mode must be one of %s, got %r" % (", ".join(MODES), self.mode))
        if self.command_mode not in COMMAND_MODES:
            raise BagEvalError("--command-mode must be one of %s" % ", ".join(COMMAND_MODES))
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise BagEvalError("--rate must be > 0 or 'max', got %r" % self.rate)
        if not self.planner_rate_hz > 0:
            raise BagEvalError("--planner-rate must be > 0")


# --- topics and images --------------------------------------------------------------------------
def resolve_topics(profile, topic_map: Optional[str]):
    """Topic names to read: a --topic-map file (clap_ros.data.topic_map, imported only then) or
    the defaults (the recorder's names, driver topics from the robot profile)."""
    if topic_map:
        from clap_ros.data.topic_map import TopicMap
        return TopicMap.load(topic_map).resolve(profile)
    return SimpleNamespace(camera=T.CAMERA_IMAGE, camera_info=T.CAMERA_INFO,
                           joint_states=profile.driver.joint_states_topic,
                           instruction=T.INSTRUCTION, arm_command="",
                           gripper_command=profile.driver.gripper_command_topic)


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """RGB uint8 from an Image / CompressedImage; ImageEncodingError names an unknown encoding."""
    try:
        from clap_ros.data.images import decode_image_msg
    except ImportError:
        decode_image_msg = None
    if decode_image_msg is not None:
        return decode_image_msg(msg, msgtype)
    from clap_ros.data.images import compressed_to_rgb
    from clap_ros.inference.preprocess import rgb_from_msg
    if msgtype.endswith("CompressedImage"):
        return compressed_to_rgb(msg)
    return rgb_from_msg(msg)


def stamp_s(header_ns: int, log_ns: int) -> float:
    """A message's time on the bag clock (s): its header stamp when that is on the log clock,
    else the log time."""
    if header_ns and abs(header_ns - log_ns) <= STAMP_CLOCK_TOLERANCE_S * 1e9:
        return header_ns * 1e-9
    return log_ns * 1e-9


def _hdr_ns(msg) -> int:
    st = msg.header.stamp
    return int(st.sec) * 1_000_000_000 + int(st.nanosec)


# --- pass 1: what the bag holds -------------------------------------------------------------------
@dataclass
class BagData:
    """Everything but the images, read once; times are bag log times in ns."""

    path: Path
    topics: Any
    start_ns: int
    end_ns: int
    js_t: List[int] = field(default_factory=list)
    js_q: List[np.ndarray] = field(default_factory=list)
    js_grip: List[float] = field(default_factory=list)
    commands: List[Tuple[int, str, Any]] = field(default_factory=list)   # (t, traj|fwd, msg)
    arm_topic: Optional[str] = None
    arm_kind: Optional[str] = None          # "traj" | "fwd" | None (no commands recorded)
    grip_t: List[int] = field(default_factory=list)
    grip_v: List[float] = field(default_factory=list)
    image_t: List[int] = field(default_factory=list)
    image_encoding: str = ""
    has_camera_info: bool = False
    instructions: List[Tuple[int, str]] = field(default_factory=list)
    instruction_source: str = "topic"       # topic (replayed at its times) | override | outcome
    notes: List[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return "commands" if self.commands else "joint_states"


def read_bag(path: Path, profile, topics, instruction: Optional[str] = None) -> BagData:
    """Check a bag and read its non-image streams. BagError / BagEvalError name the problem:
    missing/corrupt/truncated bag, missing topics, joint names, image encoding, instruction."""
    from clap_ros.data.bags import BagReader, deserialize
    from clap_ros.data.images import ImageEncodingError
    from clap_ros.robots import ProfileError
    drv = profile.driver
    with BagReader(path) as r:
        have = r.topics
        r.require([topics.camera, topics.joint_states])
        d = BagData(path=Path(path), topics=topics, start_ns=r.start_time_ns, end_ns=r.end_time_ns)
        cands = []
        for t in (topics.arm_command, drv.trajectory_topic, drv.forward_topic):
            if t and t in have and r.message_counts.get(t, 0) and t not in cands:
                cands.append(t)
        if topics.arm_command and topics.arm_command not in have:
            raise BagError("bag %s: missing topic(s) %s (the topic map's arm_command)"
                           % (path, topics.arm_command))
        if cands:
            d.arm_topic = cands[0]
            mt = have[d.arm_topic]
            if mt.endswith("JointTrajectory"):
                d.arm_kind = "traj"
            elif mt.endswith("Float64MultiArray"):
                d.arm_kind = "fwd"
            else:
                raise BagEvalError("bag %s: arm command topic %s has type %s (need "
                                   "trajectory_msgs/JointTrajectory or std_msgs/Float64MultiArray)"
                                   % (path, d.arm_topic, mt))
        else:
            d.notes.append("no arm command topic (%s) in the bag: the reference is the recorded "
                           "joint_states" % " or ".join(
                               t for t in (topics.arm_command, drv.trajectory_topic,
                                           drv.forward_topic) if t))
        d.has_camera_info = bool(topics.camera_info in have
                                 and r.message_counts.get(topics.camera_info, 0))
        if not d.has_camera_info:
            d.notes.append("no %s in the bag: frames are not undistorted" % topics.camera_info)
        wanted = [topics.joint_states, topics.instruction, topics.gripper_command,
                  T.EPISODE_OUTCOME, T.SIM_STATUS, topics.camera] + ([d.arm_topic] if d.arm_topic
                                                                    else [])
        grip_names = set(profile.gripper.joint_names)
        fallback_instruction = None
        for topic, msgtype, ts, data in r.raw_messages(wanted):
            if topic == topics.camera:
                if not d.image_t:
                    try:
                        rgb = decode_image(deserialize(data, msgtype), msgtype)
                    except ImageEncodingError as e:
                        raise BagEvalError("bag %s: %s: %s" % (path, topics.camera, e)) from None
                    except Exception as e:
                        raise BagError("bag %s: first message on %s does not deserialise as %s "
                                       "(%s)" % (path, topic, msgtype, e)) from None
                    d.image_encoding = "%dx%d" % (rgb.shape[1], rgb.shape[0])
                d.image_t.append(ts)
                continue
            try:
                msg = deserialize(data, msgtype)
            except Exception as e:
                raise BagError("bag %s: message on %s at %d ns does not deserialise as %s (%s)"
                               % (path, topic, ts, msgtype, e)) from None
            if topic == topics.joint_states:
                names = list(msg.name)
                pos = np.asarray(msg.position, dtype=np.float64)
                try:
                    q = profile.reorder(names, pos)
                except ProfileError as e:
                    raise BagEvalError("bag %s: %s joint names do not match robot profile '%s': %s"
                                       % (path, topic, profile.name, e)) from None
                g = [pos[i] for i, n in enumerate(names) if n in grip_names and i < len(pos)]
                d.js_t.append(ts)
                d.js_q.append(q)
                d.js_grip.append(profile.gripper.command_from_position(float(np.mean(g)))
                                 if g else np.nan)
            elif topic == d.arm_topic:
                d.commands.append((ts, d.arm_kind, msg if d.arm_kind == "traj"
                                   else np.asarray(msg.data, dtype=np.float64)))
            elif topic == topics.gripper_command:
                if len(msg.data):
                    d.grip_t.append(ts)
                    d.grip_v.append(float(np.clip(msg.data[0], 0.0, 1.0)))
            elif topic == topics.instruction:
                d.instructions.append((ts, str(msg.data).strip()))
            elif topic in (T.EPISODE_OUTCOME, T.SIM_STATUS) and fallback_instruction is None:
                try:
                    fallback_instruction = json.loads(msg.data).get("instruction")
                except (ValueError, AttributeError):
                    pass
    if not d.js_t or not d.image_t:
        raise BagError("bag %s: missing topic(s) %s" % (path, topics.joint_states if not d.js_t
                                                         else topics.camera))
    if instruction:
        d.instructions = [(d.start_ns, instruction)]
        d.instruction_source = "override"
    elif not any(text for _, text in d.instructions):
        if fallback_instruction:
            d.instructions = [(d.start_ns, str(fallback_instruction))]
            d.instruction_source = "outcome"
            d.notes.append("instruction from the episode outcome/status (no %s)"
                           % topics.instruction)
        else:
            raise BagError("bag %s: missing topic(s) %s: no instruction to plan with (pass "
                           "--instruction)" % (path, topics.instruction))
    return d


# --- what a run of the stack produced -------------------------------------------------------------
@dataclass
class Replay:
    """Everything the stack did during one bag, on the bag's log clock (ns)."""

    mode: str
    command_mode: str
    arm: List[Tuple[int, str, Any]] = field(default_factory=list)   # (t, traj|fwd, msg|q)
    gripper: List[Tuple[int, float]] = field(default_factory=list)
    latency_s: List[float] = field(default_factory=list)
    latency_source: str = ""
    rf_chunks: List[Tuple[float, np.ndarray]] = field(default_factory=list)  # (frame s, [H, A])
    counts: Dict[str, int] = field(default_factory=dict)
    latents: int = 0
    plans: int = 0
    stops: List[Tuple[float, str]] = field(default_factory=list)
    wall_s: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)
    output_bag: Optional[str] = None


class _DeferredAct:
    """The runtime as ActionController sees it, with ``act`` computed ahead of time: the offline
    replay runs the RF graph when the worker would start (to measure how long it takes) and lets
    ``ActionController.infer_once`` pick the result up when the worker would finish."""

    def __init__(self, runtime):
        self._rt = runtime
        self.result: Optional[np.ndarray] = None

    def __getattr__(self, name):
        return getattr(self._rt, name)

    def act(self, latent, plan_indices, state, rng=None):
        out, self.result = self.result, None
        if out is None:
            raise RuntimeError("offline replay: act() without a precomputed chunk")
        return out


def _command_mode(cfg: BagEvalConfig, data: BagData) -> str:
    if cfg.command_mode != "auto":
        return cfg.command_mode
    return "forward_position" if data.arm_kind == "fwd" else "joint_trajectory"


def _traj_msg(tr) -> Any:
    from clap_ros.data.bags import joint_trajectory_msg
    return joint_trajectory_msg(tr.joint_names, [p[0] for p in tr.points],
                                np.array([p[1] for p in tr.points]),
                                np.array([p[2] for p in tr.points]))


def replay_offline(data: BagData, runtime, profile, cfg: BagEvalConfig) -> Replay:
    """Drive ClapRuntime + ActionController with the bag on a virtual clock (module docstring)."""
    import heapq
    from clap_ros.control.watchdog import State
    from clap_ros.data.bags import BagReader
    from clap_ros.inference.preprocess import Calibration, Preprocessor
    from clap_ros.nodes.action_logic import ActionConfig, ActionController
    from clap_ros.nodes.clap_logic import state_from_joint_state

    mode = _command_mode(cfg, data)
    proxy = _DeferredAct(runtime)
    ctl = ActionController(profile, proxy, ActionConfig(
        command_mode=mode, tracking_tolerance_rad=REPLAY_TRACKING_TOLERANCE_RAD, seed=cfg.seed))
    b = runtime.bundle
    rep = Replay(mode="offline", command_mode=mode,
                 latency_source="exact: camera frame stamp -> first command from its chunk")
    tp = data.topics
    t_first = data.start_ns * 1e-9
    t_end = data.end_ns * 1e-9
    events: List[Tuple[float, int, Any]] = []
    seq = [0]

    def at(t: float, fn) -> None:
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], fn))

    st = SimpleNamespace(latent=None, latent_stamp=-math.inf, latent_seq=0, js=None, js_t=-math.inf,
                         instruction="", instr_version=0, planned=(0, -1), enc_busy=False,
                         enc_pending=None, act_busy=False, prev_state=State.HOLD, have_cal=False,
                         grip_cmd=None)

    # encoder worker: newest frame only, busy for the encode's wall time
    def encode(t: float, rgb: np.ndarray, stamp: float) -> None:
        st.enc_busy = True
        t0 = time.perf_counter()
        lat = runtime.encode(rgb)
        done = t + (time.perf_counter() - t0)

        def deliver(now=done, lat=lat, stamp=stamp):
            st.latent, st.latent_stamp = lat, stamp
            st.latent_seq += 1
            rep.latents += 1
            ctl.on_latent(lat, stamp, now)
            st.enc_busy = False
            if st.enc_pending is not None:
                pending, st.enc_pending = st.enc_pending, None
                encode(now, *pending)
            kick_worker(now)
        at(done, deliver)

    # planner: planner_node._plan_once's gating on the virtual clock
    def plan_tick(t: float) -> None:
        at(t + 1.0 / cfg.planner_rate_hz, lambda: plan_tick(t + 1.0 / cfg.planner_rate_hz))
        if not st.instruction or st.latent is None or st.js is None:
            return
        if (st.latent_seq, st.instr_version) == st.planned:
            return
        if t - st.js_t > 0.5 or t - st.latent_stamp > 1.0:   # max_state_age_s, max_latent_age_s
            return
        names, pos = st.js
        state, measured = state_from_joint_state(profile, names, pos)
        if not measured and st.grip_cmd is not None:
            state[-1] = st.grip_cmd
        t0 = time.perf_counter()
        indices, _ = runtime.plan(st.latent, st.instruction, state)
        done = t + (time.perf_counter() - t0)
        stamp = st.latent_stamp
        st.planned = (st.latent_seq, st.instr_version)

        def deliver(now=done, indices=indices, stamp=stamp):
            ctl.on_plan_tokens(indices)
            ctl.on_plan(stamp, now)
            rep.plans += 1
        at(done, deliver)

    # action node's worker: one RF inference at a time on the newest latent
    def kick_worker(t: float) -> None:
        if st.act_busy:
            return
        job = ctl.take_job()
        if job is None:
            return
        st.act_busy = True
        t0 = time.perf_counter()
        proxy.result = runtime.act(job.latent, job.tokens, job.state, ctl.rng)
        done = t + (time.perf_counter() - t0)
        rep.rf_chunks.append((job.stamp, np.asarray(runtime.joint_targets(proxy.result,
                                                                          job.state))))

        def finish(now=done, job=job):
            ctl.infer_once(job, lambda: now)
            proxy.result = None
            st.act_busy = False
            kick_worker(now)
        at(done, finish)

    period = ctl.cfg.tick_period_s

    def tick(t: float) -> None:
        at(t + period, lambda: tick(t + period))
        out = ctl.tick(t)
        t_ns = int(round(t * 1e9))
        if out.state is State.STOPPING and st.prev_state is State.RUN:
            rep.stops.append((t - t_first, ctl.watchdog.reason))
        st.prev_state = out.state
        if out.trajectory is not None:
            rep.arm.append((t_ns, "traj", _traj_msg(out.trajectory)))
        if out.arm is not None:
            rep.arm.append((t_ns, "fwd", np.array(out.arm, dtype=np.float64)))
        if out.gripper is not None:
            rep.gripper.append((t_ns, float(out.gripper)))
            st.grip_cmd = float(out.gripper)
        lat = ctl.pop_frame_to_command()
        if lat is not None:
            rep.latency_s.append(lat)
        kick_worker(t)

    def run_until(t: float) -> None:
        while events and events[0][0] <= t:
            _, _, fn = heapq.heappop(events)
            fn()

    wall0 = time.perf_counter()
    ctl.enable(t_first)
    at(t_first, lambda: tick(t_first))
    at(t_first, lambda: plan_tick(t_first))
    instr_topic = tp.instruction if data.instruction_source == "topic" else None
    if instr_topic is None:
        # not on the bag's topic (override / outcome): known from the start
        st.instruction, st.instr_version = data.instructions[0][1], 1
    topics_b = [tp.camera, tp.joint_states] + ([tp.camera_info] if data.has_camera_info else []) \
        + ([instr_topic] if instr_topic else [])
    bar = _bar(cfg, len(data.image_t), "offline %s" % data.path.name)
    with BagReader(data.path) as r:
        for topic, msgtype, ts, msg in r.messages(topics_b):
            t = ts * 1e-9
            run_until(t)
            if topic == tp.camera:
                bar.update(1)
                if data.has_camera_info and not st.have_cal:
                    continue                  # encoder_node's require_camera_info
                rgb = decode_image(msg, msgtype)
                stamp = stamp_s(_hdr_ns(msg), ts)
                if st.enc_busy:
                    st.enc_pending = (rgb, stamp)
                else:
                    encode(t, rgb, stamp)
            elif topic == tp.camera_info:
                if not st.have_cal:
                    runtime.preprocessor = Preprocessor(b.image_height, b.image_width,
                                                        Calibration.from_camera_info(msg))
                    st.have_cal = True
            elif topic == tp.joint_states:
                st.js = (list(msg.name), np.asarray(msg.position, dtype=np.float64))
                st.js_t = t
                ctl.on_joint_state(msg.name, msg.position, stamp_s(_hdr_ns(msg), ts), t)
            elif topic == instr_topic:
                text = str(msg.data).strip()
                if text and text != st.instruction:
                    st.instruction = text
                    st.instr_version += 1
    run_until(t_end)
    bar.close()
    rep.wall_s = time.perf_counter() - wall0
    d = ctl.diagnostics(t_end)
    rep.counts = _counts_from_diagnostics(d)
    rep.counts["watchdog_stops"] = len(rep.stops)
    rep.extra["final_state"] = d.get("state")
    rep.extra["final_reason"] = d.get("reason")
    return rep


def _counts_from_diagnostics(d: Dict[str, Any]) -> Dict[str, int]:
    """Counters from the action node's diagnostics (the controller's dict, or the values of its
    /clap/diagnostics status): the same keys in both modes."""
    def num(k):
        try:
            return int(float(d.get(k, 0) or 0))
        except (TypeError, ValueError):
            return 0
    safety = {k: num(k) for k in d if (k.startswith("safety_") or k.startswith("trajectory_"))
              and k not in ("trajectory_time_scale",)}
    c = {"chunks_accepted": num("chunks_accepted"), "chunks_rejected": num("chunks_rejected"),
         "inferences": num("inferences"), "inference_errors": num("inference_errors"),
         "tracking_faults": num("tracking_faults"), "commands": num("commands"),
         "trajectories": num("trajectories")}
    c["safety_interventions"] = sum(safety.values())
    c.update(safety)
    return c


def _bar(cfg: BagEvalConfig, total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="frame", disable=not cfg.progress, leave=False)


# --- scoring -----------------------------------------------------------------------------------
def _commanded(profile, commands, grid_ns: np.ndarray, t0_ns: int, initial_q) -> np.ndarray:
    """Commanded arm positions at ``grid_ns``: the commands replayed through the
    JointTrajectoryController rules, as bag2dataset does for the dataset's actions."""
    from clap_ros.data.bag2dataset import commanded_arm
    q, _ = commanded_arm(profile, SimpleNamespace(commands=list(commands)), grid_ns, t0_ns,
                         np.asarray(initial_q, dtype=np.float64))
    return q


def _latest(times: Sequence[int], values: Sequence[float], grid_ns: np.ndarray,
            before: float) -> np.ndarray:
    from clap_ros.data.bag2dataset import latest_index
    if not len(times):
        return np.full(len(grid_ns), before, dtype=np.float64)
    i = latest_index(times, grid_ns)
    v = np.asarray(list(values) + [before], dtype=np.float64)
    return v[i]          # index -1 picks the appended "before" value


def _js_at(data: BagData, grid_ns: np.ndarray) -> np.ndarray:
    from clap_ros.data.bag2dataset import latest_index
    i = np.maximum(latest_index(data.js_t, grid_ns), 0)
    return np.stack(data.js_q)[i]


def score(data: BagData, rep: Replay, profile, chunk_horizon_s: float) -> Dict[str, Any]:
    """metrics for one bag (see bag_metrics); plus the series the report plots under "_series"."""
    from clap_ros.control.trajectory import points_from_msg
    from clap_ros.eval import bag_metrics as M
    dof = profile.dof
    names = list(profile.joint_names)
    t0 = data.start_ns
    ref_initial = data.js_q[0]
    if data.commands:
        from clap_ros.data.bag2dataset import latest_index
        k = latest_index(data.js_t, np.array([data.commands[0][0]]))[0]
        ref_initial = data.js_q[max(int(k), 0)]

    def reference(grid_ns: np.ndarray) -> np.ndarray:
        if data.commands:
            return _commanded(profile, data.commands, grid_ns, t0, ref_initial)
        return _js_at(data, grid_ns)

    m: Dict[str, Any] = {"bag": str(data.path), "mode": rep.mode,
                         "command_mode": rep.command_mode, "reference": data.reference,
                         "reference_topic": data.arm_topic or data.topics.joint_states,
                         "duration_s": (data.end_ns - data.start_ns) * 1e-9,
                         "frames": len(data.image_t), "instruction": data.instructions[0][1],
                         "notes": list(data.notes), "wall_s": rep.wall_s}
    series: Dict[str, Any] = {"joint_names": names}
    # commanded trajectory vs reference on a uniform grid, from our first command to the end
    first_cmd = rep.arm[0][0] if rep.arm else None
    if first_cmd is not None and first_cmd < data.end_ns:
        step = int(round(1e9 / METRIC_GRID_HZ))
        grid = np.arange(first_cmd, data.end_ns + 1, step, dtype=np.int64)
        ours = _commanded(profile, rep.arm, grid, t0, _js_at(data, grid[:1])[0])
        ref = reference(grid)
        tsec = (grid - t0) * 1e-9
        m["command"] = M.tracking_errors(ours, ref)
        m["smoothness"] = M.smoothness(tsec, ours)
        m["reference_smoothness"] = M.smoothness(tsec, ref)
        js_grip = np.asarray(data.js_grip, dtype=np.float64)
        start_grip = float(js_grip[0]) if np.isfinite(js_grip[0]) else 1.0
        ref_g = (_latest(data.grip_t, data.grip_v, grid, start_grip) if data.grip_t
                 else _latest(data.js_t, np.where(np.isfinite(js_grip), js_grip, start_grip),
                              grid, start_grip))
        our_g = _latest([t for t, _ in rep.gripper], [v for _, v in rep.gripper], grid,
                        start_grip)
        m["gripper"] = M.gripper_agreement(our_g, ref_g)
        m["gripper"]["reference"] = "gripper commands" if data.grip_t else "joint_states"
        series.update(t=tsec.tolist(), ours=ours.tolist(), ref=ref.tolist(),
                      err=np.max(np.abs(ours - ref), axis=1).tolist(),
                      grip_ours=our_g.tolist(), grip_ref=ref_g.tolist())
    else:
        m["command"] = M.tracking_errors(np.zeros((0, dof)), np.zeros((0, dof)))
        m["smoothness"] = M.smoothness(np.zeros(0), np.zeros((0, dof)))
        m["gripper"] = M.gripper_agreement([], [])
        m["notes"].append("the stack sent no arm command during this bag")
    # chunks: each trajectory sent, over the model's chunk horizon, vs the reference then
    trajs = [(t, msg) for t, kind, msg in rep.arm if kind == "traj"]
    if trajs:
        rows = []
        for t, msg in trajs:
            _, pts, _ = points_from_msg(msg)
            pts = [p for p in pts if p[0] <= chunk_horizon_s + 1e-9]
            rows.append((t, np.array([p[0] for p in pts]), np.array([p[1] for p in pts])))
        h = max(len(r[1]) for r in rows)
        pred = np.zeros((len(rows), h, dof))
        times = np.zeros((len(rows), h), dtype=np.int64)
        valid = np.zeros((len(rows), h), bool)
        for i, (t, tf, q) in enumerate(rows):
            n = len(tf)
            pred[i, :n] = q
            times[i, :n] = t + np.round(tf * 1e9).astype(np.int64)
            valid[i, :n] = times[i, :n] <= data.end_ns
        flat = np.unique(times[valid])
        ref_flat = reference(flat) if flat.size else np.zeros((0, dof))
        refc = np.zeros_like(pred)
        idx = np.searchsorted(flat, times)
        refc[valid] = ref_flat[idx[valid]]
        m["chunk"] = M.chunk_errors(pred, refc, valid, names)
        m["chunk"]["source"] = "JointTrajectory commands over the chunk horizon (%.2f s)" \
            % chunk_horizon_s
        # hand-over: the new trajectory's first point vs where the previous one was headed then
        before, after = [], []
        for (t_a, tf_a, q_a), (t_b, tf_b, q_b) in zip(rows, rows[1:]):
            if len(tf_b) == 0 or len(tf_a) == 0:
                continue
            x = (t_b - t_a) * 1e-9 + tf_b[0]
            before.append([np.interp(x, tf_a, q_a[:, j]) for j in range(dof)])
            after.append(q_b[0])
        m["boundaries"] = {"position": M.discontinuities(np.array(before).reshape(-1, dof),
                                                         np.array(after).reshape(-1, dof))}
    else:
        m["chunk"] = None
        m["boundaries"] = None
    if rep.rf_chunks:
        hz = len(rep.rf_chunks[0][1])
        dt = chunk_horizon_s / hz
        t_steps = np.array([[int(round((s + i * dt) * 1e9)) for i in range(hz)]
                            for s, _ in rep.rf_chunks], dtype=np.int64)
        pred = np.stack([c[:, :dof] for _, c in rep.rf_chunks])
        valid = (t_steps >= data.start_ns) & (t_steps <= data.end_ns)
        flat = np.unique(t_steps[valid])
        ref_flat = reference(flat) if flat.size else np.zeros((0, dof))
        refc = np.zeros_like(pred)
        refc[valid] = ref_flat[np.searchsorted(flat, t_steps)[valid]]
        m["rf_chunk"] = M.chunk_errors(pred, refc, valid, names)
        m["rf_chunk"]["source"] = "raw CLAP-RF chunks (step i at frame + i * chunk_dt)"
    m["latency_ms"] = M.distribution(rep.latency_s, 1e3)
    m["latency_ms"]["source"] = rep.latency_source
    cmd_t = [t * 1e-9 for t, _, _ in rep.arm]
    m["rates"] = {"command_hz": M.achieved_rate(cmd_t),
                  "chunk_hz": M.achieved_rate([t * 1e-9 for t, k, _ in rep.arm if k == "traj"])
                  if rep.command_mode == "joint_trajectory" else None,
                  "gripper_hz": M.achieved_rate([t * 1e-9 for t, _ in rep.gripper]),
                  "latent_hz": rep.latents / m["duration_s"] if m["duration_s"] > 0 else None,
                  "plan_hz": rep.plans / m["duration_s"] if m["duration_s"] > 0 else None}
    m["counts"] = dict(rep.counts, latents=rep.latents, plans=rep.plans,
                       arm_commands=len(rep.arm), gripper_commands=len(rep.gripper))
    m["stops"] = [{"t_s": round(t, 3), "reason": r} for t, r in rep.stops]
    if rep.output_bag:
        m["output_bag"] = rep.output_bag
    m.update({k: v for k, v in rep.extra.items() if k not in m})
    series["latency_ms"] = [x * 1e3 for x in rep.latency_s]
    m["_series"] = series
    return m


# --- orchestration -----------------------------------------------------------------------------
class BagEvaluator:
    def __init__(self, cfg: BagEvalConfig, log=print):
        cfg.validate()
        self.cfg = cfg
        self.log = log

    def run(self) -> Dict[str, Any]:
        from clap_ros.eval import bag_metrics as M
        from clap_ros.inference.bundle import BundleError, load_bundle
        from clap_ros.nodes.clap_logic import resolve_model_dir
        from clap_ros.robots import ProfileError, load_profile
        cfg = self.cfg
        model_dir = resolve_model_dir(cfg.model)
        try:
            bundle = load_bundle(model_dir)
        except BundleError as e:
            raise BagEvalError("--model %s: %s" % (cfg.model, e)) from None
        try:
            profile = load_profile(cfg.robot or bundle.robot)
        except (ProfileError, OSError, ValueError) as e:
            raise BagEvalError("--robot %s: %s" % (cfg.robot or bundle.robot, e)) from None
        if list(bundle.joint_names) != list(profile.joint_names):
            raise BagEvalError("model %s is for joints %s, robot '%s' has %s"
                               % (cfg.model, bundle.joint_names, profile.name, profile.joint_names))
        try:
            topics = resolve_topics(profile, cfg.topic_map)
        except (ValueError, OSError) as e:        # TopicMapError is a ValueError
            raise BagEvalError("--topic-map %s: %s" % (cfg.topic_map, e)) from None
        horizon = bundle.chunk_length * float(bundle.manifest.get("chunk_dt_s")
                                              or 1.0 / bundle.control_rate_hz)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        runtime = None
        if cfg.mode == "offline":
            from clap_ros.inference.policy import ClapRuntime
            runtime = ClapRuntime(bundle, backend=cfg.backend, intra_op_num_threads=1)
        results: List[Dict[str, Any]] = []
        try:
            for i, bag in enumerate(cfg.bags):
                name = Path(bag).name or "bag%d" % i
                try:
                    data = read_bag(Path(bag), profile, topics, cfg.instruction)
                    if cfg.mode == "offline":
                        runtime.preprocessor = _fresh_preprocessor(bundle)
                        rep = replay_offline(data, runtime, profile, cfg)
                    else:
                        from clap_ros.eval.bag_player import replay_ros
                        rep = replay_ros(data, profile, cfg, model_dir,
                                         out / ("%02d_%s" % (i, name)))
                    m = score(data, rep, profile, horizon)
                    self.log("%s: chunk MAE %s rad, command MAE %s rad, latency p50 %s ms, "
                             "%d chunks" % (name, _fmt(M.lookup(m, ("chunk", "mae"))),
                                            _fmt(M.lookup(m, ("command", "mae"))),
                                            _fmt(M.lookup(m, ("latency_ms", "p50"))),
                                            m["counts"].get("chunks_accepted", 0)))
                except (BagError, BagEvalError) as e:
                    self.log("skipped: %s" % e, file=sys.stderr)
                    m = {"bag": str(bag), "error": str(e)}
                m["name"] = name
                results.append(m)
        finally:
            if runtime is not None:
                runtime.close()
        ok = [m for m in results if "error" not in m]
        summary = {"format": "clap_ros_bag_eval", "version": 1, "mode": cfg.mode,
                   "model": str(cfg.model), "robot": profile.name,
                   "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
                   "bags": [{k: v for k, v in m.items() if k != "_series"} for m in results],
                   "summary": {"fields": [[lab, "/".join(p), unit]
                                          for lab, p, unit in M.SUMMARY_FIELDS],
                               "per_bag": [dict(name=m["name"], **{
                                   lab: M.lookup(m, p) for lab, p, _ in M.SUMMARY_FIELDS})
                                   for m in ok],
                               "aggregate": M.aggregate(ok)},
                   "evaluated": len(ok), "failed": len(results) - len(ok)}
        (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=_json))
        from clap_ros.eval.report import write_report
        write_report(out / "report.html", summary, results)
        return summary


def _fresh_preprocessor(bundle):
    from clap_ros.inference.preprocess import Preprocessor
    return Preprocessor(bundle.image_height, bundle.image_width, None)


def _fmt(v) -> str:
    return "-" if v is None else "%.4g" % v


def _json(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --- CLI ---------------------------------------------------------------------------------------
DESCRIPTION = """\
Replay recorded rosbags (MCAP) through the CLAP stack and compare what it commands with what the
operator commanded (open loop: the policy sees the recorded frames and joint states; nothing
moves). Metrics per bag and over all bags go to OUT/metrics.json, plots and tables to
OUT/report.html (self-contained, opens offline).

Metrics: per-joint MAE/RMSE of each chunk over its horizon vs the recorded commands at the same
times (falls back to the recorded joint_states when the bag has no arm commands), gripper
open/close agreement, velocity/acceleration/jerk of the commanded trajectory and chunk-boundary
jumps, frame -> command latency, achieved command rate, safety-filter interventions, watchdog stops.

Modes: offline (default; no ROS, the runtime and the action node's controller on the bag's clock)
or ros (encoder/planner/action nodes as processes on sim time, the bag replayed on /clock at
--rate; everything they publish is recorded to OUT/<NN_bag>/replay next to the report).

Examples:
  clap-ros sim record --direct --robot fr3 --task reach --episodes 2 --out /tmp/bags
  clap-ros eval-bag --bag /tmp/bags/fr3_reach_seed000000 --bag /tmp/bags/fr3_reach_seed000001 \\
      --model models/default --out /tmp/eval_bag
  clap-ros eval-bag --bag /tmp/bags/fr3_reach_seed000000 --mode ros --rate 1.0 --out /tmp/eval_ros
  clap-ros eval-bag --bag my_robot.mcap --topic-map my_topics.yaml --robot fr3 --out /tmp/mine

Exit status: 0 every bag evaluated, 1 some bag could not be (its error is in metrics.json and on
stderr; the others are still reported), 2 bad arguments or nothing evaluated.
"""


def _rate(text: str) -> Optional[float]:
    if text.strip().lower() == "max":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--rate must be a number or 'max', got %r" % text)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-bag", help="replay rosbags through the CLAP stack; metrics + HTML report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", action="append", required=True, metavar="PATH",
                   help="rosbag2 directory, .mcap/.db3 file, or a folder searched for bags; "
                        "repeat for several (summary table)")
    p.add_argument("--model", default="models/default",
                   help="model bundle directory (default models/default)")
    p.add_argument("--mode", default="offline", choices=MODES,
                   help="offline: no ROS, fast; ros: the real nodes on sim time (default offline)")
    p.add_argument("--rate", type=_rate, default=1.0,
                   help="ros mode: replay speed, 1.0 = as recorded, or 'max' (unpaced; the nodes "
                        "then drop frames). Offline mode always runs as fast as it can on the "
                        "bag's clock. Default 1.0")
    p.add_argument("--out", required=True, help="directory for metrics.json and report.html")
    p.add_argument("--topic-map", default=None,
                   help="YAML mapping this bag's topic names (camera, camera_info, joint_states, "
                        "instruction, arm_command, gripper_command) to ours")
    p.add_argument("--robot", default=None,
                   help="robot profile (fr3, panda, ur5e or a YAML); default the model's robot")
    p.add_argument("--command-mode", default="auto", choices=COMMAND_MODES,
                   help="how the action node commands: auto = like the bag's recorded commands "
                        "(JointTrajectory -> joint_trajectory, Float64MultiArray -> "
                        "forward_position); default auto")
    p.add_argument("--instruction", default=None,
                   help="task instruction to plan with (default: the bag's /clap/instruction)")
    p.add_argument("--backend", default="cpu", choices=("auto", "cpu", "cuda", "tensorrt"),
                   help="inference backend (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="RF noise seed (default 0)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ros mode: ROS_DOMAIN_ID (default $ROS_DOMAIN_ID, else random)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def expand_bag_args(paths: Sequence[str]) -> List[str]:
    """Each --bag as given, except a folder that is not itself a bag: the bags found under it
    (sorted), so `--bag recordings/` evaluates a whole session. A folder without bags stays as
    given, and the evaluator reports it."""
    from clap_ros.data.bags import find_bags, is_bag
    out: List[str] = []
    for p in paths:
        path = Path(p)
        found = find_bags(path) if path.is_dir() and not is_bag(path) else []
        if found:
            out.extend(str(b) for b in found)
        else:
            out.append(p)
    return out


def run(args) -> int:
    cfg = BagEvalConfig(bags=expand_bag_args(args.bag), out=args.out, model=args.model, mode=args.mode,
                        rate=args.rate, topic_map=args.topic_map, robot=args.robot,
                        command_mode=args.command_mode, backend=args.backend, seed=args.seed,
                        instruction=args.instruction, domain_id=args.domain_id,
                        progress=not args.no_progress)
    try:
        summary = BagEvaluator(cfg, log=lambda *a, **k: print(*a, **k)).run()
    except BagEvalError as e:
        print("clap-ros eval-bag: error: %s" % e, file=sys.stderr)
        return 2
    agg = summary["summary"]["aggregate"]
    print("evaluated %d bag(s), %d failed (%s mode): chunk MAE %s rad, gripper agreement %s, "
          "latency p50 %s ms -> %s" % (summary["evaluated"], summary["failed"], cfg.mode,
                                       _fmt(agg.get("chunk MAE")),
                                       _fmt(agg.get("gripper agreement")),
                                       _fmt(agg.get("latency p50")),
                                       Path(cfg.out) / "report.html"))
    if summary["evaluated"] == 0:
        return 2
    return 1 if summary["failed"] else 0
