"""Record scripted-expert demonstrations as MCAP rosbags, one bag per episode.

By default the expert runs against the sim driver over ROS 2 (separate processes, real DDS on
loopback) and the recorder writes the CDR bytes that cross the wire. With --direct the same world
and expert run in this process without ROS: the driver's control loop (JointTrajectoryController
rules from clap_ros.control.trajectory) and the expert node's chunking are executed inline and the
same topics and message types are written, serialised with rosbags, on the sim clock.

Bags go to OUT/<robot>_<task>_seed<NNNNNN>/ (rosbag2 directories with metadata.yaml, MCAP storage,
readable by `ros2 bag info`); existing bags are never overwritten. Convert them with
`clap-ros bag2dataset --bags OUT --out DATASET`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from clap_ros import topics as T
from clap_ros.rostime import s_to_ns

COMMAND_MODES = ("joint_trajectory", "forward_position")


class RecordError(RuntimeError):
    """Recording cannot start (bad arguments, bags already there, the sim fails to come up)."""


@dataclass(frozen=True)
class DirectConfig:
    """The knobs of the in-process recorder; defaults match sim_driver and expert_node."""

    command_mode: str = "joint_trajectory"
    camera_size: Tuple[int, int] = (128, 128)  # (width, height)
    camera_rate_hz: float = 15.0
    wrist_camera: bool = False
    randomize: bool = True
    control_rate_hz: float = 0.0  # 0: the profile's driver rate
    joint_states_rate_hz: float = 0.0  # 0: the profile's joint_states rate
    status_rate_hz: float = 2.0
    chunk_period_s: float = 0.1
    chunk_horizon_s: float = 1.0
    point_period_s: float = 0.1
    command_rate_hz: float = 100.0
    settle_s: float = 0.5
    compress: bool = True


def parse_size(text: str) -> Tuple[int, int]:
    """'128x96' -> (128, 96) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "camera size must be WIDTHxHEIGHT, e.g. 128x128, not %r" % text
        ) from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(
            "camera size %r: width and height must be positive and even "
            "(H.264 video in the dataset)" % text
        )
    return w, h


def bag_name(robot: str, task: str, seed: int) -> str:
    # One naming rule for both recorders (the ROS one owns it).
    from clap_ros.nodes.episode_runner import episode_bag_name

    return episode_bag_name(robot, task, seed)


