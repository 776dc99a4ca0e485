"""JointTrajectoryController rules and interpolation (clap_ros.control.trajectory), no ROS."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from clap_ros.control.trajectory import (
    Trajectory,
    TrajectoryFollower,
    TrajectoryRejected,
    TrajectoryRules,
    points_from_msg,
    validate_forward_command,
    validate_gripper_command,
    validate_points,
)
from clap_ros.robots import load_profile

FR3 = load_profile("fr3")
PANDA = load_profile("panda")
HOME = FR3.home.copy()
NAMES = list(FR3.joint_names)


def pts(*specs):
    """(t, offset-from-home, vel|None) -> point tuples in profile order."""
    return [(t, list(HOME + off), None if v is None else list(v)) for t, off, v in specs]


def make(points, names=NAMES, rules=TrajectoryRules(), start=10.0, now=None, q0=HOME, v0=None):
    return Trajectory(names, points, FR3, start, q0, v0, rules, now_s=now)


def reject(match, *args, **kw):
    with pytest.raises(TrajectoryRejected, match=match):
        make(*args, **kw)


# --- validation ------------------------------------------------------------------------------


def test_valid_trajectory_accepted_and_reaches_last_point():
    tr = make(pts((0.5, 0.1, None), (1.0, 0.2, np.zeros(7))))
    q, qd = tr.sample(11.5)
    np.testing.assert_allclose(q, HOME + 0.2)
    np.testing.assert_allclose(qd, 0.0)
    assert tr.end_time_s == pytest.approx(11.0)


def test_empty_names_and_empty_points_rejected():
    reject("empty joint names", pts((0.5, 0.1, None)), names=[])
    reject("empty trajectory", [])


def test_missing_joint_rejected_unless_partial_allowed():
    names = NAMES[:6]
    p = [(0.5, list(HOME[:6] + 0.1), None)]
    reject(r"missing \['fr3_joint7'\]", p, names=names)
    tr = make(p, names=names, rules=TrajectoryRules(allow_partial_joints_goal=True))
    q, _ = tr.sample(100.0)
    np.testing.assert_allclose(q[:6], HOME[:6] + 0.1)
    assert q[6] == pytest.approx(HOME[6])  # left-out joint holds its current command


def test_unknown_and_duplicate_names_rejected():
    reject(
        r"incoming joints \['panda_joint1'\]",
        pts((0.5, 0.1, None)),
        names=["panda_joint1"] + NAMES[1:],
    )
    reject("duplicate joint names", pts((0.5, 0.1, None)), names=NAMES[:6] + [NAMES[0]])


def test_aliases_are_known_names_and_reordering_by_name():
    names = ["panda_joint%d" % i for i in range(7, 0, -1)]  # aliases, reversed order
    target = PANDA.home + np.linspace(0.01, 0.07, 7)
    tr = Trajectory(names, [(0.5, list(target[::-1]), None)], PANDA, 0.0, PANDA.home)
    np.testing.assert_allclose(tr.sample(1.0)[0], target)


def test_wrong_vector_lengths_rejected():
    reject(r"joint_names size \(7\) and positions \(6\) at point #0", [(0.5, list(HOME[:6]), None)])
    reject(r"velocities \(3\) at point #1", [(0.5, list(HOME), None), (1.0, list(HOME), [0, 0, 0])])
    reject("no positions", [(0.5, [], None)])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_inf_rejected_in_positions_velocities_and_time(bad):
    p = list(HOME)
    p[3] = bad
    reject("NaN or Inf", [(0.5, p, None)])
    v = [0.0] * 7
    v[1] = bad
    reject("velocities contain NaN", [(0.5, list(HOME), v), (1.0, list(HOME), [0.0] * 7)])
    reject("not finite", [(bad, list(HOME), None)])


def test_positions_beyond_limits_rejected_with_joint_name():
    p = HOME.copy()
    p[3] = FR3.limits.upper[3] + 0.01  # fr3_joint4 upper is -0.1518
    reject(r"fr3_joint4 = .* beyond its limits", [(0.5, list(p), None)])
    # inside the limits but inside the margin
    p[3] = FR3.limits.upper[3] - 0.01
    reject("beyond its limits", [(0.5, list(p), None)], rules=TrajectoryRules(position_margin=0.05))


def test_time_from_start_strictly_increasing_and_first_positive():
    reject("not strictly increasing", pts((0.5, 0.0, None), (0.5, 0.1, None)))
    reject("not strictly increasing", pts((0.5, 0.0, None), (0.4, 0.1, None)))
    reject("first point has time_from_start 0", pts((0.0, 0.1, None)))
    reject("first point has time_from_start -0.1", pts((-0.1, 0.1, None)))


def test_last_point_velocity_must_be_zero_unless_allowed():
    v = [0.1] + [0.0] * 6
    reject("velocity of last trajectory point of joint fr3_joint1", pts((0.5, 0.1, v)))
    tr = make(
        pts((0.5, 0.1, v)), rules=TrajectoryRules(allow_nonzero_velocity_at_trajectory_end=True)
    )
    assert tr.end_time_s == pytest.approx(10.5)


def test_trajectory_ending_in_past_or_starting_in_past_rejected():
    reject("ends in the past", pts((0.5, 0.1, None)), start=10.0, now=11.0)
    reject("not in the future", pts((0.5, 0.1, None), (2.0, 0.2, None)), start=10.0, now=10.6)
    # a future stamp is fine: hold until the interpolation to the first point begins
    tr = make(pts((0.5, 0.1, None)), start=12.0, now=10.0)
    np.testing.assert_allclose(tr.sample(9.0)[0], HOME)


def test_effort_fields_rejected_from_message():
    msg = SimpleNamespace(
        joint_names=NAMES,
        header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0)),
        points=[
            SimpleNamespace(
                time_from_start=SimpleNamespace(sec=0, nanosec=500_000_000),
                positions=list(HOME),
                velocities=[],
                accelerations=[],
                effort=[1.0] * 7,
            )
        ],
    )
    with pytest.raises(TrajectoryRejected, match="effort"):
        points_from_msg(msg)
    msg.points[0].effort = []
    names, points, stamp = points_from_msg(msg)
    assert names == NAMES and stamp == 0.0
    assert points[0][0] == pytest.approx(0.5) and points[0][2] is None


def test_validate_points_fills_partial_goal_velocities_with_zero():
    out = validate_points(
        NAMES[:2],
        [(0.5, [0.1, -0.5], [0.0, 0.0])],
        FR3,
        HOME,
        TrajectoryRules(allow_partial_joints_goal=True),
    )
    np.testing.assert_allclose(out[0].velocities, 0.0)
    np.testing.assert_allclose(out[0].positions[2:], HOME[2:])


# --- forward and gripper commands ------------------------------------------------------------


def test_forward_command_rules():
    np.testing.assert_allclose(validate_forward_command(list(HOME + 0.01), FR3, HOME), HOME + 0.01)
    with pytest.raises(TrajectoryRejected, match="has 6 values"):
        validate_forward_command(list(HOME[:6]), FR3, HOME)
    bad = HOME.copy()
    bad[0] = math.nan
    with pytest.raises(TrajectoryRejected, match="NaN"):
        validate_forward_command(bad, FR3, HOME)
    bad = HOME.copy()
    bad[5] = 5.0
    with pytest.raises(TrajectoryRejected, match="fr3_joint6 .* beyond"):
        validate_forward_command(bad, FR3, None)
    with pytest.raises(TrajectoryRejected, match="would jump"):
        validate_forward_command(HOME + 0.3, FR3, HOME)


def test_gripper_command_rules():
    assert validate_gripper_command([0.25]) == 0.25
    for bad, match in (
        ([], "exactly 1"),
        ([0.1, 0.2], "exactly 1"),
        ([math.nan], "not in"),
        ([1.5], "not in"),
        ([-0.1], "not in"),
    ):
        with pytest.raises(TrajectoryRejected, match=match):
            validate_gripper_command(bad)


# --- interpolation ---------------------------------------------------------------------------


def _dense(tr, t0, t1, n=4001):
    ts = np.linspace(t0, t1, n)
    qs, qds = zip(*(tr.sample(t) for t in ts))
    return ts, np.array(qs), np.array(qds)


def test_linear_without_velocities_passes_through_points():
    tr = make(pts((1.0, 0.2, None), (2.0, -0.2, None)), start=0.0)
    q, qd = tr.sample(0.5)
    np.testing.assert_allclose(q, HOME + 0.1)
    np.testing.assert_allclose(qd, 0.2)
    np.testing.assert_allclose(tr.sample(1.0)[0], HOME + 0.2)
    np.testing.assert_allclose(tr.sample(1.5)[1], -0.4)


def test_cubic_hermite_matches_points_and_velocities_and_is_continuous():
    v1 = np.full(7, 0.3)
    tr = make(pts((0.5, 0.1, v1), (1.2, 0.3, np.zeros(7))), start=0.0, v0=np.full(7, 0.1))
    np.testing.assert_allclose(tr.sample(0.5)[0], HOME + 0.1, atol=1e-12)
    np.testing.assert_allclose(tr.sample(0.5)[1], v1, atol=1e-12)
    np.testing.assert_allclose(tr.sample(1e-9)[1], 0.1, atol=1e-6)  # starts at the given velocity
    ts, qs, qds = _dense(tr, 0.0, 1.5)
    dt = ts[1] - ts[0]
    assert np.max(np.abs(np.diff(qs, axis=0))) < 0.01  # no position jump anywhere
    # sampled velocity is the derivative of sampled position
    fd = np.diff(qs, axis=0) / dt
    mid = 0.5 * (qds[1:] + qds[:-1])
    assert np.max(np.abs(fd - mid)) < 1e-3
    assert np.max(np.abs(np.diff(qds, axis=0))) < 0.01  # velocity continuous too


def test_quintic_when_accelerations_given():
    a = np.full(7, 0.5)
    p = [
        (1.0, list(HOME + 0.1), list(np.full(7, 0.2)), list(a)),
        (2.0, list(HOME + 0.3), [0.0] * 7, [0.0] * 7),
    ]
    tr = Trajectory(NAMES, p, FR3, 0.0, HOME)
    h = 1e-5
    for t, q_exp, v_exp, a_exp in ((1.0, HOME + 0.1, 0.2, 0.5), (2.0, HOME + 0.3, 0.0, 0.0)):
        np.testing.assert_allclose(tr.sample(t)[0], q_exp, atol=1e-9)
        np.testing.assert_allclose(tr.sample(t - h)[1], v_exp, atol=1e-4)
        acc = (tr.sample(t - h)[1] - tr.sample(t - 2 * h)[1]) / h
        np.testing.assert_allclose(acc, a_exp, atol=1e-2)


def test_holds_last_point_with_zero_velocity_after_end():
    tr = make(pts((0.5, 0.1, np.full(7, 0.2)), (1.0, 0.2, np.zeros(7))), start=0.0)
    for t in (1.0, 1.5, 100.0):
        q, qd = tr.sample(t)
        np.testing.assert_allclose(q, HOME + 0.2)
        assert np.all(qd == 0.0)
    assert tr.done(1.0) and not tr.done(0.99)


# --- follower: replace on receive ------------------------------------------------------------


def test_follower_replacement_starts_from_commanded_state_without_jump():
    f = TrajectoryFollower(FR3, HOME)
    f.set_trajectory(NAMES, pts((1.0, 0.5, np.full(7, 0.2)), (2.0, 0.6, np.zeros(7))), now_s=0.0)
    q_before, qd_before = f.sample(0.6)
    # the new one goes the other way; at the switch instant position and velocity are unchanged
    f.set_trajectory(NAMES, pts((1.0, -0.3, np.zeros(7))), now_s=0.6)
    q_after, qd_after = f.sample(0.6)
    np.testing.assert_allclose(q_after, q_before, atol=1e-12)
    np.testing.assert_allclose(qd_after, qd_before, atol=1e-12)
    q_next, _ = f.sample(0.601)
    assert np.max(np.abs(q_next - q_after)) < 0.01
    np.testing.assert_allclose(f.sample(1.6)[0], HOME - 0.3)
    assert not f.active


def test_follower_keeps_running_trajectory_on_rejection():
    f = TrajectoryFollower(FR3, HOME)
    f.set_trajectory(NAMES, pts((1.0, 0.2, None)), now_s=0.0)
    with pytest.raises(TrajectoryRejected):
        f.set_trajectory(NAMES[:3], pts((1.0, -0.2, None)), now_s=0.5)
    with pytest.raises(TrajectoryRejected):
        f.set_forward(HOME + 5.0, now_s=0.5)
    np.testing.assert_allclose(f.sample(1.0)[0], HOME + 0.2)


def test_follower_forward_command_replaces_trajectory_and_holds():
    f = TrajectoryFollower(FR3, HOME)
    f.set_trajectory(NAMES, pts((1.0, 0.2, None)), now_s=0.0)
    q_mid, _ = f.sample(0.5)
    f.set_forward(q_mid + 0.01, now_s=0.5)
    np.testing.assert_allclose(f.sample(3.0)[0], q_mid + 0.01)
    np.testing.assert_allclose(f.commanded[1], 0.0)
    f.hold(3.0)
    np.testing.assert_allclose(f.sample(4.0)[0], q_mid + 0.01)


# --- expert chunks (what the expert node and the direct recorder send) -------------------------


@pytest.fixture(scope="module")
def real_plan():
    from clap_ros.sim import SimWorld, make_expert

    world = SimWorld(robot="fr3", task="reach", seed=1, image_size=(32, 32))
    return make_expert(world).plan()


def test_trajectory_chunks_obey_the_controller_rules(real_plan):
    from clap_ros.control.trajectory import trajectory_chunk

    f = TrajectoryFollower(FR3, real_plan.sample(0.0)[0])
    taus = np.arange(0.0, real_plan.duration + 0.3, 0.1)
    worst = 0.0
    for tau in taus:
        pts_ = trajectory_chunk(real_plan, tau, horizon=1.0, point_period=0.1)
        assert pts_[0][0] > 0 and pts_[-1][0] <= 1.0 + 1e-9
        assert np.all(pts_[-1][2] == 0.0)
        # accepted by the same rules the driver applies, replacing the previous chunk
        f.set_trajectory(NAMES, pts_, now_s=float(tau))
        q_cmd, _ = f.sample(float(tau) + 0.05)
        worst = max(
            worst,
            float(np.max(np.abs(q_cmd - real_plan.sample(min(tau + 0.05, real_plan.duration))[0]))),
        )
    # replacing every 0.1 s, the commanded motion follows the plan closely
    assert worst < 0.01
    np.testing.assert_allclose(
        f.sample(taus[-1] + 2.0)[0], real_plan.sample(real_plan.duration)[0], atol=1e-9
    )


def test_trajectory_chunk_at_plan_end_holds_final_point(real_plan):
    from clap_ros.control.trajectory import trajectory_chunk

    end = trajectory_chunk(real_plan, real_plan.duration + 1.0, 1.0, 0.1)
    assert len(end) == 1 and end[0][0] == pytest.approx(0.1)
    np.testing.assert_allclose(end[0][1], real_plan.sample(real_plan.duration)[0])
    near = trajectory_chunk(real_plan, real_plan.duration - 0.25, 1.0, 0.1)
    assert near[-1][0] == pytest.approx(0.25)  # the last point lands exactly on the plan's end
    assert all(b[0] > a[0] for a, b in zip(near, near[1:]))
