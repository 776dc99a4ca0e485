"""Render a picture of the simulated world.

Builds the world for (robot, task, seed), optionally runs the scripted expert up to a moment of
the episode (--at), and writes a PNG from the scene (or wrist) camera.

Examples:
  clap-ros sim render --robot fr3 --task pick_place --seed 0 --out fr3.png
  clap-ros sim render --robot ur5e --task stack --at end --size 480x640 --out ur5e_stack.png
  clap-ros sim render --robot fr3 --task push --at reset --no-randomize --camera wrist --out w.png
  clap-ros sim render --hand --task pick_place --out hand.png      # the human-video embodiment
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Tuple


def parse_size(text: str) -> Tuple[int, int]:
    """'HxW' -> (h, w)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "size must look like 480x640 (height x width), got %r" % text
        )
    if h <= 0 or w <= 0 or h > 4096 or w > 4096:
        raise argparse.ArgumentTypeError("size must be between 1x1 and 4096x4096, got %r" % text)
    return h, w


def add_arguments(p: argparse.ArgumentParser) -> None:
    from clap_ros.robots import available_profiles
    from clap_ros.sim.tasks import TASKS

    p.add_argument("--robot", default="fr3", choices=available_profiles(), help="robot profile")
    p.add_argument(
        "--hand",
        action="store_true",
        help="show the human-video floating hand instead of the robot (--robot ignored)",
    )
    p.add_argument("--task", default="pick_place", choices=list(TASKS), help="task")
    p.add_argument("--seed", type=int, default=0, help="layout seed (and appearance seed)")
    p.add_argument(
        "--appearance-seed",
        type=int,
        default=None,
        help="separate seed for the look of the scene (default: --seed)",
    )
    p.add_argument(
        "--no-randomize",
        action="store_true",
        help="plain look: first table/wall/light, default colours, no distractors",
    )
    p.add_argument("--camera", default="scene", choices=["scene", "wrist"], help="camera")
    p.add_argument("--size", type=parse_size, default=(480, 640), help="HxW (default 480x640)")
    p.add_argument(
        "--at",
        default="grasp",
        help="moment of the expert's episode: reset, grasp (gripper at the object; "
        "the plan's middle for tasks without a grasp), end, or seconds into the "
        "plan (default: grasp)",
    )
    p.add_argument(
        "--no-shadows",
        action="store_true",
        help="render without shadows (as the sim driver's camera does by default)",
    )
    p.add_argument("--out", required=True, type=Path, help="output PNG path")


def _plan_time(plan, waypoints, at: str) -> float:
    if at == "reset":
        return 0.0
    if at == "end":
        return plan.duration + 0.5
    if at == "grasp":
        # End of the grasp (or push) waypoint; works for arm plans and floating-hand plans alike.
        for wp, start, dur in zip(waypoints, _starts(plan), _durations(plan)):
            if wp.label in ("grasp", "push"):
                return start + dur
        return 0.5 * plan.duration
    try:
        t = float(at)
    except ValueError:
        raise SystemExit("--at must be reset, grasp, end or a number of seconds, got %r" % at)
    if t < 0:
        raise SystemExit("--at must not be negative")
    return t


def render_picture(
    robot: str,
    task: str,
    seed: int,
    out: Path,
    camera: str = "scene",
    size: Tuple[int, int] = (480, 640),
    at: str = "grasp",
    randomize: bool = True,
    appearance_seed=None,
    shadows: bool = True,
    hand: bool = False,
) -> dict:
    """Render one picture; returns a small description (instruction, appearance, plan time)."""
    import numpy as np
    from PIL import Image

    from clap_ros.sim import SimWorld, make_expert, run_plan
    from clap_ros.sim.embodiments import FloatingHandEmbodiment

    world = SimWorld(
        robot=robot,
        task=task,
        seed=seed,
        randomize=randomize,
        image_size=size,
        wrist_camera=(camera == "wrist"),
        appearance_seed=appearance_seed,
        shadows=shadows,
        embodiment=FloatingHandEmbodiment() if hand else None,
    )
    try:
        expert = make_expert(world)
        plan = expert.plan()
        t_stop = _plan_time(plan, expert.waypoints, at)
        if t_stop > 0:
            settle = max(t_stop - plan.duration, 0.0)
            trimmed = _Trimmed(plan, min(t_stop, plan.duration))
            run_plan(world, trimmed, settle=settle)
        img = world.render(camera)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img)).save(out)
        return {
            "instruction": world.instruction,
            "appearance": world.appearance,
            "time": t_stop,
            "success": world.success(),
        }
    finally:
        world.close()


def _starts(plan):
    return [seg.start for seg in plan.segments] if hasattr(plan, "segments") else list(plan.starts)


def _durations(plan):
    if hasattr(plan, "segments"):
        return [seg.duration for seg in plan.segments]
    return list(plan.durations)


class _Trimmed:
    """A plan cut short at ``end`` s (holds its state there)."""

    def __init__(self, plan, end: float):
        self._plan = plan
        self.duration = end

    def sample(self, t):
        return self._plan.sample(min(t, self.duration))


def run(args: argparse.Namespace) -> int:
    info = render_picture(
        args.robot,
        args.task,
        args.seed,
        args.out,
        args.camera,
        args.size,
        args.at,
        not args.no_randomize,
        args.appearance_seed,
        not args.no_shadows,
        args.hand,
    )
    print(
        "wrote %s  (%s; t=%.2f s; success=%s)"
        % (args.out, info["instruction"], info["time"], info["success"])
    )
    return 0