def record_episode_direct(world, seed: int, bag_path: Path, cfg: DirectConfig) -> Dict[str, Any]:
    """Reset ``world`` to ``seed``, run its expert through the driver's control loop in-process,
    and write the episode bag. Returns the outcome dict (also written to /clap/episode_outcome)."""
    from clap_ros.control.trajectory import TrajectoryFollower, TrajectoryRejected, trajectory_chunk
    from clap_ros.data import bags
    from clap_ros.sim import make_expert

    world.reset(seed=seed)
    profile = world.profile
    drv = profile.driver
    names = list(profile.joint_names)
    grip_names = list(profile.gripper.joint_names)
    plan = make_expert(world).plan()
    dt = float(world.timestep)
    control_rate = cfg.control_rate_hz or drv.rate_hz
    n_sub = max(1, int(round((1.0 / control_rate) / dt)))
    js_period = 1.0 / (cfg.joint_states_rate_hz or drv.joint_states_rate_hz)
    cam_period = 1.0 / cfg.camera_rate_hz
    status_period = 1.0 / cfg.status_rate_hz
    traj_mode = cfg.command_mode == "joint_trajectory"
    tick_period = cfg.chunk_period_s if traj_mode else 1.0 / cfg.command_rate_hz
    cameras = ["scene"] + (["wrist"] if cfg.wrist_camera else [])
    cam_topics = {"scene": (T.CAMERA_IMAGE, T.CAMERA_INFO), "wrist": (T.WRIST_IMAGE, T.WRIST_INFO)}

    follower = TrajectoryFollower(profile, world.arm_qpos())
    gq0 = np.asarray(world.gripper_qpos(), dtype=np.float64)
    grip_cmd = profile.gripper.command_from_position(float(gq0[0]))
    last_gq = gq0
    rejected = 0
    last_rejection = ""
    success = bool(world.success())
    wall0 = time.perf_counter()

    def status(now: float) -> Dict[str, Any]:
        return {
            "robot": profile.name,
            "task": world.task_name,
            "instruction": world.instruction,
            "seed": int(seed),
            "success": success,
            "sim_time": float(now),
            "appearance": world.appearance,
            "rejected_commands": rejected,
            "last_rejection": last_rejection,
            "resets": 1,
        }

    with bags.BagWriter(bag_path, compress=cfg.compress) as bag:
        for k, v in (
            ("robot", profile.name),
            ("task", world.task_name),
            ("seed", seed),
            ("command_mode", cfg.command_mode),
            ("recorder", "direct"),
        ):
            bag.set_custom_data(k, str(v))
        # Same topic set and types as the ROS recorder, registered up front.
        for cam in cameras:
            bag.add_topic(cam_topics[cam][0], T.TYPES["image"])
            bag.add_topic(cam_topics[cam][1], T.TYPES["camera_info"])
        bag.add_topic(drv.joint_states_topic, T.TYPES["joint_state"])
        bag.add_topic(drv.gripper_command_topic, T.TYPES["float64_array"])
        bag.add_topic(T.INSTRUCTION, T.TYPES["string"])
        bag.add_topic(T.SIM_STATUS, T.TYPES["string"])
        if traj_mode:
            bag.add_topic(drv.trajectory_topic, T.TYPES["joint_trajectory"])
        else:
            bag.add_topic(drv.forward_topic, T.TYPES["float64_array"])
        bag.add_topic(T.EPISODE_OUTCOME, T.TYPES["string"])

        now = float(world.time)
        bag.write(T.SIM_STATUS, s_to_ns(now), bags.json_msg(status(now)))
        bag.write(T.INSTRUCTION, s_to_ns(now), bags.string_msg(world.instruction))
        due = {"js": now, "cam": now, "status": now + status_period, "tick": now}
        t0 = now
        done_at: Optional[float] = None
        while True:
            now = float(world.time)
            if now >= due["tick"] - 1e-9:
                # The expert node's timer: a new chunk (or forward command) and a gripper command.
                tau = now - t0
                if done_at is None:
                    q, _, grip = plan.sample(min(tau, plan.duration))
                    try:
                        if traj_mode:
                            pts = trajectory_chunk(
                                plan, tau, cfg.chunk_horizon_s, cfg.point_period_s
                            )
                            msg = bags.joint_trajectory_msg(
                                names,
                                [p[0] for p in pts],
                                np.stack([p[1] for p in pts]),
                                np.stack([p[2] for p in pts]),
                                timestamp_ns=0,
                            )
                            bag.write(drv.trajectory_topic, s_to_ns(now), msg)
                            follower.set_trajectory(names, pts, now_s=now)
                        else:
                            bag.write(drv.forward_topic, s_to_ns(now), bags.float64_array_msg(q))
                            follower.set_forward(list(q), now_s=now)
                    except TrajectoryRejected as e:
                        rejected += 1
                        last_rejection = e.reason
                    grip = float(min(max(grip, 0.0), 1.0))
                    bag.write(
                        drv.gripper_command_topic, s_to_ns(now), bags.float64_array_msg([grip])
                    )
                    grip_cmd = grip
                    if tau >= plan.duration:
                        done_at = now
                elif now - done_at >= cfg.settle_s:
                    break
                due["tick"] += tick_period
            q, qd = follower.sample(now)
            world.set_arm_target(q, qd)  # as the sim driver does: velocity feed-forward
            world.set_gripper(grip_cmd)
            world.step(n_sub)
            now = float(world.time)
            t_ns = s_to_ns(now)
            if now >= due["js"] - 1e-9:
                gq = np.asarray(world.gripper_qpos(), dtype=np.float64)
                gv = (gq - last_gq) / js_period
                last_gq = gq
                bag.write(
                    drv.joint_states_topic,
                    t_ns,
                    bags.joint_state_msg(
                        names + grip_names,
                        np.concatenate([world.arm_qpos(), gq]),
                        t_ns,
                        velocity=np.concatenate([world.arm_qvel(), gv]),
                    ),
                )
                due["js"] += js_period
            if now >= due["cam"] - 1e-9:
                for cam in cameras:
                    info = world.camera_info(cam)
                    frame = str(info.get("frame_id", "%s_camera_optical_frame" % cam))
                    bag.write(
                        cam_topics[cam][0],
                        t_ns,
                        bags.image_msg(world.render(camera=cam), t_ns, frame_id=frame),
                    )
                    bag.write(cam_topics[cam][1], t_ns, bags.camera_info_msg(info, t_ns))
                due["cam"] += cam_period
            s = bool(world.success())
            if s != success or now >= due["status"] - 1e-9:
                success = s
                bag.write(T.SIM_STATUS, t_ns, bags.json_msg(status(now)))
                if now >= due["status"] - 1e-9:
                    due["status"] += status_period
        now = float(world.time)
        success = bool(world.success())
        outcome = {
            "robot": profile.name,
            "task": world.task_name,
            "seed": int(seed),
            "instruction": world.instruction,
            "success": success,
            "duration": now,
            "appearance": world.appearance,
            "command_mode": cfg.command_mode,
            "rejected_commands": rejected,
            "error": "",
            "recorder": "direct",
        }
        bag.write(T.SIM_STATUS, s_to_ns(now), bags.json_msg(status(now)))
        bag.write(T.EPISODE_OUTCOME, s_to_ns(now), bags.json_msg(outcome))
        outcome["counts"] = bag.counts
    outcome["wall_s"] = time.perf_counter() - wall0
    outcome["bag"] = str(bag_path)
    return outcome


