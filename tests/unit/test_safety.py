"""SafetyFilter, StopProfile and make_feasible against the robot profiles' limits (no ROS)."""

import numpy as np
import pytest

from clap_ros.control.safety import SafetyFilter, StopProfile, make_feasible, smooth_stop
from clap_ros.robots import load_profile

DT = 0.002


@pytest.fixture(scope="module")
def fr3():
    return load_profile("fr3")


def run_filter(profile, refs, q0=None, **kw):
    f = SafetyFilter(profile, dt=DT, **kw)
    f.reset(profile.home if q0 is None else q0)
    out = np.array([f.filter(r).q.copy() for r in refs])
    return f, out


def derivs(Q, dt=DT):
    V = np.diff(Q, axis=0) / dt
    A = np.diff(V, axis=0) / dt
    J = np.diff(A, axis=0) / dt
    return V, A, J


def assert_within(profile, Q, margin=0.02, tol=1e-6, dt=DT):
    lim = profile.limits
    V, A, J = derivs(Q, dt)
    assert np.all(Q >= lim.lower + margin - 1e-9) and np.all(Q <= lim.upper - margin + 1e-9)
    assert np.max(np.abs(V) / lim.velocity) <= 1 + tol
    assert np.max(np.abs(A) / lim.acceleration) <= 1 + tol
    assert np.max(np.abs(J) / lim.jerk) <= 1 + tol


def one_joint(profile, n, q_of_t, joint=0):
    refs = np.tile(profile.home, (n, 1))
    refs[:, joint] = profile.home[joint] + q_of_t(np.arange(n) * DT)
    return refs


def only(counts, kind):
    return {k: v for k, v in counts.items() if v} == {kind: counts[kind]} and counts[kind] > 0


def test_feasible_reference_passes_through_exactly(fr3):
    # Starts at rest (1 - cos), well inside every limit: the filter must not change it.
    refs = one_joint(fr3, 1000, lambda t: 0.2 * (1 - np.cos(2 * np.pi * 0.5 * t)))
    refs[:, 3] = fr3.home[3] - 0.1 * (1 - np.cos(2 * np.pi * 0.7 * np.arange(1000) * DT))
    f, Q = run_filter(fr3, refs)
    assert sum(f.counts.values()) == 0
    np.testing.assert_allclose(Q, refs, atol=1e-9)


def test_velocity_limit_alone(fr3):
    # Accelerate at half the limit towards 1.5x the velocity limit, far from position limits.
    def ramp(t):
        v = np.minimum(5.0 * t, 1.5 * fr3.limits.velocity[0])
        return np.cumsum(v) * DT - v[0] * DT

    refs = one_joint(fr3, 320, ramp)
    refs[:, 0] -= 1.2
    f, Q = run_filter(fr3, refs, q0=refs[0])
    assert only(f.counts, "velocity"), f.counts
    V, _, _ = derivs(Q)
    assert np.max(np.abs(V[:, 0])) == pytest.approx(fr3.limits.velocity[0], rel=1e-3)
    assert_within(fr3, Q)


def test_acceleration_limit_alone(fr3):
    # 0.022 (1 - cos 30 t): peak acceleration 2x the limit, velocity and jerk well inside.
    w, amp = 30.0, 0.022
    refs = one_joint(fr3, 1000, lambda t: amp * (1 - np.cos(w * t)))
    f, Q = run_filter(fr3, refs)
    assert only(f.counts, "acceleration"), f.counts
    assert_within(fr3, Q)


