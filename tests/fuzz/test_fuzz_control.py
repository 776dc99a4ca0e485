"""Fuzzed trajectories, chunks and position references through clap_ros.control: a command is taken
(and then everything sampled from it is finite and inside the limits) or refused with a reason that
leaves the running command untouched; the safety filter's output is finite and inside the limits
whatever it is fed."""

import math

import numpy as np
from fuzz_support import FR3, HUGE, MAX_TEXT, any_float, fuzz_settings, trajectory_msgs
from hypothesis import given, strategies as st

from clap_ros.control.chunking import ChunkQueue
from clap_ros.control.safety import SafetyFilter, StopProfile, make_feasible
from clap_ros.control.trajectory import (
    TrajectoryFollower,
    TrajectoryRejected,
    TrajectoryRules,
    points_from_msg,
    validate_points,
)

LO, HI = FR3.limits.lower, FR3.limits.upper
RULES = (
    TrajectoryRules(),
    TrajectoryRules(allow_partial_joints_goal=True, allow_nonzero_velocity_at_trajectory_end=True),
)


def _short(e: Exception) -> str:
    text = str(e)
    assert text, "a refusal must say why"
    assert len(text) < MAX_TEXT, "refusal of %d characters" % len(text)
    return text


@fuzz_settings(300)
@given(trajectory_msgs(), st.sampled_from(RULES))
def test_trajectory_messages_are_validated_or_refused(msg, rules):
    try:
        names, points, stamp = points_from_msg(msg)
        out = validate_points(names, points, FR3, FR3.home, rules)
    except TrajectoryRejected as e:
        _short(e)
        return
    assert out, "an accepted trajectory has points"
    times = [p.time_from_start for p in out]
    assert times[0] > 0 and all(b > a for a, b in zip(times, times[1:]))
    for p in out:
        assert p.positions.shape == (FR3.dof,) and np.all(np.isfinite(p.positions))
        assert np.all(p.positions >= LO) and np.all(p.positions <= HI)
        for f in (p.velocities, p.accelerations):
            assert f is None or np.all(np.isfinite(f))


@fuzz_settings(200)
@given(
    trajectory_msgs(),
    st.sampled_from(RULES),
    st.sampled_from([0.0, 100.0]),
    st.lists(st.floats(0.0, 3.0), min_size=1, max_size=12),
)
def test_follower_takes_a_trajectory_or_keeps_its_command(msg, rules, now, offsets):
    f = TrajectoryFollower(FR3, FR3.home, rules)
    f.sample(now)
    before = f.commanded
    try:
        names, points, stamp = points_from_msg(msg)
        f.set_trajectory(names, points, now, stamp)
    except TrajectoryRejected as e:
        _short(e)
        np.testing.assert_array_equal(f.commanded[0], before[0])  # nothing changed
        np.testing.assert_array_equal(f.sample(now + 1.0)[0], FR3.home)
        return
    for dt in sorted(offsets) + list(np.linspace(0.0, 3.0, 61)):
        q, qd = f.sample(now + dt)
        assert np.all(np.isfinite(q)) and np.all(np.isfinite(qd)), (dt, q, qd)
        assert np.all(q >= LO - 1e-6) and np.all(q <= HI + 1e-6), (dt, q)  # never leaves


@fuzz_settings(200)
@given(
    st.one_of(
        st.lists(st.lists(any_float(), min_size=8, max_size=8), min_size=0, max_size=20),
        st.lists(st.lists(st.floats(-0.3, 0.3), min_size=8, max_size=8), min_size=1, max_size=20),
        st.lists(st.lists(any_float(), max_size=10), max_size=5),
        st.sampled_from(
            [
                [],
                [[]],
                "chunk",
                None,
                [[1, 2], [3]],
                np.zeros((3, 8, 1)),
                np.full((4, 8), 1e300),
                np.full((4, 8), 50.0),
            ]
        ),
    ),
    st.sampled_from([0.0, 9.5, 10.0, 1e12, math.nan, -math.inf]),
    st.sampled_from([1 / 15, 0.0, -0.1, 1e-9, 1e9, math.nan]),
    st.sampled_from([10.0, 10.05, 10.6, 9.0, math.inf]),
)
def test_chunk_queue_push_takes_or_refuses_and_stays_finite(chunk, t0, dt, t_av):
    q = ChunkQueue(FR3, dim=FR3.dof + 1)
    home = np.append(FR3.home, 1.0)
    q.reset(10.0, home)
    if (
        isinstance(chunk, list)
        and chunk
        and all(isinstance(r, list) and len(r) == 8 for r in chunk)
    ):
        chunk = [[FR3.home[j % 7] + v if j < 7 else v for j, v in enumerate(r)] for r in chunk]
    res = q.push(chunk, t0, dt, t_av)
    assert res.accepted == (res.reason == "")
    if not res.accepted:
        _short(ValueError(res.reason))
        assert q.rejected == 1 and q.accepted == 0
        assert q.diagnostics()["last_rejection"] == res.reason
    for t in (10.0, 10.02, 10.3, 11.0, 20.0):
        qq, qd, qdd = q.sample(t)
        assert np.all(np.isfinite(qq)) and np.all(np.isfinite(qd)) and np.all(np.isfinite(qdd)), (
            "sampled %s at t=%s after %s" % (qq, t, "accepting" if res.accepted else "refusing")
        )


