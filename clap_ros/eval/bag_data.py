"""What ``clap-ros eval-bag`` shares between its two modes (offline: the cores on the
VirtualStack, clap_ros.eval.bag_eval; ros: the real nodes, clap_ros.eval.bag_player): the
configuration, the bag's contents (``read_bag``), the ``Replay`` record both modes produce, and
``stack_params``, the three nodes' parameter schemas filled for a replay (both modes run the
nodes with exactly these values).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.data.bags import BagError
from clap_ros.rostime import stamp_to_ns
from clap_ros.runtime.params import ActionParams, EncoderParams, ParamError, PlannerParams
from clap_ros.runtime.virtual_stack import StackParams

MODES = ("offline", "ros")
COMMAND_MODES = ("auto", "joint_trajectory", "forward_position")
# In replay the measured joint states are the operator's, not the result of our commands, so the
# action node's tracking check (measured pose vs recent commands) would stop the run as soon as
# the policy disagrees with the operator. The parameter's maximum (3 rad) effectively disables
# it; the watchdog (stale inputs) stays active.
REPLAY_TRACKING_TOLERANCE_RAD = float(ActionParams.spec("tracking_tolerance_rad").high or 3.0)
# A header stamp further than this from the message's log time is on another clock (a camera's
# hardware clock, a bag recorded without sim time): the log time stands in for it.
STAMP_CLOCK_TOLERANCE_S = 1.0


class BagEvalError(RuntimeError):
    """A bag (or the configuration) cannot be evaluated; the message names the cause."""


@dataclass
class BagEvalConfig:
    bags: List[str]
    out: str
    model: str = "models/default"  # the evaluator's own default: the shipped bundle
    mode: str = "offline"
    rate: Optional[float] = 1.0  # ros mode replay speed; None = as fast as possible
    topic_map: Optional[str] = None
    robot: Optional[str] = None  # None: the model bundle's robot
    command_mode: str = "auto"  # auto: what the bag's operator commands used
    backend: str = "cpu"
    seed: int = 0
    planner_rate_hz: Optional[float] = None  # None: the planner node's default (PlannerParams)
    latency_ms: Optional[float] = None  # offline: fixed model-call delay (None: measured)
    instruction: Optional[str] = None  # overrides the bag's instruction
    domain_id: Optional[int] = None  # ros mode
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
        if self.planner_rate_hz is not None:
            try:
                PlannerParams.spec("planner_rate_hz").check(self.planner_rate_hz)
            except ParamError as e:
                raise BagEvalError("--planner-rate: %s" % e) from None
        if self.latency_ms is not None and not (
            math.isfinite(self.latency_ms) and self.latency_ms >= 0
        ):
            raise BagEvalError("--latency-ms must be >= 0, got %r" % self.latency_ms)


# --- topics and images --------------------------------------------------------------------------
def resolve_topics(profile, topic_map: Optional[str]):
    """Topic names to read: a --topic-map file (clap_ros.data.topic_map, imported only then) or
    the defaults (the recorder's names, driver topics from the robot profile)."""
    if topic_map:
        from clap_ros.data.topic_map import TopicMap

        return TopicMap.load(topic_map).resolve(profile)
    return SimpleNamespace(
        camera=T.CAMERA_IMAGE,
        camera_info=T.CAMERA_INFO,
        joint_states=profile.driver.joint_states_topic,
        instruction=T.INSTRUCTION,
        arm_command="",
        gripper_command=profile.driver.gripper_command_topic,
    )


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


def hdr_ns(msg) -> int:
    return stamp_to_ns(msg.header.stamp)


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
    commands: List[Tuple[int, str, Any]] = field(default_factory=list)  # (t, traj|fwd, msg)
    arm_topic: Optional[str] = None
    arm_kind: Optional[str] = None  # "traj" | "fwd" | None (no commands recorded)
    grip_t: List[int] = field(default_factory=list)
    grip_v: List[float] = field(default_factory=list)
    image_t: List[int] = field(default_factory=list)
    image_encoding: str = ""
    has_camera_info: bool = False
    instructions: List[Tuple[int, str]] = field(default_factory=list)
    instruction_source: str = "topic"  # topic (replayed at its times) | override | outcome
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
            raise BagError(
                "bag %s: missing topic(s) %s (the topic map's arm_command)"
                % (path, topics.arm_command)
            )
        if cands:
            d.arm_topic = cands[0]
            mt = have[d.arm_topic]
            if mt.endswith("JointTrajectory"):
                d.arm_kind = "traj"
            elif mt.endswith("Float64MultiArray"):
                d.arm_kind = "fwd"
            else:
                raise BagEvalError(
                    "bag %s: arm command topic %s has type %s (need "
                    "trajectory_msgs/JointTrajectory or std_msgs/Float64MultiArray)"
                    % (path, d.arm_topic, mt)
                )
        else:
            d.notes.append(
                "no arm command topic (%s) in the bag: the reference is the recorded "
                "joint_states"
                % " or ".join(
                    t for t in (topics.arm_command, drv.trajectory_topic, drv.forward_topic) if t
                )
            )
        d.has_camera_info = bool(
            topics.camera_info in have and r.message_counts.get(topics.camera_info, 0)
        )
        if not d.has_camera_info:
            d.notes.append("no %s in the bag: frames are not undistorted" % topics.camera_info)
        wanted = [
            topics.joint_states,
            topics.instruction,
            topics.gripper_command,
            T.EPISODE_OUTCOME,
            T.SIM_STATUS,
            topics.camera,
        ] + ([d.arm_topic] if d.arm_topic else [])
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
                        raise BagError(
                            "bag %s: first message on %s does not deserialise as %s "
                            "(%s)" % (path, topic, msgtype, e)
                        ) from None
                    d.image_encoding = "%dx%d" % (rgb.shape[1], rgb.shape[0])
                d.image_t.append(ts)
                continue
            try:
                msg = deserialize(data, msgtype)
            except Exception as e:
                raise BagError(
                    "bag %s: message on %s at %d ns does not deserialise as %s (%s)"
                    % (path, topic, ts, msgtype, e)
                ) from None
            if topic == topics.joint_states:
                names = list(msg.name)
                pos = np.asarray(msg.position, dtype=np.float64)
                try:
                    q = profile.reorder(names, pos)
                except ProfileError as e:
                    raise BagEvalError(
                        "bag %s: %s joint names do not match robot profile '%s': %s"
                        % (path, topic, profile.name, e)
                    ) from None
                g = [pos[i] for i, n in enumerate(names) if n in grip_names and i < len(pos)]
                d.js_t.append(ts)
                d.js_q.append(q)
                d.js_grip.append(
                    profile.gripper.command_from_position(float(np.mean(g))) if g else np.nan
                )
            elif topic == d.arm_topic:
                d.commands.append(
                    (
                        ts,
                        d.arm_kind,
                        msg if d.arm_kind == "traj" else np.asarray(msg.data, dtype=np.float64),
                    )
                )
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
        raise BagError(
            "bag %s: missing topic(s) %s"
            % (path, topics.joint_states if not d.js_t else topics.camera)
        )
    if instruction:
        d.instructions = [(d.start_ns, instruction)]
        d.instruction_source = "override"
    elif not any(text for _, text in d.instructions):
        if fallback_instruction:
            d.instructions = [(d.start_ns, str(fallback_instruction))]
            d.instruction_source = "outcome"
            d.notes.append(
                "instruction from the episode outcome/status (no %s)" % topics.instruction
            )
        else:
            raise BagError(
                "bag %s: missing topic(s) %s: no instruction to plan with (pass "
                "--instruction)" % (path, topics.instruction)
            )
    return d


# --- what a run of the stack produced -------------------------------------------------------------
@dataclass
class Replay:
    """Everything the stack did during one bag, on the bag's log clock (ns)."""

    mode: str
    command_mode: str
    arm: List[Tuple[int, str, Any]] = field(default_factory=list)  # (t, traj|fwd, msg|q)
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


def command_mode(cfg: BagEvalConfig, data: BagData) -> str:
    if cfg.command_mode != "auto":
        return cfg.command_mode
    return "forward_position" if data.arm_kind == "fwd" else "joint_trajectory"


def counts_from_diagnostics(d: Dict[str, Any]) -> Dict[str, int]:
    """Counters from the action node's diagnostics (the controller's dict, or the values of its
    /clap/diagnostics status): the same keys in both modes."""

    def num(k):
        try:
            return int(float(d.get(k, 0) or 0))
        except (TypeError, ValueError):
            return 0

    safety = {
        k: num(k)
        for k in d
        if (k.startswith("safety_") or k.startswith("trajectory_"))
        and k not in ("trajectory_time_scale",)
    }
    c = {
        "chunks_accepted": num("chunks_accepted"),
        "chunks_rejected": num("chunks_rejected"),
        "inferences": num("inferences"),
        "inference_errors": num("inference_errors"),
        "tracking_faults": num("tracking_faults"),
        "commands": num("commands"),
        "trajectories": num("trajectories"),
    }
    c["safety_interventions"] = sum(safety.values())
    c.update(safety)
    return c


def stack_params(cfg: BagEvalConfig, data: BagData, profile) -> StackParams:
    """The three nodes' parameters for replaying ``data``: the schemas' defaults, except what a
    replay needs: the evaluator's backend, the bag's command mode, enabled on start (nobody
    calls ~/enable in a replay), the tracking check relaxed (REPLAY_TRACKING_TOLERANCE_RAD),
    trajectories from the last command (interpolate_from_desired_state: the measured arm is the
    operator's),
    frames dropped until a CameraInfo only when the bag has one."""
    runtime = {"backend": cfg.backend, "threads": 1}
    planner = dict(runtime, robot=profile.name)
    if cfg.planner_rate_hz is not None:
        planner["planner_rate_hz"] = cfg.planner_rate_hz
    try:
        return StackParams(
            encoder=EncoderParams.from_mapping(
                dict(runtime, robot=profile.name, require_camera_info=data.has_camera_info)
            ),
            planner=PlannerParams.from_mapping(planner),
            action=ActionParams.from_mapping(
                dict(
                    runtime,
                    robot=profile.name,
                    command_mode=command_mode(cfg, data),
                    enable_on_start=True,
                    tracking_tolerance_rad=REPLAY_TRACKING_TOLERANCE_RAD,
                    # open loop: the measured arm is the operator's, so trajectories start
                    # from the last command, not from it
                    interpolate_from_desired_state=True,
                    seed=cfg.seed,
                )
            ),
        )
    except ParamError as e:
        raise BagEvalError(str(e)) from None


def node_params(sp: StackParams, model_dir) -> Dict[str, Dict[str, Any]]:
    """``stack_params`` as ROS parameters per node (only what differs from the schema defaults,
    plus the model directory and sim time)."""
    common = {"model": str(model_dir), "use_sim_time": True}
    return {
        "encoder_node": dict(sp.encoder.overrides(), **common),
        "planner_node": dict(sp.planner.overrides(), **common),
        "action_node": dict(sp.action.overrides(), **common),
    }