def test_jerk_limit_alone(fr3):
    # Acceleration square wave +-8 rad/s^2 (limit 10): each switch asks 8000 rad/s^3 (limit 5000).
    n = 1000
    t = np.arange(n) * DT
    # +8 for 50 ms from rest (4000 rad/s^3: allowed), then -8/+8 every 100 ms: v stays in +-0.4.
    a = np.where(((t - 0.05) // 0.1) % 2 == 0, -8.0, 8.0)
    a[t < 0.05] = 8.0
    v = np.cumsum(a) * DT
    q = np.cumsum(v) * DT
    refs = one_joint(fr3, n, lambda _t: q - q[0])
    f, Q = run_filter(fr3, refs)
    assert only(f.counts, "jerk"), f.counts
    assert_within(fr3, Q)


def test_position_limit_alone(fr3):
    # A slow ramp through the upper limit of joint 1: braked to rest at limit - margin.
    q0 = fr3.home.copy()
    q0[0] = 2.55
    refs = one_joint(fr3, 1500, lambda t: 0.0)
    t = np.arange(1500) * DT
    refs[:, 0] = 2.55 + 0.2 * t * t / (0.1 + t)  # starts at rest, tends to 0.2 rad/s
    f, Q = run_filter(fr3, refs, q0=q0)
    assert only(f.counts, "position"), f.counts
    assert Q[:, 0].max() <= fr3.limits.upper[0] - 0.02 + 1e-12
    assert Q[-1, 0] == pytest.approx(fr3.limits.upper[0] - 0.02, abs=1e-3)
    assert_within(fr3, Q)


def test_max_step_alone(fr3):
    # A feasible 0.3 rad move peaking at 0.47 rad/s, with max_step 0.6 mrad per 2 ms (0.3 rad/s).
    refs = one_joint(fr3, 1000, lambda t: 0.15 * (1 - np.cos(np.pi * np.minimum(t, 1.0))))
    f, Q = run_filter(fr3, refs, max_step=0.0006)
    assert only(f.counts, "step"), f.counts
    assert np.max(np.abs(np.diff(Q, axis=0))) <= 0.0006 + 1e-12
    assert Q[-1, 0] - fr3.home[0] == pytest.approx(0.3, abs=1e-4)
    assert_within(fr3, Q)


@pytest.mark.parametrize("robot", ["fr3", "panda", "ur5e"])
def test_random_garbage_stream_never_exceeds_any_limit(robot):
    profile = load_profile(robot)
    rng = np.random.default_rng(7)
    lim = profile.limits
    # Jumps anywhere in (and beyond) the joint range: every 30 ms, then every 0.8 s.
    fast = np.repeat(rng.uniform(lim.lower - 0.3, lim.upper + 0.3, size=(30, profile.dof)), 15, 0)
    # ... and targets at or beyond a limit, so the braking near the limits is exercised.
    near = np.where(rng.random((8, profile.dof)) < 0.5, lim.lower, lim.upper)
    near += rng.uniform(-0.3, 0.3, size=near.shape)
    slow = np.repeat(near, 400, 0)
    refs = np.vstack([fast, slow])
    f, Q = run_filter(profile, refs)
    assert_within(profile, Q)
    assert f.counts["position"] > 0 and f.counts["velocity"] + f.counts["acceleration"] > 0


def test_jump_is_approached_without_overshoot(fr3):
    refs = one_joint(fr3, 1000, lambda t: np.where(t >= 0.02, 0.5, 0.0))
    f, Q = run_filter(fr3, refs)
    assert_within(fr3, Q)
    assert Q[:, 0].max() - fr3.home[0] <= 0.5 + 1e-3
    assert Q[-1, 0] - fr3.home[0] == pytest.approx(0.5, abs=1e-4)


def test_first_command_equals_measured(fr3):
    measured = fr3.home + 0.05
    f = SafetyFilter(fr3, dt=DT)
    f.reset(measured)
    res = f.filter(fr3.home + 0.4)
    np.testing.assert_array_equal(res.q, measured)
    assert res.intervened == ("first_command",) and res.ok
    # ...and from there it moves towards the request smoothly, not in one step.
    res = f.filter(fr3.home + 0.4)
    assert np.max(np.abs(res.q - measured)) < 0.001


def test_nan_holds_with_reason_and_brakes_smoothly(fr3):
    f = SafetyFilter(fr3, dt=DT)
    f.reset(fr3.home)
    Q = [f.filter(fr3.home + 0.3 * (1 - np.cos(np.pi * i * DT))).q.copy() for i in range(300)]
    assert np.max(np.abs(f.qd)) > 0.2  # moving when the bad command comes
    bad = fr3.home.copy()
    bad[2] = np.nan
    bad[5] = np.inf
    for i in range(400):
        res = f.filter(bad)
        Q.append(res.q.copy())
    assert not res.ok
    assert "fr3_joint3" in res.reason and "fr3_joint6" in res.reason and "NaN" in res.reason
    assert f.counts["nonfinite"] == 400
    assert f.at_rest()
    assert np.all(np.isfinite(np.array(Q)))
    assert_within(fr3, np.array(Q))


def test_bad_configuration_is_rejected(fr3):
    with pytest.raises(ValueError, match="dt"):
        SafetyFilter(fr3, dt=0.0)
    with pytest.raises(ValueError, match="margin"):
        SafetyFilter(fr3, margin=2.0)
    f = SafetyFilter(fr3)
    with pytest.raises(RuntimeError, match="reset"):
        f.filter(fr3.home)
    f.reset(fr3.home)
    with pytest.raises(ValueError, match="7 values"):
        f.filter(fr3.home[:6])


# --- smooth stop ----------------------------------------------------------------------------------
@pytest.mark.parametrize("v,a", [(2.0, 0.0), (2.5, -8.0), (0.3, 9.0), (-2.6, 5.0), (0.0, 0.0)])
def test_smooth_stop_respects_limits_and_stops(fr3, v, a):
    qd = np.full(fr3.dof, v) * np.linspace(0.4, 1.0, fr3.dof)
    qdd = np.full(fr3.dof, a)
    dt = 0.001
    t, Q, QD, QDD = smooth_stop(fr3, fr3.home, qd, qdd, dt=dt)
    lim = fr3.limits
    np.testing.assert_allclose(QD[0], qd)
    np.testing.assert_allclose(QDD[0], qdd, atol=1e-9)
    assert np.all(QD[-1] == 0.0) and np.all(QDD[-1] == 0.0)
    assert np.max(np.abs(QDD) / np.maximum(lim.acceleration, abs(a))) <= 1 + 1e-6
    jerk = np.diff(QDD, axis=0) / dt
    assert np.max(np.abs(jerk) / lim.jerk) <= 1 + 1e-3
    assert np.max(np.abs(QD) / np.maximum(lim.velocity, np.abs(qd))) <= 1 + 1e-6
    # Velocity derived from positions agrees with the analytic one (the profile is what it says).
    np.testing.assert_allclose(np.diff(Q, axis=0) / dt, 0.5 * (QD[1:] + QD[:-1]), atol=2e-3)
    # Decelerating, never reversing: velocity keeps its sign.
    assert np.all(QD * np.sign(qd)[None] >= -1e-9)


def test_smooth_stop_never_overshoots_position_limits(fr3):
    q = fr3.home.copy()
    q[0] = 2.5
    qd = np.zeros(fr3.dof)
    qd[0] = 1.2
    sp = StopProfile(fr3, q, qd, None, t_start=1.0, margin=0.02)
    assert sp.feasible
    ts = np.linspace(1.0, 1.0 + sp.duration + 0.5, 2000)
    pos = np.array([sp.sample(t)[0][0] for t in ts])
    assert pos.max() <= fr3.limits.upper[0] - 0.02 + 1e-9
    assert sp.sample(ts[-1])[1][0] == 0.0
    # Too fast too close: position still wins, and says the dynamic limits could not be kept.
    q[0], qd[0] = 2.70, 2.0
    sp = StopProfile(fr3, q, qd, None, margin=0.02)
    assert not sp.feasible
    pos = np.array([sp.sample(t)[0][0] for t in np.linspace(0, sp.duration + 0.1, 2000)])
    assert pos.max() <= fr3.limits.upper[0] - 0.02 + 1e-9


# --- whole trajectories ---------------------------------------------------------------------------
def test_make_feasible_time_scales_and_clamps(fr3):
    t = np.arange(1, 21) * 0.05
    Q = np.tile(fr3.home, (20, 1))
    Q[:, 1] += np.linspace(0.0, 1.5, 20)  # 1.5 rad in 1 s with a sudden start: too fast
    Q[-3:, 0] = 3.5  # and beyond joint 1's upper limit
    ft = make_feasible(fr3, t, Q, margin=0.02, start_positions=fr3.home)
    assert ft.time_scale > 1.0
    assert ft.clamped_points == 3 and "position" in ft.intervened
    assert np.all(ft.positions[:, 0] <= fr3.limits.upper[0] - 0.02)
    tt = np.concatenate([[0.0], ft.times])
    QQ = np.vstack([fr3.home, ft.positions])
    V = np.diff(QQ, axis=0) / np.diff(tt)[:, None]
    assert np.max(np.abs(V) / fr3.limits.velocity) <= 1 + 1e-9
    assert np.max(np.abs(ft.velocities) / fr3.limits.velocity) <= 1 + 1e-9
    # Already feasible input is left alone.
    slow = np.tile(fr3.home, (20, 1))
    slow[:, 1] += 0.01 * (1 - np.cos(np.linspace(0, np.pi, 20)))
    ok = make_feasible(fr3, t, slow, start_positions=fr3.home)
    assert ok.time_scale == 1.0 and ok.intervened == ()
    np.testing.assert_array_equal(ok.times, t)


def test_make_feasible_rejects_jumps_and_bad_input(fr3):
    t = np.array([0.1, 0.2])
    Q = np.tile(fr3.home, (2, 1))
    with pytest.raises(ValueError, match="max step"):
        make_feasible(fr3, t, Q + 0.3, start_positions=fr3.home, max_step=0.1)
    with pytest.raises(ValueError, match="NaN"):
        make_feasible(fr3, t, Q * np.nan)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_feasible(fr3, np.array([0.2, 0.1]), Q)


def test_stop_profile_from_filter_state_passes_through_the_filter(fr3):
    """What STOPPING does: build a StopProfile from the filter's state, stream it through."""
    f = SafetyFilter(fr3, dt=DT)
    f.reset(fr3.home)
    k = 0
    for k in range(400):  # accelerate joints 1 and 5 to about 1 rad/s
        t = k * DT
        ref = fr3.home.copy()
        ref[[0, 4]] += 0.5 * (t - np.sin(2 * t) / 2)
        f.filter(ref)
    t_stop = k * DT
    sp = StopProfile(fr3, f.q, f.qd, f.qdd, t_start=t_stop, margin=f.margin)
    before = dict(f.counts)
    Q = []
    for i in range(1, int(sp.duration / DT) + 50):
        Q.append(f.filter(sp.sample(t_stop + i * DT)[0]).q.copy())
    assert f.counts == before  # nothing to clamp: the stop is feasible as planned
    np.testing.assert_allclose(Q[-1], sp.q_final, atol=1e-4)
    assert f.at_rest(vel_tol=1e-3, acc_tol=0.05)
    assert_within(fr3, np.array(Q))


def test_stop_with_opposing_initial_acceleration_stays_short_and_near():
    # Reported case: a joint braking hard (acceleration opposing a small velocity). The stop must
    # not wander off towards a joint limit; it ends close to where the joint is.
    import numpy as np

    from clap_ros.control.safety import StopProfile
    from clap_ros.robots import load_profile

    fr3 = load_profile("fr3")
    q = fr3.home.copy()
    qd = np.zeros(7)
    qdd = np.zeros(7)
    qd[3], qd[4] = -0.0064, 0.0036
    qdd[3], qdd[4] = 6.94, -0.595
    stop = StopProfile(fr3, q, qd, qdd)
    assert stop.duration < 0.5
    assert np.max(np.abs(stop.q_final - q)) < 0.01
    for t in np.linspace(0.0, stop.duration, 200):
        pos = stop.sample(t)[0]
        assert np.all(pos >= fr3.limits.lower) and np.all(pos <= fr3.limits.upper)
