"""Convert recorded episode bags into a training dataset (docs/DATASET.md).

Every stream is sampled on one fixed grid at --fps by "latest message at or before each grid time"
(bag log time). Joints are indexed by name through the robot profile. The action at grid time t is
what the controller was commanding at t: the latest JointTrajectory received before t evaluated
with the JointTrajectoryController rules (clap_ros.control.trajectory), or the latest forward
position command, plus the latest gripper command; the state is the measured arm joints plus the
measured gripper opening (0 closed .. 1 open). A bag that cannot be converted is skipped with one
clear line; the others are still converted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.data.bags import (BagError, BagReader, bag_size_bytes, deserialize, find_bags,
                                stamp_to_ns)
from clap_ros.data.dataset import (IMAGE_PREFIX, DatasetError, DatasetWriter, EpisodeRecord)

# dataset camera key -> default topic; the scene camera is required, the wrist camera optional.
DEFAULT_CAMERAS = {"scene": T.CAMERA_IMAGE, "wrist": T.WRIST_IMAGE}
REQUIRED_CAMERAS = ("scene",)


class ConversionError(RuntimeError):
    """One bag cannot be converted; the message says why (the bag path is added by the caller)."""


@dataclass
class ConvertConfig:
    fps: float = 15.0
    robot: Optional[str] = None             # profile name/path; None: from the bag's outcome
    cameras: Dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMERAS))
    crf: int = 18


@dataclass
class _Streams:
    """Everything but the images, read in the first pass over a bag."""

    js_t: List[int] = field(default_factory=list)
    js_q: List[np.ndarray] = field(default_factory=list)
    js_grip: List[float] = field(default_factory=list)
    commands: List[Tuple[int, str, Any]] = field(default_factory=list)  # (t, "traj"|"fwd", msg)
    grip_t: List[int] = field(default_factory=list)
    grip_v: List[float] = field(default_factory=list)
    image_t: Dict[str, List[int]] = field(default_factory=dict)
    instruction: Optional[str] = None
    outcome: Optional[Dict[str, Any]] = None
    status: Optional[Dict[str, Any]] = None


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


def _read_streams(reader: BagReader, profile, cameras: Dict[str, str]) -> _Streams:
    from clap_ros.robots import ProfileError
    drv = profile.driver
    grip_names = set(profile.gripper.joint_names)
    js_topic = drv.joint_states_topic
    traj_topic, fwd_topic, grip_topic = drv.trajectory_topic, drv.forward_topic, drv.gripper_command_topic
    image_topics = {topic: key for key, topic in cameras.items()}
    s = _Streams(image_t={key: [] for key in cameras})
    wanted = [js_topic, traj_topic, fwd_topic, grip_topic, T.INSTRUCTION, T.EPISODE_OUTCOME,
              T.SIM_STATUS]
    # Image timestamps come from the raw stream (no deserialisation in this pass).
    for topic, msgtype, ts, data in reader.raw_messages(wanted + list(image_topics)):
        if topic in image_topics:
            s.image_t[image_topics[topic]].append(ts)
            continue
        try:
            msg = deserialize(data, msgtype)
        except Exception as e:
            raise ConversionError("message on %s at %d ns does not deserialise as %s (%s)"
                                  % (topic, ts, msgtype, e)) from None
        if topic == js_topic:
            names = list(msg.name)
            pos = np.asarray(msg.position, dtype=np.float64)
            try:
                q = profile.reorder(names, pos)
            except ProfileError as e:
                raise ConversionError("%s at %d ns: %s" % (js_topic, ts, e)) from None
            g = [pos[i] for i, n in enumerate(names) if n in grip_names and i < len(pos)]
            s.js_t.append(ts)
            s.js_q.append(q)
            s.js_grip.append(profile.gripper.command_from_position(float(np.mean(g))) if g else np.nan)
        elif topic == traj_topic:
            s.commands.append((ts, "traj", msg))
        elif topic == fwd_topic:
            s.commands.append((ts, "fwd", np.asarray(msg.data, dtype=np.float64)))
        elif topic == grip_topic:
            if len(msg.data):
                s.grip_t.append(ts)
                s.grip_v.append(float(np.clip(msg.data[0], 0.0, 1.0)))
        elif topic == T.INSTRUCTION:
            s.instruction = str(msg.data)
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


def commanded_arm(profile, s: _Streams, grid: np.ndarray, t0: int,
                  initial_q: np.ndarray) -> Tuple[np.ndarray, int]:
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
                    follower.set_trajectory(names, points, now_s=sec(ts),
                                            stamp_s=sec(st) if st else 0.0)
                else:
                    follower.set_forward(payload, now_s=sec(ts))
            except TrajectoryRejected:
                rejected += 1  # the driver refused it too, so the arm kept its previous command
        out[i] = follower.sample(sec(g))[0]
    return out, rejected


def convert_bag(bag: Path, writer: DatasetWriter, profile, cfg: ConvertConfig) -> Dict[str, Any]:
    """Convert one bag into the next episode of ``writer``; raises ConversionError/BagError."""
    from clap_ros.data.images import ImageEncodingError, message_to_rgb
    with BagReader(bag) as reader:
        topics = reader.topics
        cameras = {k: t for k, t in cfg.cameras.items() if k in REQUIRED_CAMERAS or t in topics}
        if writer.image_keys is not None:
            have = sorted(IMAGE_PREFIX + k for k in cameras)
            if have != writer.image_keys:
                raise ConversionError("cameras %s differ from the dataset's %s (from its first "
                                      "episode)" % (have, writer.image_keys))
        reader.require([profile.driver.joint_states_topic] + [cameras[k] for k in REQUIRED_CAMERAS])
        if not any(t in topics for t in (profile.driver.trajectory_topic, profile.driver.forward_topic)):
            raise ConversionError("no arm command topic (%s or %s) in the bag"
                                  % (profile.driver.trajectory_topic, profile.driver.forward_topic))
        s = _read_streams(reader, profile, cameras)
        firsts = [s.js_t[0]] + [s.image_t[k][0] for k in cameras]
        lasts = [s.js_t[-1]] + [s.image_t[k][-1] for k in cameras]
        grid = make_grid(max(firsts), min(lasts), cfg.fps)
        if len(grid) < 2:
            raise ConversionError("streams overlap for less than two frames at %g fps" % cfg.fps)
        t0 = int(grid[0]) - 1_000_000_000

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
            raise ConversionError("no gripper position: %s has no %s joints and there is no "
                                  "gripper command on %s"
                                  % (profile.driver.joint_states_topic,
                                     "/".join(profile.gripper.joint_names),
                                     profile.driver.gripper_command_topic))
        first_js = int(np.searchsorted(s.js_t, s.commands[0][0], side="right")) - 1 if s.commands else 0
        initial_q = s.js_q[max(first_js, 0)]
        arm_cmd, rejected = commanded_arm(profile, s, grid, t0, initial_q)

        # Second pass: stream the chosen frames of each camera into its video.
        for key, topic in cameras.items():
            fi = latest_index(s.image_t[key], grid)
            vw = writer.video_writer(IMAGE_PREFIX + key)
            try:
                j = 0  # index of the current message on this topic
                g = 0  # next grid row to fill
                for _, _, _, msg in reader.messages([topic]):
                    while g < len(grid) and fi[g] == j:
                        try:
                            vw.write(message_to_rgb(msg))
                        except ImageEncodingError as e:
                            raise ConversionError("%s frame %d: %s" % (topic, j, e)) from None
                        g += 1
                    j += 1
                    if g == len(grid):
                        break
            except BaseException:
                writer.discard_episode()
                raise

    outcome = s.outcome or {}
    status = s.status or {}
    instruction = s.instruction or outcome.get("instruction") or status.get("instruction") or ""
    meta = {
        "task_name": outcome.get("task", status.get("task")),
        "success": outcome.get("success", status.get("success")),
        "seed": outcome.get("seed", status.get("seed")),
        "appearance": outcome.get("appearance", status.get("appearance")),
        "source": str(bag),
        "rejected_commands": rejected,
        "has_outcome": s.outcome is not None,
    }
    meta["outcome"] = outcome
    rec = EpisodeRecord(
        state=np.column_stack([state_q, state_grip]),
        action=np.column_stack([arm_cmd, cmd_grip]),
        timestamp=(grid - grid[0]) * 1e-9, instruction=instruction, meta=meta)
    idx = writer.add_episode(rec)
    return {"episode_index": idx, "frames": len(grid), "success": meta["success"]}


def convert(bags_root: Path, out: Path, cfg: ConvertConfig, overwrite: bool = False,
            progress: bool = True, log=print) -> Dict[str, Any]:
    """Convert every bag under ``bags_root``; returns a summary dict (converted, skipped, ...)."""
    from tqdm import tqdm
    from clap_ros.robots import ProfileError, load_profile
    paths = find_bags(bags_root)
    if not paths:
        raise BagError("%s: no bags found (rosbag2 directories with metadata.yaml or .mcap files)"
                       % bags_root)
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
        raise ConversionError("cannot tell the robot from the bags' %s; pass --robot"
                              % T.EPISODE_OUTCOME)
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
    converted, skipped = [], []
    frames = 0
    bag_bytes = 0
    try:
        writer = DatasetWriter(tmp, profile.name, profile.joint_names, cfg.fps, crf=cfg.crf)
        for p in tqdm(paths, desc="bag2dataset", unit="bag", disable=not progress):
            try:
                r = convert_bag(p, writer, profile, cfg)
            except (BagError, ConversionError, DatasetError) as e:
                reason = str(e)
                if str(p) not in reason:
                    reason = "bag %s: %s" % (p, reason)
                log("skipped: %s" % reason, file=sys.stderr)
                skipped.append({"bag": str(p), "reason": reason})
                continue
            converted.append({"bag": str(p), **r})
            frames += r["frames"]
            bag_bytes += bag_size_bytes(p)
        info = writer.finalize() if converted else None
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        if converted:
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    wall = time.perf_counter() - t_start
    return {"converted": converted, "skipped": skipped, "frames": frames, "wall_s": wall,
            "bag_bytes": bag_bytes, "dataset_bytes": size if converted else 0, "info": info,
            "robot": profile.name}


def _cli(args: argparse.Namespace) -> int:
    cfg = ConvertConfig(fps=args.fps, robot=args.robot, crf=args.crf)
    if args.camera_topic:
        cfg.cameras["scene"] = args.camera_topic
    try:
        summary = convert(Path(args.bags), Path(args.out), cfg, overwrite=args.overwrite,
                          progress=not args.quiet)
    except (BagError, ConversionError, DatasetError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    n_ok, n_skip = len(summary["converted"]), len(summary["skipped"])
    succ = [c["success"] for c in summary["converted"] if c["success"] is not None]
    wall = max(summary["wall_s"], 1e-9)
    print("bag2dataset: %d converted, %d skipped (robot %s, %g fps)"
          % (n_ok, n_skip, summary["robot"], args.fps))
    if n_ok:
        print("  %d frames in %.1f s (%.0f frames/s, %.1f MB/s of bags); dataset %.1f MB at %s"
              % (summary["frames"], wall, summary["frames"] / wall,
                 summary["bag_bytes"] / 1e6 / wall, summary["dataset_bytes"] / 1e6, args.out))
        if succ:
            print("  successful episodes: %d/%d" % (sum(bool(x) for x in succ), len(succ)))
    for s in summary["skipped"]:
        print("  skipped %s" % s["reason"])
    if n_ok == 0:
        return 1
    if args.strict and n_skip:
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag2dataset", help="convert recorded episode bags into a training dataset",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The dataset format is specified in docs/DATASET.md (LeRobot-style parquet + mp4).")
    p.add_argument("--bags", required=True,
                   help="a bag, or a directory searched recursively for bags (rosbag2 directories "
                        "with metadata.yaml, or .mcap files)")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--fps", type=float, default=15.0,
                   help="frame rate of the dataset grid (default: 15)")
    p.add_argument("--robot", default=None,
                   help="robot profile (fr3, panda, ur5e or a YAML path); default: the 'robot' "
                        "field of the bags' /clap/episode_outcome")
    p.add_argument("--camera-topic", default=None,
                   help="scene camera topic (default: %s)" % T.CAMERA_IMAGE)
    p.add_argument("--crf", type=int, default=18,
                   help="x264 quality of the videos, 0 lossless .. 51 worst (default: 18)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--strict", action="store_true",
                   help="exit non-zero if any bag was skipped (the others are still converted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)
