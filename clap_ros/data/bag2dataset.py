"""Convert recorded episode bags (sim recordings or your own robot's) into a training dataset
(docs/DATASET.md, "Importing your own bags" for user bags).

Every stream is sampled on one fixed grid at --fps by "latest message at or before each grid time"
(bag log time). Joints are indexed by name through the robot profile. The action at grid time t is
what the controller was commanding at t: the latest JointTrajectory received before t evaluated
with the JointTrajectoryController rules (clap_ros.control.trajectory), or the latest forward
position command, plus the latest gripper command; the state is the measured arm joints plus the
measured gripper opening (0 closed .. 1 open). A bag that cannot be converted is skipped with one
clear line; the others are still converted.

User bags: a topic map (--topic-map, clap_ros.data.topic_map) names their topics; cameras may be
sensor_msgs/Image or CompressedImage; MCAP and sqlite3 storage. Camera gaps and clock jumps
(clap_ros.data.timeline) drop the rows they make stale and split the episode there;
--split-on-instruction also splits where the instruction changes. What each bag gave and what was
skipped, and why, is printed and written to DATASET/meta/bag_import.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.data.bags import BagError, BagReader, bag_size_bytes, deserialize, find_bags
from clap_ros.data.dataset import IMAGE_PREFIX, DatasetError, DatasetWriter, EpisodeRecord
from clap_ros.data.jsonable import json_default
from clap_ros.data.timeline import (
    Event,
    apply_events,
    camera_gaps,
    clock_jumps,
    median_period_ns,
    segments,
)
from clap_ros.data.topic_map import TopicMap, TopicMapError
from clap_ros.rostime import NS_PER_S, stamp_to_ns

# dataset camera key -> default topic; the scene camera is required, the wrist camera optional.
DEFAULT_CAMERAS = {"scene": T.CAMERA_IMAGE, "wrist": T.WRIST_IMAGE}
REQUIRED_CAMERAS = ("scene",)


class ConversionError(RuntimeError):
    """One bag cannot be converted; the message says why (the bag path is added by the caller).
    ``report`` holds what was detected in the bag before it failed (or None)."""

    def __init__(self, message: str, report: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.report = report


@dataclass
class ConvertConfig:
    fps: float = 15.0
    robot: Optional[str] = None  # profile name/path; None: from the bag's outcome
    cameras: Dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))
    crf: int = 18
    topic_map: TopicMap = field(default_factory=TopicMap)  # its camera is the scene camera
    split_on_instruction: bool = False  # a new episode whenever the instruction text changes
    max_clock_jump_s: float = 1.0  # larger forward steps of time split the episode
    gap_factor: float = 1.5  # camera gap: step > gap_factor x median period
    min_episode_frames: int = 2  # shorter pieces (after splitting) are skipped

    def camera_topics(self) -> Dict[str, str]:
        cams = dict(self.cameras)
        if self.topic_map.camera != T.CAMERA_IMAGE:
            cams["scene"] = self.topic_map.camera
        return cams


@dataclass
class _Streams:
    """Everything but the images, read in the first pass over a bag."""

    js_t: List[int] = field(default_factory=list)
    js_stamp: List[int] = field(default_factory=list)
    js_q: List[np.ndarray] = field(default_factory=list)
    js_grip: List[float] = field(default_factory=list)
    commands: List[Tuple[int, str, Any]] = field(default_factory=list)  # (t, "traj"|"fwd", msg)
    grip_t: List[int] = field(default_factory=list)
    grip_v: List[float] = field(default_factory=list)
    image_t: Dict[str, List[int]] = field(default_factory=dict)
    image_stamp: Dict[str, List[int]] = field(default_factory=dict)
    image_type: Dict[str, str] = field(default_factory=dict)
    instructions: List[Tuple[int, str]] = field(default_factory=list)
    camera_info: Optional[Dict[str, Any]] = None
    outcome: Optional[Dict[str, Any]] = None
    status: Optional[Dict[str, Any]] = None

    @property
    def instruction(self) -> Optional[str]:
        return self.instructions[-1][1] if self.instructions else None


def latest_index(times: Sequence[int], grid: np.ndarray) -> np.ndarray:
    """For each grid time, the index of the latest sample at or before it (-1 if none)."""
    return np.searchsorted(np.asarray(times, dtype=np.int64), grid, side="right") - 1


def make_grid(start_ns: int, end_ns: int, fps: float) -> np.ndarray:
    """Grid times start + round(k * 1e9 / fps) up to end (inclusive), int64 ns."""
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    n = int(np.floor((end_ns - start_ns) * fps / 1e9 + 1e-9)) + 1
    return start_ns + np.round(np.arange(n) * (1e9 / fps)).astype(np.int64)


def _outcome_robot(bag: Path) -> Optional[str]:
    with BagReader(bag) as r:
        if T.EPISODE_OUTCOME not in r.topics:
            return None
        for _, _, _, msg in r.messages([T.EPISODE_OUTCOME]):
            try:
                return json.loads(msg.data).get("robot")
            except (ValueError, AttributeError):
                return None
    return None


IMAGE_TYPES = (T.TYPES["image"], T.TYPES["compressed_image"])
TRAJ_TYPE, FWD_TYPE = T.TYPES["joint_trajectory"], T.TYPES["float64_array"]


def _cdr_header_stamp_ns(data: Any) -> int:
    """Header stamp of a CDR message whose first field is a std_msgs/Header (Image,
    CompressedImage), read without deserialising the pixels."""
    v = memoryview(data).cast("B")
    if len(v) < 12:
        return 0
    sec, nsec = struct.unpack_from("<iI" if v[1] else ">iI", v, 4)
    return int(sec) * NS_PER_S + int(nsec)


@dataclass
class _Topics:
    """The topics one bag is read from, after checking them against the bag."""

    joint_states: str
    cameras: Dict[str, str]
    arm: List[str]
    gripper: str
    instruction: str
    camera_info: Optional[str]


def _check_topics(
    reader: BagReader, cfg: ConvertConfig, profile, cameras: Dict[str, str]
) -> _Topics:
    """The topics to read, or one ConversionError naming every mapped topic the bag lacks (and the
    topic-map key it came from) or holds with the wrong type."""
    tm = cfg.topic_map
    default = TopicMap()
    types, counts = reader.topics, reader.message_counts
    has = lambda t: bool(t) and counts.get(t, 0) > 0  # noqa: E731
    problems: List[str] = []

    def need(topic: str, key: str, allowed: Sequence[str]) -> None:
        if not has(topic):
            problems.append("missing topic %s (topic map '%s')" % (topic, key))
        elif types[topic] not in allowed:
            problems.append(
                "%s (topic map '%s') is %s, expected %s"
                % (topic, key, types[topic], " or ".join(allowed))
            )

    need(tm.joint_states, "joint_states", [T.TYPES["joint_state"]])
    for key, topic in cameras.items():
        if key in REQUIRED_CAMERAS or has(topic):
            need(topic, "camera" if key == "scene" else "camera:" + key, IMAGE_TYPES)
    arm = [t for t in tm.arm_command_candidates(profile) if has(t)]
    if not arm:
        cands = tm.arm_command_candidates(profile)
        problems.append(
            "no arm command topic (%s) in the bag%s"
            % (" or ".join(cands), "" if tm.arm_command else "; set arm_command in the topic map")
        )
    for t in arm:
        need(t, "arm_command", [TRAJ_TYPE, FWD_TYPE])
    gripper = tm.resolve(profile).gripper_command
    # Keys the user set explicitly must be there; the defaults are optional (sim bags, old bags).
    for key, topic, typ in (
        ("gripper_command", gripper, FWD_TYPE),
        ("instruction", tm.instruction, T.TYPES["string"]),
        ("camera_info", tm.camera_info, T.TYPES["camera_info"]),
    ):
        if getattr(tm, key) != getattr(default, key) or has(topic):
            need(topic, key, [typ])
    if problems:
        raise ConversionError(
            "; ".join(problems)
            + " (bag has: %s)"
            % (
                ", ".join(
                    "%s [%s]" % (t, types[t].rsplit("/", 1)[-1])
                    for t in sorted(types)
                    if counts.get(t)
                )
                or "nothing"
            )
        )
    return _Topics(
        joint_states=tm.joint_states,
        cameras=cameras,
        arm=arm,
        gripper=gripper,
        instruction=tm.instruction,
        camera_info=tm.camera_info if has(tm.camera_info) else None,
    )


def _read_streams(reader: BagReader, profile, tp: _Topics) -> _Streams:
    from clap_ros.robots import ProfileError

    grip_names = set(profile.gripper.joint_names)
    js_topic = tp.joint_states
    image_topics = {topic: key for key, topic in tp.cameras.items()}
    s = _Streams(
        image_t={key: [] for key in tp.cameras},
        image_stamp={key: [] for key in tp.cameras},
        image_type={key: reader.topics[t] for key, t in tp.cameras.items()},
    )
    wanted = [js_topic, tp.gripper, tp.instruction, T.EPISODE_OUTCOME, T.SIM_STATUS] + tp.arm
    if tp.camera_info:
        wanted.append(tp.camera_info)
    # Images: log time and header stamp only (no deserialisation in this pass).
    for topic, msgtype, ts, data in reader.raw_messages(wanted + list(image_topics)):
        if topic in image_topics:
            key = image_topics[topic]
            s.image_t[key].append(ts)
            s.image_stamp[key].append(_cdr_header_stamp_ns(data))
            continue
        if topic == tp.camera_info and s.camera_info is not None:
            continue
        try:
            msg = deserialize(data, msgtype)
        except Exception as e:
            raise ConversionError(
                "message on %s at %d ns does not deserialise as %s (%s)" % (topic, ts, msgtype, e)
            ) from None
        if topic == js_topic:
            names = list(msg.name)
            pos = np.asarray(msg.position, dtype=np.float64)
            try:
                q = profile.reorder(names, pos)
            except ProfileError as e:
                raise ConversionError("%s at %d ns: %s" % (js_topic, ts, e)) from None
            g = [pos[i] for i, n in enumerate(names) if n in grip_names and i < len(pos)]
            s.js_t.append(ts)
            s.js_stamp.append(stamp_to_ns(msg.header.stamp))
            s.js_q.append(q)
            s.js_grip.append(
                profile.gripper.command_from_position(float(np.mean(g))) if g else np.nan
            )
        elif topic in tp.arm:
            if msgtype == TRAJ_TYPE:
                s.commands.append((ts, "traj", msg))
            else:
                s.commands.append((ts, "fwd", np.asarray(msg.data, dtype=np.float64)))
        elif topic == tp.gripper:
            if len(msg.data):
                s.grip_t.append(ts)
                s.grip_v.append(float(np.clip(msg.data[0], 0.0, 1.0)))
        elif topic == tp.instruction:
            text = str(msg.data)
            # Re-publishing the same text (latched topics on reconnect) is not a new instruction.
            if not s.instructions or s.instructions[-1][1] != text:
                s.instructions.append((ts, text))
        elif topic == tp.camera_info:
            s.camera_info = {
                "width": int(msg.width),
                "height": int(msg.height),
                "distortion_model": str(msg.distortion_model),
                "k": [float(x) for x in msg.k],
                "d": [float(x) for x in msg.d],
                "frame_id": str(msg.header.frame_id),
                "topic": topic,
            }
        elif topic == T.EPISODE_OUTCOME:
            try:
                s.outcome = json.loads(msg.data)
            except ValueError as e:
                raise ConversionError("%s is not JSON (%s)" % (T.EPISODE_OUTCOME, e)) from None
        elif topic == T.SIM_STATUS:
            try:
                s.status = json.loads(msg.data)
            except ValueError:
                pass  # status is informative only; the outcome carries the episode facts
    return s


def commanded_arm(
    profile, s: _Streams, grid: np.ndarray, t0: int, initial_q: np.ndarray
) -> Tuple[np.ndarray, int]:
    """Commanded arm positions [len(grid), dof] at the grid times, replaying the recorded commands
    through the controller's own rules. Returns (positions, number of commands it rejected)."""
    from clap_ros.control.trajectory import TrajectoryFollower, TrajectoryRejected, points_from_msg

    follower = TrajectoryFollower(profile, initial_q)
    out = np.zeros((len(grid), profile.dof))
    rejected = 0
    cmds = sorted(s.commands, key=lambda c: c[0])
    k = 0
    sec = lambda ns: (ns - t0) * 1e-9  # noqa: E731  relative seconds keep float precision
    for i, g in enumerate(grid):
        while k < len(cmds) and cmds[k][0] <= g:
            ts, kind, payload = cmds[k]
            k += 1
            try:
                if kind == "traj":
                    names, points, _ = points_from_msg(payload)
                    st = stamp_to_ns(payload.header.stamp)
                    follower.set_trajectory(
                        names, points, now_s=sec(ts), stamp_s=sec(st) if st else 0.0
                    )
                else:
                    follower.set_forward(payload, now_s=sec(ts))
            except TrajectoryRejected:
                rejected += 1  # the driver refused it too, so the arm kept its previous command
        out[i] = follower.sample(sec(g))[0]
    return out, rejected


