"""``clap-ros sim ...``: the simulated world's tools (recording, human videos, pictures, speed).

Each sim subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
this module only groups them under ``clap-ros sim``.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module, one-line help). Order is the order in `clap-ros sim --help`.
SIM_SUBCOMMANDS = {
    "record": ("clap_ros.data.record", "record expert demonstrations as MCAP rosbags"),
    "human-videos": (
        "clap_ros.sim.human_video",
        "render tasks done by a floating hand: mp4 clips + labels, no actions",
    ),
    "render": ("clap_ros.sim.render", "render a picture of a robot, task and seed"),
    "bench": ("clap_ros.sim.bench", "images/s, physics steps/s and real-time factor per robot"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="simulated world: record demos, human videos, render, bench",
        description="Tools of the MuJoCo world that stands in for the robot, its "
        "camera and human videos.",
    )
    simsub = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    for name, (module, help_text) in SIM_SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        sp = simsub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