@fuzz_settings(150)
@given(
    st.lists(
        st.one_of(
            st.lists(any_float(), min_size=7, max_size=7),
            st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7),
            st.sampled_from([[h] * 7 for h in HUGE]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.002, 0.01]),
)
def test_safety_filter_output_is_finite_and_inside_the_limits(refs, dt):
    filt = SafetyFilter(FR3, margin=0.02, dt=dt)
    filt.reset(FR3.home)
    for r in refs:
        res = filt.filter(r)
        assert np.all(np.isfinite(res.q)) and np.all(np.isfinite(res.qd)), (r, res)
        assert np.all(res.q >= LO + 0.02 - 1e-9) and np.all(res.q <= HI - 0.02 + 1e-9)
        assert res.ok == bool(np.all(np.isfinite(r))) and (res.ok or res.reason)
    for _ in range(5):
        res = filt.hold()
        assert np.all(np.isfinite(res.q))


@fuzz_settings(40)
@given(
    st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7),
    st.lists(
        st.one_of(st.floats(-5.0, 5.0), st.sampled_from([1e3, -1e3, 1e9])), min_size=7, max_size=7
    ),
)
def test_stop_profile_from_any_state_stays_finite_and_inside(q, qd):
    q = np.clip(q, LO, HI)
    sp = StopProfile(FR3, q, qd, None, 0.0, margin=0.02)
    for t in np.linspace(0.0, sp.duration + 0.1, 7):
        sq, sqd, _ = sp.sample(float(t))
        assert np.all(np.isfinite(sq)) and np.all(np.isfinite(sqd))
    np.testing.assert_array_equal(sp.sample(sp.duration + 1.0)[1], 0.0)


@fuzz_settings(100)
@given(
    st.lists(
        st.lists(st.one_of(st.floats(-3, 3), any_float()), min_size=7, max_size=7),
        min_size=1,
        max_size=8,
    )
)
def test_make_feasible_refuses_or_returns_a_finite_trajectory(rows):
    times = 0.05 * np.arange(1, len(rows) + 1)
    try:
        f = make_feasible(FR3, times, np.array(rows), None, margin=0.02, start_positions=FR3.home)
    except ValueError as e:
        _short(e)
        return
    assert np.all(np.isfinite(f.positions)) and np.all(np.isfinite(f.velocities))
    assert np.all(np.isfinite(f.times)) and f.time_scale >= 1.0
    assert np.all(f.positions >= LO + 0.02 - 1e-9) and np.all(f.positions <= HI - 0.02 + 1e-9)


@fuzz_settings(150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["latent", "plan", "joint_states"]),
            st.one_of(
                st.floats(-1e6, 1e6), st.sampled_from([0.0, 1e18, -1e18, 100.04, 99.0, 100.5, 1e9])
            ),
        ),
        max_size=12,
    )
)
def test_watchdog_recovers_once_good_stamps_arrive_whatever_came_before(feeds):
    """Garbage stamps (far past, far future) may stop the arm, but the first good message of each
    input afterwards counts: one future-stamped message must not wedge an input for hours."""
    from clap_ros.control.watchdog import Watchdog

    w = Watchdog({"latent": 0.5, "plan": 1.0, "joint_states": 0.2})
    now = 100.0
    w.enable(now)
    for name, stamp in feeds:
        w.feed(name, stamp, now)
        ok, reasons = w.check(now)
        assert all(r and len(r) < 300 for r in reasons)
    now += 0.01
    for name in ("latent", "plan", "joint_states"):
        w.feed(name, now, now)
    ok, reasons = w.check(now)
    assert ok, reasons
    assert w.update(now).value == "run"
