"""``clap-ros robots``: list the robot profiles and print one's facts."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robots",
        help="list robot profiles or show one",
        description="List the robot profiles (joint names, limits, driver topics) "
        "or print one of them with its forward kinematics at home.",
    )
    p.add_argument("name", nargs="?", help="profile name or YAML path (omit to list them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from clap_ros.robots import available_profiles, load_profile

    if not args.name:
        for name in available_profiles():
            prof = load_profile(name)
            print("%-6s %d-DoF  %s" % (name, prof.dof, prof.description))
        return 0
    prof = load_profile(args.name)
    np.set_printoptions(precision=4, suppress=True)
    print("%s: %s (from %s)" % (prof.name, prof.description, prof.source))
    print("joints:      %s" % ", ".join(prof.joint_names))
    for field in ("lower", "upper", "velocity", "acceleration", "jerk"):
        print("%-12s %s" % (field + ":", getattr(prof.limits, field)))
    print("home:        %s" % prof.home)
    print("tcp at home: %s" % prof.tcp_pose(prof.home)[:3, 3])
    d = prof.driver
    print(
        "driver:      %g Hz; %s; %s; %s"
        % (d.rate_hz, d.joint_states_topic, d.trajectory_topic, d.forward_topic)
    )
    return 0
