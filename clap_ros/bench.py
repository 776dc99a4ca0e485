"""``clap-ros bench`` (``make bench``): the speed figures the project tracks, measured in one run.

Now: the simulated world per robot (scene-camera images/s at 224x224, physics steps/s and
real-time factor while the expert drives the arm). Runtime figures (command streaming, frame-to-
command latency, inference) join here as the nodes arrive. Machines are shared and noisy: compare
figures from the same run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="print the benchmark figures (make bench)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", default="fr3,ur5e", help="robots for the sim figures")
    p.add_argument("--frames", type=int, default=300, help="images rendered per robot")
    p.add_argument("--steps", type=int, default=10000, help="physics steps per robot")
    p.add_argument("--json", type=Path, default=None, help="also write all figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clap_ros.sim.bench import bench_robot

    robots = [r.strip() for r in args.robots.split(",") if r.strip()]
    figures = {"machine": {"cpu": platform.processor() or platform.machine(),
                           "python": platform.python_version(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
               "sim": []}
    print("== simulated world (pick_place, expert driving, scene camera 224x224)")
    print("%-8s %12s %12s %16s %16s" % ("robot", "images/s", "ms/image", "physics steps/s",
                                        "real-time factor"))
    for robot in robots:
        r = bench_robot(robot, "pick_place", (224, 224), args.frames, args.steps)
        figures["sim"].append(r)
        print("%-8s %12.1f %12.2f %16.0f %16.1f" % (robot, r["images_per_s"],
                                                    1000.0 / r["images_per_s"],
                                                    r["physics_steps_per_s"],
                                                    r["real_time_factor"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0