def _first_frames(reader: BagReader, cameras: Dict[str, str]) -> Dict[str, Tuple[int, int]]:
    """Decode each camera's first frame, so an unsupported encoding fails the bag before anything
    is written; returns key -> (height, width)."""
    from clap_ros.data.images import ImageEncodingError, decode_image_msg

    sizes = {}
    for key, topic in cameras.items():
        for _, msgtype, _, msg in reader.messages([topic]):
            try:
                img = decode_image_msg(msg, msgtype)
            except ImageEncodingError as e:
                raise ConversionError("%s: %s" % (topic, e)) from None
            sizes[key] = img.shape[:2]
            break
    return sizes


def _detect_events(
    s: _Streams, tp: _Topics, grid: np.ndarray, cfg: ConvertConfig
) -> Tuple[List[Event], np.ndarray, np.ndarray]:
    grid_period = 1e9 / cfg.fps
    events = clock_jumps(tp.joint_states, s.js_t, s.js_stamp, cfg.max_clock_jump_s)
    stale = {tp.joint_states: cfg.gap_factor * max(median_period_ns(s.js_t), grid_period)}
    for key, topic in tp.cameras.items():
        gaps, med = camera_gaps(topic, s.image_t[key], cfg.gap_factor, cfg.max_clock_jump_s)
        events += gaps + clock_jumps(
            topic, s.image_t[key], s.image_stamp[key], cfg.max_clock_jump_s
        )
        stale[topic] = cfg.gap_factor * max(med, grid_period)
    events.sort(key=lambda e: (e.after_ns, e.topic))
    keep, cut = apply_events(grid, events, stale)
    return events, keep, cut


