"""SimDriverCore records every received trajectory's first point against the measured state
(issue 13 item 4): in its status dict (so /sim/status and both eval-sim modes), reset per
episode, accepted and rejected trajectories alike."""

import json

import numpy as np
import pytest

from clap_ros.sim.driver_core import SimDriverCore, SimDriverParams


@pytest.fixture(scope="module")
def core():
    return SimDriverCore(
        SimDriverParams(
            task="reach", seed=0, camera_rate_hz=0.0, real_time_factor=0.0, use_sim_time=True
        )
    )


def test_first_points_are_recorded_against_the_measured_state(core):
    core.reset(0)
    assert core.status_dict()["first_point"]["count"] == 0
    names = list(core.profile.joint_names)
    for _ in range(10):
        core.step()
    q = core.world.arm_qpos()
    near = q.copy()
    near[1] += 0.01  # 0.01 rad in 0.1 s: 0.1 rad/s
    assert core.command("trajectory", (names, [(0.1, list(near), [0.0] * 7)])) is None
    far = q.copy()
    far[0] += 0.3  # 0.3 rad in 0.067 s: 4.5 rad/s, 1.7x joint 1's 2.62 rad/s
    assert core.command("trajectory", (names, [(0.067, list(far), [0.0] * 7)])) is None
    beyond = q.copy()
    beyond[3] = 5.0  # past the limit: rejected, still recorded
    assert core.command("trajectory", (names, [(0.1, list(beyond), [0.0] * 7)])) is not None
    core.command("trajectory", ("garbage", []))  # unreadable: no record
    fp = core.status_dict()["first_point"]
    assert fp["count"] == 3 and fp["rejected"] == 1
    assert fp["over_limit"] == 2  # the far one and the rejected one
    assert fp["deviation_rad"]["max"] == pytest.approx(abs(5.0 - q[3]), rel=1e-3)
    assert fp["velocity_rad_s"]["p50"] == pytest.approx(0.3 / 0.067, rel=1e-3)
    assert fp["min_lead_s"] == pytest.approx(0.067)
    json.dumps(core.status_dict())  # the status is JSON on the wire
    core.reset(1)
    assert core.status_dict()["first_point"]["count"] == 0


def test_a_stamped_trajectory_counts_its_lead_from_the_stamp(core):
    core.reset(0)
    names = list(core.profile.joint_names)
    q = core.world.arm_qpos()
    target = q.copy()
    target[2] += 0.05
    now = core.clock_s
    # stamped 0.1 s ahead: the first point is due 0.2 s after receipt
    assert (
        core.command("trajectory", (names, [(0.1, list(target), None)]), stamp_s=now + 0.1) is None
    )
    fp = core.status_dict()["first_point"]
    assert fp["min_lead_s"] == pytest.approx(0.2)
    assert fp["velocity_rad_s"]["max"] == pytest.approx(0.25, rel=1e-3)
    # the measured state is the arm's at receipt, not the previous command
    assert np.isfinite(fp["deviation_rad"]["max"])
