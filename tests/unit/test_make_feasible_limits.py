"""make_feasible near a joint limit: a chunk clipped at the limit but still heading outwards
(velocities from the chunk queue) must not give a trajectory whose cubic segments swing past the
limit between points, which the controller (TrajectoryFollower, like the JTC) refuses whole."""

import numpy as np
import pytest

from clap_ros.control.safety import make_feasible
from clap_ros.control.trajectory import TrajectoryFollower, TrajectoryRejected
from clap_ros.robots import load_profile

FR3 = load_profile("fr3")


def outward_chunk():
    # joint 7 runs at 1 rad/s towards its upper limit; the last points are clipped there
    up = FR3.limits.upper[6]
    t = 0.2 * np.arange(1, 11)  # coarse points: v * T large enough to swing out
    q = np.tile(FR3.home, (t.size, 1))
    q[:, 6] = up - 0.6 + 1.0 * t
    qd = np.zeros_like(q)
    qd[:-1, 6] = 1.0  # the last point at rest, as a JointTrajectory ends
    return t, q, qd


def hermite_max(times, q, qd, j):
    u = np.linspace(0, 1, 33)
    out = []
    for k in range(len(times) - 1):
        T = times[k + 1] - times[k]
        h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
        h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
        out.append(h00 * q[k, j] + h10 * T * qd[k, j] + h01 * q[k + 1, j] + h11 * T * qd[k + 1, j])
    return float(np.max(np.concatenate(out)))


def follower_accepts(f):
    fol = TrajectoryFollower(FR3, f.positions[0])
    pts = [(float(t), f.positions[i], f.velocities[i]) for i, t in enumerate(f.times)]
    fol.set_trajectory(list(FR3.joint_names), pts, now_s=0.0)


def test_clipped_outward_chunk_stays_inside_between_points():
    t, q, qd = outward_chunk()
    up = FR3.limits.upper[6]
    # without the fix the curve leaves the limit: the raw clipped points + velocities overshoot
    qc = np.clip(q, FR3.limits.lower + 0.02, FR3.limits.upper - 0.02)
    assert hermite_max(t, qc, qd, 6) > up
    f = make_feasible(FR3, t, q, qd, margin=0.02)
    assert "overshoot" in f.intervened and "position" in f.intervened
    assert hermite_max(f.times, f.positions, f.velocities, 6) <= up + 1e-9
    follower_accepts(f)  # accepted as a whole


def test_trajectories_away_from_the_limits_are_unchanged():
    t = 0.05 * np.arange(1, 21)
    q = np.tile(FR3.home, (t.size, 1))
    q[:, 0] += 0.2 * np.sin(t)
    qd = np.zeros_like(q)
    qd[:, 0] = 0.2 * np.cos(t)
    f = make_feasible(FR3, t, q, qd, margin=0.02)
    assert "overshoot" not in f.intervened
    np.testing.assert_allclose(f.velocities * f.time_scale, qd)


def test_the_follower_does_refuse_an_overshooting_spline():
    # the rule the fix is for exists: the same clipped points with the raw velocities are refused
    t, q, qd = outward_chunk()
    qc = np.clip(q, FR3.limits.lower + 0.02, FR3.limits.upper - 0.02)
    fol = TrajectoryFollower(FR3, qc[0])
    with pytest.raises(TrajectoryRejected, match="leaves the limits"):
        fol.set_trajectory(
            list(FR3.joint_names), [(float(x), qc[i], qd[i]) for i, x in enumerate(t)], now_s=0.0
        )