def _write_frames(
    reader: BagReader, vw, topic: str, times: List[int], rows: np.ndarray, bar=None
) -> None:
    """Stream the frames that grid ``rows`` sample (latest at or before) into ``vw``."""
    from clap_ros.data.images import ImageEncodingError, decode_image_msg

    fi = latest_index(times, rows)
    start, stop = int(times[fi[0]]), int(times[fi[-1]]) + 1
    j = int(np.searchsorted(np.asarray(times, dtype=np.int64), start, side="left"))
    g = 0
    for _, msgtype, ts, msg in reader.messages([topic], start_ns=start, stop_ns=stop):
        while g < len(rows) and fi[g] == j:
            try:
                vw.write(decode_image_msg(msg, msgtype))
            except ImageEncodingError as e:
                raise ConversionError(
                    "%s frame %d (%.3f s): %s" % (topic, j, ts * 1e-9, e)
                ) from None
            g += 1
            if bar is not None:
                bar.update(1)
        j += 1
        if g == len(rows):
            break


def convert_bag(
    bag: Path, writer: DatasetWriter, profile, cfg: ConvertConfig, progress: bool = False
) -> Dict[str, Any]:
    """Convert one bag into the next episode(s) of ``writer``; raises ConversionError/BagError
    when nothing of it can be used. The result's ``report`` says what was detected and skipped."""
    from tqdm import tqdm

    report: Dict[str, Any] = {
        "bag": str(bag),
        "storage": None,
        "episodes": [],
        "frames": 0,
        "events": [],
        "skipped": [],
        "warnings": [],
    }
    with BagReader(bag) as reader:
        report["storage"] = reader.storage
        report["warnings"].extend(reader.warnings)
        topics = reader.topics
        cams = cfg.camera_topics()
        cameras = {k: t for k, t in cams.items() if k in REQUIRED_CAMERAS or t in topics}
        if writer.image_keys is not None:
            have = sorted(IMAGE_PREFIX + k for k in cameras)
            if have != writer.image_keys:
                raise ConversionError(
                    "cameras %s differ from the dataset's %s (from its first "
                    "episode)" % (have, writer.image_keys)
                )
        tp = _check_topics(reader, cfg, profile, cameras)
        sizes = _first_frames(reader, cameras)
        s = _read_streams(reader, profile, tp)
        t_bag = reader.start_time_ns
        firsts = [s.js_t[0]] + [s.image_t[k][0] for k in cameras]
        lasts = [s.js_t[-1]] + [s.image_t[k][-1] for k in cameras]
        grid = make_grid(max(firsts), min(lasts), cfg.fps)
        if len(grid) < 2:
            raise ConversionError("streams overlap for less than two frames at %g fps" % cfg.fps)
        t0 = int(grid[0]) - 1_000_000_000
        rel = lambda ns: round((int(ns) - t_bag) * 1e-9, 3)  # noqa: E731  s since bag start

        if s.camera_info and tuple(sizes.get("scene", ())) != (
            s.camera_info["height"],
            s.camera_info["width"],
        ):
            report["warnings"].append(
                "%s is %dx%d but %s frames are %dx%d"
                % (
                    tp.camera_info,
                    s.camera_info["width"],
                    s.camera_info["height"],
                    cameras["scene"],
                    sizes["scene"][1],
                    sizes["scene"][0],
                )
            )
        ji = latest_index(s.js_t, grid)
        state_q = np.stack(s.js_q)[ji]
        meas_grip = np.asarray(s.js_grip)[ji]
        gi = latest_index(s.grip_t, grid)
        cmd_grip = np.where(gi >= 0, np.asarray(s.grip_v + [np.nan])[gi], np.nan)
        # No gripper joints in joint_states: the commanded opening is the best estimate we have.
        state_grip = np.where(np.isnan(meas_grip), cmd_grip, meas_grip)
        # Before the first gripper command the gripper holds where it is.
        cmd_grip = np.where(np.isnan(cmd_grip), state_grip, cmd_grip)
        if np.any(np.isnan(state_grip)):
            raise ConversionError(
                "no gripper position: %s has no %s joints and there is no "
                "gripper command on %s"
                % (tp.joint_states, "/".join(profile.gripper.joint_names), tp.gripper)
            )
        first_js = (
            int(np.searchsorted(s.js_t, s.commands[0][0], side="right")) - 1 if s.commands else 0
        )
        initial_q = s.js_q[max(first_js, 0)]
        arm_cmd, rejected = commanded_arm(profile, s, grid, t0, initial_q)

        events, keep, cut = _detect_events(s, tp, grid, cfg)
        report["events"] = [e.to_dict(t_bag) for e in events]
        reported = keep.copy()  # each dropped row is listed once, under the first event covering it
        for e in events:
            mask = (grid > e.before_ns) & (grid < e.after_ns) & ~reported
            if mask.any():
                rows = grid[mask]
                reported |= mask
                report["skipped"].append(
                    {
                        "from_s": rel(rows[0]),
                        "to_s": rel(rows[-1]),
                        "frames": int(mask.sum()),
                        "reason": e.detail,
                    }
                )
        labels = None
        outcome = s.outcome or {}
        status = s.status or {}
        instruction = s.instruction or outcome.get("instruction") or status.get("instruction") or ""
        if cfg.split_on_instruction and s.instructions:
            ii = np.maximum(latest_index([t for t, _ in s.instructions], grid), 0)
            labels = [s.instructions[i][1] for i in ii]
        elif len(s.instructions) > 1:
            report["warnings"].append(
                "the instruction changed %d times on %s; the episode takes "
                "the last one (--split-on-instruction makes one episode per "
                "instruction)" % (len(s.instructions) - 1, tp.instruction)
            )
        pieces = segments(keep, cut, labels)

        base_meta = {
            "task_name": outcome.get("task", status.get("task")),
            "success": outcome.get("success", status.get("success")),
            "seed": outcome.get("seed", status.get("seed")),
            "appearance": outcome.get("appearance", status.get("appearance")),
            "source": str(bag),
            "rejected_commands": rejected,
            "has_outcome": s.outcome is not None,
            "outcome": outcome,
        }
        if s.camera_info:
            base_meta["camera_info"] = s.camera_info
        n_use = sum(b - a for a, b in pieces if b - a >= cfg.min_episode_frames)
        bar = tqdm(
            total=n_use * len(cameras),
            desc=bag.name[-30:],
            unit="frame",
            leave=False,
            disable=not progress,
        )
        try:
            for k, (a, b) in enumerate(pieces):
                rows = grid[a:b]
                if b - a < cfg.min_episode_frames:
                    report["skipped"].append(
                        {
                            "from_s": rel(rows[0]),
                            "to_s": rel(rows[-1]),
                            "frames": b - a,
                            "reason": "piece of %d frame(s) between splits is shorter than "
                            "--min-episode-frames %d" % (b - a, cfg.min_episode_frames),
                        }
                    )
                    continue
                try:
                    for key, topic in cameras.items():
                        _write_frames(
                            reader,
                            writer.video_writer(IMAGE_PREFIX + key),
                            topic,
                            s.image_t[key],
                            rows,
                            bar,
                        )
                    meta = dict(
                        base_meta,
                        segment=k,
                        storage=report["storage"],
                        source_span_s=[rel(rows[0]), rel(rows[-1])],
                    )
                    rec = EpisodeRecord(
                        state=np.column_stack([state_q[a:b], state_grip[a:b]]),
                        action=np.column_stack([arm_cmd[a:b], cmd_grip[a:b]]),
                        timestamp=(rows - rows[0]) * 1e-9,
                        instruction=labels[a] if labels is not None else instruction,
                        meta=meta,
                    )
                    idx = writer.add_episode(rec)
                except (ConversionError, BagError, DatasetError) as e:
                    # This piece is lost; the pieces before it are written and the ones after it
                    # may still be readable (a damaged chunk does not spoil the whole file).
                    writer.discard_episode()
                    report["skipped"].append(
                        {
                            "from_s": rel(rows[0]),
                            "to_s": rel(rows[-1]),
                            "frames": b - a,
                            "reason": str(e),
                        }
                    )
                    continue
                report["episodes"].append(idx)
                report["frames"] += b - a
        finally:
            bar.close()
    if not report["episodes"]:
        reasons = "; ".join(
            "%s (%d frames)" % (x["reason"], x["frames"]) for x in report["skipped"]
        )
        raise ConversionError("no episode left: %s" % (reasons or "nothing to convert"), report)
    return {
        "episode_index": report["episodes"][0],
        "episodes": report["episodes"],
        "frames": report["frames"],
        "success": base_meta["success"],
        "report": report,
    }


