"""eval-bag's first-point distribution: each recorded JointTrajectory against the bag's latest
joint_states at its log (receipt) time (known answers on a synthetic BagData)."""

from pathlib import Path

import numpy as np
import pytest

from clap_ros.data.bags import joint_trajectory_msg
from clap_ros.eval.bag_data import BagData
from clap_ros.eval.bag_eval import first_points
from clap_ros.eval.bag_metrics import SUMMARY_FIELDS, lookup
from clap_ros.robots import load_profile


def test_first_points_use_the_joint_state_at_receipt():
    prof = load_profile("fr3")
    names = list(prof.joint_names)
    q0 = np.array(prof.home)
    data = BagData(path=Path("x"), topics=None, start_ns=0, end_ns=10**9)
    # measured: q0 until 0.5 s, then joint 1 at +0.2
    q1 = q0.copy()
    q1[0] += 0.2
    data.js_t = [0, 100_000_000, 500_000_000]
    data.js_q = [q0, q0, q1]

    def traj(first, t=0.1):
        return joint_trajectory_msg(names, [t, t + 0.1], np.vstack([first, first]))

    cmds = [
        (-1, "traj", traj(q0)),  # before any joint state: no record
        (200_000_000, "traj", traj(q1)),  # measured q0 then: 0.2 rad in 0.1 s = 2 rad/s
        (600_000_000, "traj", traj(q1)),  # measured q1: no deviation
        (700_000_000, "fwd", q1),  # forward commands are no trajectories
    ]
    s = first_points(prof, cmds, data)
    assert s["count"] == 2 and s["over_limit"] == 0
    assert s["deviation_rad"]["max"] == pytest.approx(0.2)
    assert s["velocity_rad_s"]["max"] == pytest.approx(2.0)
    assert s["velocity_fraction"]["max"] == pytest.approx(2.0 / prof.limits.velocity[0], rel=1e-3)
    assert first_points(prof, [], data)["count"] == 0
    # the summary table reads the recorded distribution
    m = {"first_point": {"recorded": s}}
    paths = {lab: p for lab, p, _ in SUMMARY_FIELDS}
    assert lookup(m, paths["first point velocity p99"]) == s["velocity_fraction"]["p99"]
