"""JTC start state and tolerances of the sim's TrajectoryFollower (clap_ros.control.trajectory):
a new trajectory starts from the measured state unless interpolate_from_desired_state, and the
constraints.* path/goal tolerances abort and hold at the measured position, as ros2_control's
JointTrajectoryController (Jazzy) does."""

import numpy as np
import pytest

from clap_ros.control.trajectory import (
    TrajectoryFollower,
    TrajectoryRejected,
    TrajectoryRules,
    constraint_rules,
)
from clap_ros.robots import load_profile

FR3 = load_profile("fr3")
HOME = FR3.home.copy()
NAMES = list(FR3.joint_names)


def goal(t, offset):
    return [(t, list(HOME + offset), list(np.zeros(7)))]


def test_new_trajectory_starts_from_measured_state_by_default():
    f = TrajectoryFollower(FR3, HOME)
    measured = HOME + 0.05  # the arm was pushed 0.05 rad off its command
    f.set_trajectory(NAMES, goal(1.0, 0.1), now_s=0.0, measured=(measured, np.zeros(7)))
    q, _ = f.sample(1e-4)
    np.testing.assert_allclose(q, measured, atol=1e-4)


def test_interpolate_from_desired_state_starts_from_the_command():
    f = TrajectoryFollower(FR3, HOME, TrajectoryRules(interpolate_from_desired_state=True))
    f.set_trajectory(NAMES, goal(1.0, 0.1), now_s=0.0, measured=(HOME + 0.05, None))
    q, _ = f.sample(1e-4)
    np.testing.assert_allclose(q, HOME, atol=1e-4)


def test_without_a_measurement_the_command_is_the_start():
    # bag2dataset / record reconstruct commands and have no measurement to start from
    f = TrajectoryFollower(FR3, HOME)
    f.set_trajectory(NAMES, goal(1.0, 0.1), now_s=0.0)
    np.testing.assert_allclose(f.sample(1e-4)[0], HOME, atol=1e-4)


def test_measured_start_makes_a_far_first_point_a_fast_segment():
    # the case: first point 0.3 rad from the measured state, 0.067 s ahead
    f = TrajectoryFollower(FR3, HOME)
    f.set_trajectory(NAMES, goal(0.067, 0.0), now_s=0.0, measured=(HOME - 0.3, None))
    speeds = [np.max(np.abs(f.sample(t)[1])) for t in np.linspace(0.001, 0.066, 40)]
    assert max(speeds) > FR3.limits.velocity.max()  # what the real JTC would command


def test_bad_measurement_is_refused_and_keeps_the_command():
    f = TrajectoryFollower(FR3, HOME)
    with pytest.raises(TrajectoryRejected, match="measured joint state"):
        f.set_trajectory(NAMES, goal(1.0, 0.1), now_s=0.0, measured=(np.full(7, np.nan), None))
    assert f.trajectory is None
    np.testing.assert_allclose(f.sample(0.5)[0], HOME)


def test_constraint_rules_from_jtc_parameter_names():
    r = constraint_rules(
        FR3,
        {
            "constraints.fr3_joint2.trajectory": 0.1,
            "constraints.fr3_joint2.goal": 0.02,
            "constraints.stopped_velocity_tolerance": 0.05,
            "constraints.goal_time": 0.5,
            "interpolate_from_desired_state": True,
        },
    )
    assert r.path_tolerance[1] == 0.1 and r.path_tolerance[0] == 0.0
    assert r.goal_tolerance[1] == 0.02
    assert r.stopped_velocity_tolerance == 0.05 and r.goal_time == 0.5
    assert r.interpolate_from_desired_state
    assert constraint_rules(FR3, {"open_loop_control": True}).interpolate_from_desired_state
    for bad, msg in (
        ({"constraints.nojoint.goal": 0.1}, "not one of"),
        ({"constraints.fr3_joint1.goal": -1.0}, ">= 0"),
        ({"constraints.fr3_joint1.speed": 1.0}, "'trajectory' or 'goal'"),
        ({"constraint.goal_time": 1.0}, "unknown"),
    ):
        with pytest.raises(ValueError, match=msg):
            constraint_rules(FR3, bad)