def convert(
    bags_root: Path,
    out: Path,
    cfg: ConvertConfig,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> Dict[str, Any]:
    """Convert every bag under ``bags_root``; returns a summary dict (converted, skipped, ...)."""
    from tqdm import tqdm

    from clap_ros.robots import ProfileError, load_profile

    paths = find_bags(bags_root)
    if not paths:
        raise BagError(
            "%s: no bags found (rosbag2 directories with metadata.yaml, or .mcap / "
            ".db3 files)" % bags_root
        )
    robot = cfg.robot
    if robot is None:
        for p in paths:
            try:
                robot = _outcome_robot(p)
            except BagError:
                continue
            if robot:
                break
    if not robot:
        raise ConversionError(
            "cannot tell the robot from the bags' %s; pass --robot" % T.EPISODE_OUTCOME
        )
    try:
        profile = load_profile(robot)
    except ProfileError as e:
        raise ConversionError(str(e)) from None
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DatasetError("%s exists and is not empty (use --overwrite to replace it)" % out)
    # Written next to --out and moved into place at the end, so a failed or interrupted run never
    # leaves half a dataset, and --overwrite replaces the old one only once the new one exists.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s.partial-" % out.name, dir=out.parent))
    t_start = time.perf_counter()
    converted, skipped, reports = [], [], []
    frames = 0
    bag_bytes = 0
    try:
        writer = DatasetWriter(tmp, profile.name, profile.joint_names, cfg.fps, crf=cfg.crf)
        for p in tqdm(paths, desc="bag2dataset", unit="bag", disable=not progress):
            try:
                r = convert_bag(p, writer, profile, cfg, progress=progress)
            except (BagError, ConversionError, DatasetError) as e:
                reason = str(e)
                if str(p) not in reason:
                    reason = "bag %s: %s" % (p, reason)
                log("skipped: %s" % reason, file=sys.stderr)
                skipped.append({"bag": str(p), "reason": reason})
                rep = dict(getattr(e, "report", None) or {"bag": str(p)})
                rep.update(status="skipped", reason=reason)
                reports.append(rep)
                continue
            converted.append({"bag": str(p), **{k: v for k, v in r.items() if k != "report"}})
            reports.append(dict(r["report"], status="converted"))
            frames += r["frames"]
            bag_bytes += bag_size_bytes(p)
        info = writer.finalize() if converted else None
        if converted:
            # What each bag gave, and what was left out and why, next to the dataset's own meta.
            (tmp / "meta" / "bag_import.json").write_text(
                json.dumps(
                    {
                        "format": "clap_ros_bag_import",
                        "version": 1,
                        "topic_map": cfg.topic_map.to_dict(),
                        "cameras": cfg.camera_topics(),
                        "split_on_instruction": cfg.split_on_instruction,
                        "max_clock_jump_s": cfg.max_clock_jump_s,
                        "gap_factor": cfg.gap_factor,
                        "min_episode_frames": cfg.min_episode_frames,
                        "bags": reports,
                    },
                    indent=1,
                    default=json_default,
                )
                + "\n"
            )
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        if converted:
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    wall = time.perf_counter() - t_start
    return {
        "converted": converted,
        "skipped": skipped,
        "frames": frames,
        "wall_s": wall,
        "bag_bytes": bag_bytes,
        "dataset_bytes": size if converted else 0,
        "info": info,
        "robot": profile.name,
        "bags": reports,
        "episodes": sum(len(c["episodes"]) for c in converted),
    }


def bag_report_lines(rep: Dict[str, Any]) -> List[str]:
    """Human-readable lines for one bag's import report (events, other skipped pieces, warnings)."""
    lines = []
    details = set()
    for e in rep.get("events", []):
        details.add(e["detail"])
        if e["action"] == "outside the grid":
            continue
        what = {"held": "frame held", "split": "episode split"}.get(
            e["action"], "%d frames dropped, episode split" % e["rows_dropped"]
        )
        lines.append("%.3f s: %s -> %s" % (e["at_s"], e["detail"], what))
    for sk in rep.get("skipped", []):
        if sk["reason"] not in details:
            lines.append(
                "skipped %d frame(s) at %.3f-%.3f s: %s"
                % (sk["frames"], sk["from_s"], sk["to_s"], sk["reason"])
            )
    for w in rep.get("warnings", []):
        lines.append("warning: %s" % w)
    return lines


def _cli(args: argparse.Namespace) -> int:
    try:
        tm = TopicMap.load(args.topic_map)
    except TopicMapError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if args.camera_topic:
        tm = replace(tm, camera=args.camera_topic)
    cfg = ConvertConfig(
        fps=args.fps,
        robot=args.robot,
        crf=args.crf,
        topic_map=tm,
        split_on_instruction=args.split_on_instruction,
        max_clock_jump_s=args.max_clock_jump,
        gap_factor=args.gap_factor,
        min_episode_frames=args.min_episode_frames,
    )
    try:
        summary = convert(
            Path(args.bags), Path(args.out), cfg, overwrite=args.overwrite, progress=not args.quiet
        )
    except (BagError, ConversionError, DatasetError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    n_ok, n_skip = len(summary["converted"]), len(summary["skipped"])
    succ = [c["success"] for c in summary["converted"] if c["success"] is not None]
    wall = max(summary["wall_s"], 1e-9)
    print(
        "bag2dataset: %d converted, %d skipped (robot %s, %g fps) -> %d episodes"
        % (n_ok, n_skip, summary["robot"], args.fps, summary["episodes"])
    )
    for rep in summary["bags"]:
        if rep.get("status") != "converted":
            continue
        lines = bag_report_lines(rep)
        if lines or len(rep["episodes"]) > 1:
            print(
                "  %s (%s): %d episode(s), %d frames"
                % (rep["bag"], rep["storage"], len(rep["episodes"]), rep["frames"])
            )
            for line in lines:
                print("    " + line)
    for s in summary["skipped"]:
        print("  skipped %s" % s["reason"])
    if n_ok:
        if succ:
            print("  successful episodes: %d/%d" % (sum(bool(x) for x in succ), len(succ)))
        print(
            "  dataset %.1f MB at %s; per-bag import report: %s"
            % (
                summary["dataset_bytes"] / 1e6,
                args.out,
                Path(args.out) / "meta" / "bag_import.json",
            )
        )
        # Throughput last, so scripts and benchmarks can take the final line.
        print(
            "import throughput: %d frames in %.2f s = %.1f frames/s (%.1f MB/s of bags)"
            % (summary["frames"], wall, summary["frames"] / wall, summary["bag_bytes"] / 1e6 / wall)
        )
    if n_ok == 0:
        return 1
    if args.strict and n_skip:
        return 1
    return 0


EXAMPLES = """\
examples:
  clap-ros bag2dataset --bags bags/ --out datasets/fr3_pick_place --fps 15
  clap-ros bag2dataset --bags ~/robot_bags --out datasets/mine --robot fr3 \\
      --topic-map my_topics.yaml --split-on-instruction
  clap-ros bag2dataset --bags old_recording.db3 --out datasets/old --robot ur5e

topic map (YAML, any subset of these keys; empty command topics = the robot profile's):
  camera: /camera/color/image_raw/compressed   # sensor_msgs/Image or CompressedImage
  camera_info: /camera/color/camera_info
  joint_states: /joint_states
  instruction: /clap/instruction
  arm_command: /fr3_arm_controller/joint_trajectory
  gripper_command: /gripper_controller/commands

The dataset format is specified in docs/DATASET.md (LeRobot-style parquet + mp4); importing your
own bags is described there under "Importing your own bags".
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag2dataset",
        help="convert recorded episode bags (sim or your own) into a training dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    p.add_argument(
        "--bags",
        required=True,
        help="a bag, or a directory searched recursively for bags (rosbag2 directories "
        "with metadata.yaml in MCAP or sqlite3 storage, or .mcap / .db3 files)",
    )
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument(
        "--fps", type=float, default=15.0, help="frame rate of the dataset grid (default: 15)"
    )
    p.add_argument(
        "--robot",
        default=None,
        help="robot profile (fr3, panda, ur5e or a YAML path); default: the 'robot' "
        "field of the bags' /clap/episode_outcome (user bags need --robot)",
    )
    p.add_argument(
        "--topic-map",
        default=None,
        metavar="YAML",
        help="YAML file mapping camera, camera_info, joint_states, instruction, "
        "arm_command, gripper_command to your bag's topics (any subset; see below)",
    )
    p.add_argument(
        "--camera-topic",
        default=None,
        help="scene camera topic; overrides the topic map's camera (default: %s)" % T.CAMERA_IMAGE,
    )
    p.add_argument(
        "--split-on-instruction",
        action="store_true",
        help="start a new episode whenever the instruction text changes (default: one "
        "episode per bag, taking the last instruction)",
    )
    p.add_argument(
        "--max-clock-jump",
        type=float,
        default=1.0,
        metavar="S",
        help="a forward step of log time or header stamps larger than this on "
        "joint_states or a camera is a clock jump: the episode is split there "
        "(time going backwards always is); default: 1.0 s",
    )
    p.add_argument(
        "--gap-factor",
        type=float,
        default=1.5,
        help="a camera gap is a step longer than this times the median frame period; "
        "rows whose frame is older than that are dropped and the episode split "
        "(default: 1.5)",
    )
    p.add_argument(
        "--min-episode-frames",
        type=int,
        default=2,
        help="pieces shorter than this after splitting are skipped (default: 2)",
    )
    p.add_argument(
        "--crf",
        type=int,
        default=18,
        help="x264 quality of the videos, 0 lossless .. 51 worst (default: 18)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero if any bag was skipped (the others are still converted)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)
