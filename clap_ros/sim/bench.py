"""Measure the simulated world's speed per robot: scene-camera images/s, physics steps/s and the
real-time factor (sim seconds per wall second) while the scripted expert drives the arm.

Example:
  clap-ros sim bench                      # fr3 and ur5e, pick_place, 224x224
  clap-ros sim bench --robots fr3 --task stack --size 128x128 --frames 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

from clap_ros.sim.render import parse_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    from clap_ros.sim.tasks import TASKS

    p.add_argument("--robots", default="fr3,ur5e", help="comma-separated robot profiles")
    p.add_argument("--task", default="pick_place", choices=list(TASKS), help="task to run")
    p.add_argument(
        "--size", type=parse_size, default=(224, 224), help="image HxW (default 224x224)"
    )
    p.add_argument("--frames", type=int, default=200, help="images to render per robot")
    p.add_argument("--steps", type=int, default=5000, help="physics steps to time per robot")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")


def bench_robot(robot: str, task: str, size, frames: int, steps: int) -> Dict[str, float]:
    from clap_ros.sim import SimWorld, make_expert

    world = SimWorld(robot=robot, task=task, seed=0, randomize=True, image_size=size)
    try:
        plan = make_expert(world).plan()
        # Physics: step while following the expert plan (contacts, grasp), at 100 Hz commands.
        sub = max(1, int(round(0.01 / world.timestep)))
        t0 = time.perf_counter()
        done = 0
        while done < steps:
            q, qd, g = plan.sample(world.time)
            world.set_arm_target(q, qd)
            world.set_gripper(g)
            world.step(sub)
            done += sub
        wall = time.perf_counter() - t0
        steps_per_s = done / wall
        # Rendering: the scene camera as the sim driver publishes it (first frame warms up GL).
        world.render("scene")
        t0 = time.perf_counter()
        for _ in range(frames):
            world.render("scene")
        fps = frames / (time.perf_counter() - t0)
        return {
            "robot": robot,
            "images_per_s": fps,
            "physics_steps_per_s": steps_per_s,
            "real_time_factor": steps_per_s * world.timestep,
            "timestep_s": world.timestep,
            "height": size[0],
            "width": size[1],
        }
    finally:
        world.close()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    robots = [r.strip() for r in args.robots.split(",") if r.strip()]
    if args.frames <= 0 or args.steps <= 0:
        raise SystemExit("--frames and --steps must be positive")
    rows: List[Dict[str, float]] = []
    for robot in tqdm(robots, desc="bench", unit="robot"):
        rows.append(bench_robot(robot, args.task, args.size, args.frames, args.steps))
    h, w = args.size
    print(
        "\nsim bench (%s, scene camera %dx%d, timestep %.3f s)"
        % (args.task, h, w, rows[0]["timestep_s"])
    )
    print("%-8s %12s %16s %16s" % ("robot", "images/s", "physics steps/s", "real-time factor"))
    for r in rows:
        print(
            "%-8s %12.1f %16.0f %16.1f"
            % (r["robot"], r["images_per_s"], r["physics_steps_per_s"], r["real_time_factor"])
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0