def test_path_tolerance_violated_mid_way_aborts_and_holds_at_measured(caplog):
    rules = constraint_rules(FR3, {"constraints.fr3_joint1.trajectory": 0.05})
    f = TrajectoryFollower(FR3, HOME, rules)
    f.set_trajectory(NAMES, goal(2.0, 0.4), now_s=0.0, measured=(HOME, None))
    # the arm follows for a while, then is blocked at HOME + 0.1 on joint 1
    for t in np.arange(0.0, 0.6, 0.01):
        desired, _ = f.sample(t)
        assert f.check(t, desired, np.zeros(7)) is None
    blocked = f.sample(0.6)[0].copy()
    reason = None
    for t in np.arange(0.6, 2.0, 0.01):
        f.sample(t)
        reason = f.check(t, blocked, np.zeros(7))
        if reason:
            break
    assert reason and "path tolerance violated: fr3_joint1" in reason
    assert "constraints.fr3_joint1.trajectory" in reason
    assert f.trajectory is None and f.outcome == reason and f.aborts == 1
    # holds where the arm is, not where the trajectory was going
    np.testing.assert_allclose(f.sample(t + 1.0)[0], blocked)
    np.testing.assert_allclose(f.sample(t + 1.0)[1], 0.0)


def test_zero_tolerance_is_not_checked():
    f = TrajectoryFollower(FR3, HOME)  # JTC defaults: every tolerance 0, goal_time 0
    f.set_trajectory(NAMES, goal(1.0, 0.3), now_s=0.0, measured=(HOME, None))
    for t in np.arange(0.0, 5.0, 0.05):
        f.sample(t)
        assert f.check(t, HOME, np.zeros(7)) is None  # the arm never moved: nothing aborts
    # a goal tolerance of 0 is not checked: stopped after the end is success (JTC's semantics)
    assert f.outcome == "succeeded" and f.aborts == 0
    np.testing.assert_allclose(f.sample(6.0)[0], HOME + 0.3)  # keeps the last point


def test_goal_reached_succeeds_and_goal_time_exceeded_aborts():
    rules = constraint_rules(
        FR3, {"constraints.fr3_joint3.goal": 0.01, "constraints.goal_time": 0.5}
    )
    ok = TrajectoryFollower(FR3, HOME, rules)
    ok.set_trajectory(NAMES, goal(1.0, 0.2), now_s=0.0, measured=(HOME, None))
    ok.sample(1.1)
    assert ok.check(1.1, HOME + 0.2 + 0.005, np.zeros(7)) is None
    assert ok.outcome == "succeeded"

    late = TrajectoryFollower(FR3, HOME, rules)
    late.set_trajectory(NAMES, goal(1.0, 0.2), now_s=0.0, measured=(HOME, None))
    stuck = HOME + 0.1
    assert late.check(1.2, stuck, np.zeros(7)) is None  # within goal_time: still waiting
    reason = late.check(1.6, stuck, np.zeros(7))
    assert reason and "goal not reached" in reason and "constraints.goal_time" in reason
    np.testing.assert_allclose(late.sample(2.0)[0], stuck)


def test_moving_at_the_goal_is_not_stopped():
    rules = constraint_rules(
        FR3, {"constraints.goal_time": 0.2, "constraints.stopped_velocity_tolerance": 0.01}
    )
    f = TrajectoryFollower(FR3, HOME, rules)
    f.set_trajectory(NAMES, goal(1.0, 0.1), now_s=0.0, measured=(HOME, None))
    assert f.check(1.05, HOME + 0.1, np.full(7, 0.05)) is None
    assert "goal not reached" in (f.check(1.3, HOME + 0.1, np.full(7, 0.05)) or "")
