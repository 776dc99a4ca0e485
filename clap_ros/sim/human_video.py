"""Render "human videos": the sim's tasks performed by a free-floating human-like hand (no arm, its
own look), seen by the same scene camera, written as H.264 mp4 clips plus labels.json with the
action category, instruction, scene id and appearance of each clip. No actions and no
proprioception are written: like real human videos, the clips carry only pixels and labels.

Only successful demonstrations are kept: a seed whose clip fails is skipped and the next is used
(labels record the seed of every clip). --scenes N reuses N scene looks (table, walls, light,
camera, distractors) across clips and tasks, so the same look appears with different actions.

Examples:
  clap-ros sim human-videos --task push --episodes 100 --out human/
  clap-ros sim human-videos --task reach,pick_place --episodes 20 --scenes 5 --out human/
  clap-ros sim human-videos --task stack --episodes 20 --scenes 5 --out human/ --append
"""

from __future__ import annotations

import argparse
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import numpy as np

from clap_ros.sim.render import parse_size

FORMAT = "clap_ros_human_videos"
VERSION = 1
# Appearance seeds of scenes live far from layout seeds so a scene's look is its own.
SCENE_SEED_BASE = 1_000_000
HOLD_AFTER = 0.5  # s of video after the hand's plan ends
MAX_SKIPPED = 50  # consecutive failed seeds before giving up


def add_arguments(p: argparse.ArgumentParser) -> None:
    from clap_ros.sim.tasks import TASKS

    p.add_argument(
        "--task",
        required=True,
        help="task name, comma-separated names, or 'all' (%s)" % ", ".join(TASKS),
    )
    p.add_argument("--episodes", type=int, required=True, help="clips per task")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument(
        "--size", type=parse_size, default=(128, 128), help="HxW, both even (default 128x128)"
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=0,
        help="reuse this many scene looks across clips and tasks (0: every clip its own)",
    )
    p.add_argument("--seed", type=int, default=0, help="first layout seed (default 0)")
    p.add_argument("--no-randomize", action="store_true", help="plain look for every clip")
    p.add_argument(
        "--append",
        action="store_true",
        help="add clips to an existing output directory instead of refusing",
    )


def _tasks(text: str) -> List[str]:
    from clap_ros.sim.tasks import TASKS

    names = (
        list(TASKS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    )
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise SystemExit(
            "unknown task(s) %s: choose from %s or 'all'" % (unknown, ", ".join(TASKS))
        )
    return names


def speed_scale(seed: int) -> float:
    """People move at different speeds: a per-clip factor on the hand's timing."""
    return float(np.random.default_rng([int(seed), 0x5BEE]).uniform(0.75, 1.3))


class Mp4Writer:
    """H.264 (libx264, yuv420p) mp4 written through PyAV; the file appears only when complete."""

    def __init__(self, path: Path, fps: int, size):
        import av

        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=Fraction(int(fps), 1))
        self._stream.height, self._stream.width = int(size[0]), int(size[1])
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "20", "preset": "veryfast"}
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            self._tmp.unlink(missing_ok=True)


def record_clip(world, seed: int, appearance_seed: int, fps: int, path: Path) -> Optional[int]:
    """Reset, run the hand expert, write the clip. Returns the frame count, or None on failure
    (no file is left behind then)."""
    from clap_ros.sim.expert import HandExpert

    world.reset(seed=seed, appearance_seed=appearance_seed)
    plan = HandExpert(world, speed_scale=speed_scale(seed)).plan()
    writer = Mp4Writer(path, fps, world.image_size)
    try:
        sub = max(1, int(round(0.01 / world.timestep)))
        end = plan.duration + HOLD_AFTER
        writer.write(world.render("scene"))
        next_frame = 1
        while world.time < end:
            pos, yaw, g = plan.sample(world.time)
            world.set_tcp_target(pos, yaw)
            world.set_gripper(g)
            world.step(sub)
            while next_frame / fps <= world.time + 1e-9:
                writer.write(world.render("scene"))
                next_frame += 1
        if not world.success():
            writer.abort()
            return None
        writer.close()
        return writer.frames
    except BaseException:
        writer.abort()
        raise


def _write_labels(out: Path, labels: dict) -> None:
    tmp = out / "labels.json.part"
    tmp.write_text(json.dumps(labels, indent=1))
    os.replace(tmp, out / "labels.json")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from clap_ros.sim.embodiments import FloatingHandEmbodiment
    from clap_ros.sim.world import SimWorld

    tasks = _tasks(args.task)
    h, w = args.size
    if h % 2 or w % 2:
        raise SystemExit(
            "--size must be even in both dimensions for yuv420p video, got %dx%d" % (h, w)
        )
    if args.episodes <= 0 or args.fps <= 0 or args.scenes < 0:
        raise SystemExit("--episodes and --fps must be positive and --scenes not negative")
    out: Path = args.out
    labels_path = out / "labels.json"
    if labels_path.exists():
        if not args.append:
            raise SystemExit(
                "%s already exists; use --append to add clips or choose another --out" % labels_path
            )
        labels = json.loads(labels_path.read_text())
        if labels.get("format") != FORMAT or labels.get("fps") != args.fps:
            raise SystemExit("%s is not a %s directory at %d fps" % (labels_path, FORMAT, args.fps))
    else:
        labels = {"format": FORMAT, "version": VERSION, "fps": args.fps, "clips": []}
    (out / "videos").mkdir(parents=True, exist_ok=True)
    index = len(labels["clips"])
    bar = tqdm(total=len(tasks) * args.episodes, desc="human videos", unit="clip")
    for task in tasks:
        world = SimWorld(
            task=task,
            seed=args.seed,
            randomize=not args.no_randomize,
            image_size=(h, w),
            embodiment=FloatingHandEmbodiment(),
        )
        seed = args.seed
        try:
            for ep in range(args.episodes):
                scene_id = (ep % args.scenes) if args.scenes else seed
                skipped = 0
                while True:
                    if args.scenes == 0:
                        scene_id = seed
                    rel = "videos/%06d.mp4" % index
                    frames = record_clip(
                        world, seed, SCENE_SEED_BASE + scene_id, args.fps, out / rel
                    )
                    seed += 1
                    if frames is not None:
                        break
                    skipped += 1
                    if skipped >= MAX_SKIPPED:
                        raise SystemExit("%d seeds in a row failed for task %s" % (skipped, task))
                labels["clips"].append(
                    {
                        "file": rel,
                        "action_category": world.task.action_category,
                        "instruction": world.instruction,
                        "scene_id": int(scene_id),
                        "appearance": world.appearance,
                        "num_frames": int(frames),
                        "seed": seed - 1,
                    }
                )
                index += 1
                # Written after every clip: an interrupted run keeps every finished clip labelled.
                _write_labels(out, labels)
                bar.update(1)
        finally:
            world.close()
    bar.close()
    print("wrote %d clips to %s" % (len(tasks) * args.episodes, out))
    return 0
