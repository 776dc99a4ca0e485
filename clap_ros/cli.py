"""The ``clap-ros`` command: one entry point for the sim, data, evaluation and runtime tools.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func`` default is called with the parsed arguments and returns an exit code. Modules are imported
only to build the parser, so they keep heavy imports (mujoco, rclpy, onnxruntime) inside functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# Order here is the order in `clap-ros --help`.
SUBCOMMAND_MODULES = [
    "clap_ros.sim.cli",  # clap-ros sim {record,human-videos,render,bench}
    "clap_ros.robots.cli",  # clap-ros robots
    "clap_ros.data.bag2dataset",  # clap-ros bag2dataset
    "clap_ros.data.cli",  # clap-ros dataset {import-lerobot,export-lerobot,import-videos}
    "clap_ros.demo",  # clap-ros demo
    "clap_ros.bench",  # clap-ros bench
    "clap_ros.inference.cli",  # clap-ros bundle check
    "clap_ros.launching.cli",  # clap-ros launch
    "clap_ros.eval.sim_eval",  # clap-ros eval-sim
    "clap_ros.eval.bag_eval",  # clap-ros eval-bag
    "clap_ros.eval.filmstrip",  # clap-ros filmstrip
    "clap_ros.calibration.cli",  # clap-ros calibrate {intrinsics,handeye,render-board,sim-views}
]

DESCRIPTION = """\
clap_ros: a real-time ROS 2 control stack for CLAP latent-action policies on Franka FR3/Panda and
UR5e arms, with a MuJoCo simulated world that stands in for the robot, its camera and human videos.

Typical use:
  clap-ros demo                                   run the main job on the simulated robot
  clap-ros sim record --robot fr3 --task pick_place --episodes 50 --out bags/
  clap-ros bag2dataset --bags bags/ --out datasets/fr3_pick_place
  clap-ros sim human-videos --task push --episodes 100 --out human/
  clap-ros launch bringup use_sim:=true robot:=fr3    the CLAP nodes + sim driver (no ros2 CLI)
  clap-ros eval-sim --robot fr3 --task reach --episodes 20 --model models/default
  clap-ros filmstrip --task reach --seed 0 --out film.png   watch one closed-loop episode
  clap-ros bundle check models/default            verify a model bundle, time each graph
  clap-ros eval-bag --bag recordings/ --model models/default --out eval/   replay bags: report.html
  clap-ros dataset import-lerobot ~/lerobot/my_set --out datasets/my_set --robot fr3
  clap-ros calibrate intrinsics --images calib/ --square-size 0.025 --out calibration/cam.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clap-ros",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in SUBCOMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