def record_direct(
    robot: str, task: str, seeds: List[int], out_dir: Path, cfg: DirectConfig, progress: bool = True
) -> List[Dict[str, Any]]:
    """Record one bag per seed in-process; returns the outcome dicts."""
    from tqdm import tqdm

    from clap_ros.sim import SimWorld

    out_dir = Path(out_dir)
    w, h = cfg.camera_size
    world = SimWorld(
        robot=robot,
        task=task,
        seed=seeds[0],
        randomize=cfg.randomize,
        image_size=(h, w),
        wrist_camera=cfg.wrist_camera,
    )
    if world.profile is None:
        raise RecordError("robot %r has no arm profile; record needs an arm" % robot)
    paths = [out_dir / bag_name(world.profile.name, task, s) for s in seeds]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise RecordError("bags already exist (never overwritten): %s" % ", ".join(existing))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(
        total=len(seeds),
        desc="recording %s/%s (direct)" % (robot, task),
        unit="episode",
        disable=not progress,
    )
    try:
        for seed, path in zip(seeds, paths):
            results.append(record_episode_direct(world, seed, path, cfg))
            bar.update(1)
            bar.set_postfix(success="%d/%d" % (sum(r["success"] for r in results), len(results)))
    finally:
        bar.close()
        world.close()
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="fr3", help="robot profile: fr3, panda, ur5e (default: fr3)")
    p.add_argument("--task", default="pick_place", help="sim task (default: pick_place)")
    p.add_argument("--episodes", type=int, default=1, help="number of episodes (default: 1)")
    p.add_argument("--out", required=True, help="directory for the episode bags")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the first episode; episode i uses seed+i (default: 0)",
    )
    p.add_argument(
        "--direct",
        action="store_true",
        help="run the sim and expert in-process without ROS (same topics and bag layout)",
    )
    p.add_argument(
        "--command-mode",
        choices=COMMAND_MODES,
        default="joint_trajectory",
        help="how the expert commands the arm (default: joint_trajectory)",
    )
    p.add_argument(
        "--camera-size",
        type=parse_size,
        default=(128, 128),
        metavar="WxH",
        help="scene camera size (default: 128x128)",
    )
    p.add_argument("--camera-rate", type=float, default=15.0, help="camera rate, Hz (default: 15)")
    p.add_argument("--wrist-camera", action="store_true", help="also record the wrist camera")
    p.add_argument(
        "--no-randomize",
        action="store_true",
        help="fixed appearance (layouts still vary with the seed)",
    )
    p.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="ROS mode: sim speed vs wall clock; 0 = as fast as possible on sim time (default: 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from clap_ros.data.bags import bag_size_bytes

    if args.episodes < 1:
        print("error: --episodes must be at least 1", file=sys.stderr)
        return 2
    if not args.camera_rate > 0:
        print("error: --camera-rate must be positive", file=sys.stderr)
        return 2
    from clap_ros.sim import TASKS

    if args.task not in TASKS:
        print(
            "error: unknown task %r; choose one of %s" % (args.task, ", ".join(TASKS)),
            file=sys.stderr,
        )
        return 2
    seeds = list(range(args.seed, args.seed + args.episodes))
    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        if args.direct:
            cfg = DirectConfig(
                command_mode=args.command_mode,
                camera_size=args.camera_size,
                camera_rate_hz=args.camera_rate,
                wrist_camera=args.wrist_camera,
                randomize=not args.no_randomize,
            )
            results = record_direct(args.robot, args.task, seeds, out, cfg, progress=not args.quiet)
            rows = [(r["bag"], r["success"], r.get("error", "")) for r in results]
        else:
            from clap_ros.nodes.episode_runner import RecordingError, record_episodes_ros

            try:
                res = record_episodes_ros(
                    args.robot,
                    args.task,
                    seeds,
                    out,
                    command_mode=args.command_mode,
                    camera_size=args.camera_size,
                    camera_rate_hz=args.camera_rate,
                    randomize=not args.no_randomize,
                    wrist_camera=args.wrist_camera,
                    real_time_factor=args.real_time_factor,
                    progress=not args.quiet,
                )
            except RecordingError as e:
                raise RecordError(str(e)) from None
            rows = [(r.bag, r.success, r.error) for r in res]
    except (RecordError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    sizes = [bag_size_bytes(b) for b, _, _ in rows]
    n = len(rows)
    ok = sum(bool(s) for _, s, _ in rows)
    print(
        "recorded %d episode%s (%s, %s/%s) in %.1f s: success %d/%d (%.0f %%), %.1f MB written "
        "(%.2f MB per episode) to %s"
        % (
            n,
            "" if n == 1 else "s",
            "direct" if args.direct else "ROS",
            args.robot,
            args.task,
            wall,
            ok,
            n,
            100.0 * ok / max(n, 1),
            sum(sizes) / 1e6,
            sum(sizes) / 1e6 / max(n, 1),
            out,
        )
    )
    for b, _, err in rows:
        if err:
            print("  %s: %s" % (b, err.splitlines()[0] if err else ""), file=sys.stderr)
    return 0
