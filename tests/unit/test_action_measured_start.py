"""The action core's trajectories start where the arm is (issue 13 item 4): the JTC starts each
trajectory from the MEASURED state, so every first segment (measured position and velocity ->
first point) must be within the profile's velocity and acceleration limits, and an arm that is
blocked or pushed off its command must get the smooth stop from where it is, never a jump.

The helpers of clap_ros.runtime.measured_start with known answers, then the ActionController on
the real default bundle fed an arm that drifts away from its command."""

import numpy as np
import pytest

from clap_ros.control.first_point import first_point
from clap_ros.control.trajectory import TrajectoryRules, validate_points
from clap_ros.control.watchdog import State
from clap_ros.inference.policy import ClapRuntime
from clap_ros.robots import load_profile
from clap_ros.runtime.action_core import ActionController
from clap_ros.runtime.chunk_stream import CHECK_SHARE, FIRST_POINT_MIN_S, TRANSPORT_S
from clap_ros.runtime.measured_start import (
    MAX_EXTRAPOLATION_S,
    MeasuredMotion,
    hermite_grid,
    segment_peaks,
    spline_peaks,
    track,
)
from clap_ros.runtime.params import ActionParams

FR3 = load_profile("fr3")
NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)
LIM = FR3.limits


# --- helpers ----------------------------------------------------------------------------------
def test_measured_motion_differences_and_extrapolates():
    m = MeasuredMotion(2)
    assert m.at(0.0, 1.0) is None
    m.update([0.0, 1.0], 1.0)
    q, qd = m.at(1.0, 0.1)
    np.testing.assert_allclose(q, [0.0, 1.0]) and np.testing.assert_allclose(qd, 0.0)
    # joint 1 accelerating at 10 rad/s^2 from rest, sampled at 1 kHz: q = 5 t^2
    for k in range(1, 41):
        t = 0.001 * k
        m.update([5.0 * t * t, 1.0], 1.0 + t)
    q, qd = m.at(1.04, 0.1)
    np.testing.assert_allclose(qd, [0.4, 0.0], atol=1e-9)  # no lag behind the arm
    np.testing.assert_allclose(q, [5.0 * 0.04**2, 1.0], atol=1e-12)
    q, qd = m.at(1.05, 0.1)  # 10 ms later: extrapolated with velocity and acceleration
    np.testing.assert_allclose(qd, [0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(q, [5.0 * 0.05**2, 1.0], atol=1e-9)
    q, _ = m.at(1.19, 0.2)  # extrapolated at most MAX_EXTRAPOLATION_S
    t = 0.04 + MAX_EXTRAPOLATION_S
    np.testing.assert_allclose(q, [5.0 * t * t, 1.0], atol=1e-9)
    assert m.at(1.2, 0.1) is None  # stale (older than max_age)
    # a 50 Hz stream: its own spacing, velocity only (no second differences)
    m.reset()
    for k in range(5):
        t = 0.02 * k
        m.update([0.3 * t + 2.0 * t * t, 0.0], 2.0 + t)
    np.testing.assert_allclose(m.at(2.08, 0.1)[1], [0.3 + 2.0 * (0.08 + 0.06), 0.0], atol=1e-9)
    m.update([0.0, 0.0], 1.0)  # stamped before the newest (a clock jump): taken, motion unknown
    q, qd = m.at(1.0, 0.1)
    np.testing.assert_allclose(q, [0.0, 0.0]) and np.testing.assert_allclose(qd, 0.0)
    m.update([0.5, 0.0], 2.0)  # after a gap: motion unknown
    np.testing.assert_allclose(m.at(2.0, 0.1)[1], 0.0)


def test_segment_peaks_known_answers():
    # constant velocity: 1 rad/s, no acceleration
    v, a = segment_peaks(np.array([0.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]), 1.0)
    assert v[0] == pytest.approx(1.0) and a[0] == pytest.approx(0.0, abs=1e-12)
    # rest to rest over 1 rad in 1 s: 3t^2 - 2t^3, peak 1.5 rad/s mid-way, 6 rad/s^2 at the ends
    v, a = segment_peaks(np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1), 1.0)
    assert v[0] == pytest.approx(1.5) and a[0] == pytest.approx(6.0)
    # the jump: 0.3 rad from the measured state, 0.067 s ahead, from rest
    v, a = segment_peaks(np.zeros(1), np.zeros(1), np.array([0.3]), np.zeros(1), 0.067)
    assert v[0] > LIM.velocity[0] and a[0] > 30 * LIM.acceleration[0]


def test_hermite_grid_reproduces_a_cubic():
    t = np.array([0.0, 0.5, 1.0])
    f = lambda x: x**3 - x  # noqa: E731
    df = lambda x: 3 * x**2 - 1  # noqa: E731
    grid = np.linspace(0.0, 1.0, 11)
    q, qd = hermite_grid(t, f(t)[:, None], df(t)[:, None], grid)
    np.testing.assert_allclose(q[:, 0], f(grid), atol=1e-12)
    np.testing.assert_allclose(qd[:, 0], df(grid), atol=1e-12)
    vp, ap = spline_peaks(t, f(t)[:, None], df(t)[:, None], 1.0)
    assert vp[0] == pytest.approx(2.0) and ap[0] == pytest.approx(6.0)


def test_track_follows_a_feasible_reference_and_lags_an_infeasible_one():
    dt = 0.025
    grid = dt * np.arange(81)
    # feasible: 0.5 rad/s ramp; from its own state the path is the reference
    rq = np.stack([0.5 * grid, -0.2 * grid], axis=1)
    rqd = np.tile([0.5, -0.2], (grid.size, 1))
    lim_v, lim_a = np.full((2, 2), 2.0), np.full((2, 2), 10.0)
    lo, hi = np.full(2, -10.0), np.full(2, 10.0)
    starts = np.array([[rq[0], rqd[0]], [rq[0] + [0.02, 0.0], [0.0, 0.0]]])
    q, v = track(dt, rq, rqd, starts, lim_v, lim_a, 15.7, lo, hi)
    np.testing.assert_allclose(q[0], rq, atol=1e-9)
    # from 2 cm off and at rest: joins it within the limits, and stays joined
    acc = np.abs(np.diff(v[1], axis=0)) / dt
    assert np.max(acc) <= 10.0 + 1e-9 and np.max(np.abs(v[1])) <= 2.0 + 1e-9
    np.testing.assert_allclose(q[1, -20:], rq[-20:], atol=1e-3)
    # a step of 1 rad: the path lags, never beyond the limits, and arrives
    step = np.ones((grid.size, 2))
    q, v = track(
        dt, step, np.zeros_like(step), np.zeros((1, 2, 2)), lim_v[:1], lim_a[:1], 15.7, lo, hi
    )
    acc = np.abs(np.diff(v[0], axis=0)) / dt
    assert np.max(acc) <= 10.0 + 1e-9 and np.max(np.abs(v[0])) <= 2.0 + 1e-9
    assert q[0, 10, 0] < 0.9 and q[0, -1, 0] == pytest.approx(1.0, abs=1e-3)
    # position limits hold
    q, _ = track(
        dt,
        5 * step,
        np.zeros_like(step),
        np.zeros((1, 2, 2)),
        lim_v[:1],
        lim_a[:1],
        15.7,
        lo,
        np.full(2, 0.5),
    )
    assert np.max(q) <= 0.5


# --- the controller ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime():
    rt = ClapRuntime("models/default", backend="cpu", intra_op_num_threads=1)
    yield rt
    rt.close()


class RampRuntime:
    """The bundle's shapes, but chunks that move joint 1 at ``speed`` rad/s from where the run
    started whatever the arm does (a plan that goes on without the arm)."""

    def __init__(self, rt, speed=2.0):
        self.bundle, self.speed = rt.bundle, speed
        self.start = None
        self.calls = 0

    def act(self, latent, tokens, state, rng):
        return None

    def joint_targets(self, raw, state):
        b = self.bundle
        if self.start is None:
            self.start = np.asarray(state, dtype=np.float64).copy()
        t0 = self.calls / 15.0  # one chunk per 15 Hz frame
        self.calls += 1
        steps = t0 + b.chunk_dt_s * np.arange(b.chunk_length)
        out = np.tile(self.start, (b.chunk_length, 1))
        out[:, 0] += self.speed * steps
        return out


class DriftingArm:
    """The controller at 100 Hz with joint_states at 500 Hz from an arm that executes each
    trajectory as the JTC does (from where the arm is, linear between points), displaced by
    ``push`` rad/s, or held in place (``blocked``). Every trajectory is kept with the measured
    state the core had when it made it."""

    def __init__(self, ctl):
        self.ctl = ctl
        self.t = 10.0
        self.q = FR3.home.copy()
        self.push = np.zeros(FR3.dof)
        self.blocked = False
        self.traj = None
        self.sent = []  # (kind, trajectory, measured q, measured qd)
        b = ctl.runtime.bundle
        self.shape = (b.latent_tokens, b.latent_dim)
        self.rng = np.random.default_rng(0)
        self.next_frame = self.t
        self._last = self.t

    def arm(self, t):
        if not self.blocked and t > self._last:
            if self.traj is not None:
                t0, times, pos = self.traj
                before = np.array([np.interp(self._last - t0, times, pos[:, j]) for j in range(7)])
                after = np.array([np.interp(t - t0, times, pos[:, j]) for j in range(7)])
                self.q = self.q + (after - before)
            self.q = self.q + self.push * (t - self._last)
        self._last = max(self._last, t)
        return self.q.copy()

    def run(self, seconds):
        ctl = self.ctl
        for _ in range(int(round(seconds / 0.01))):
            t = self.t
            for k in range(5):  # 500 Hz joint states
                ts = t - 0.008 + 0.002 * k
                ctl.on_joint_state(NAMES, list(self.arm(ts)) + [0.04, 0.04], ts, ts)
            if t >= self.next_frame:
                self.next_frame += 1 / 15
                ctl.on_latent(self.rng.standard_normal(self.shape).astype(np.float32), t, t)
                ctl.on_plan_tokens([1, 2, 3, 4])
                ctl.on_plan(t - 0.05, t)
            job = ctl.take_job()
            if job is not None:
                ctl.infer_once(job, lambda: t + 0.02)
            ms = ctl.measured_state(t + TRANSPORT_S)  # what the trajectory is planned from
            out = ctl.tick(t)
            if out.trajectory is not None:
                tr = out.trajectory
                if ms is not None:
                    self.sent.append((tr.kind, tr, ms[0].copy(), ms[1].copy()))
                q = self.arm(t)
                self.traj = (
                    t,
                    np.array([0.0] + [p[0] for p in tr.points]),
                    np.vstack([q] + [p[1] for p in tr.points]),
                )
            self.t += 0.01


def check_first_segment(tr, q_meas, qd_meas):
    """What a JTC starting from (q_meas, qd_meas) asks for to reach the first point."""
    t0, q1, v1 = tr.points[0]
    fp = first_point(q1, q_meas, t0, LIM.velocity)
    v, a = segment_peaks(q_meas, qd_meas, q1, v1, t0)
    return fp, v, a


def check_all(arm):
    """Every trajectory sent: first point >= FIRST_POINT_MIN_S ahead, its implied velocity from
    the measured state within the limits, the JTC's first segment within velocity and
    acceleration limits, the JTC rules; returns the worst segment ratios."""
    worst_v, worst_a = 0.0, 0.0
    for kind, tr, qm, qdm in arm.sent:
        fp, v, a = check_first_segment(tr, qm, qdm)
        assert tr.points[0][0] >= FIRST_POINT_MIN_S - 1e-9
        assert fp.velocity_fraction <= 1.0, (kind, fp)
        worst_v = max(worst_v, float(np.max(v / LIM.velocity)))
        worst_a = max(worst_a, float(np.max(a / LIM.acceleration)))
        validate_points(tr.joint_names, tr.points, FR3, qm, TrajectoryRules())
    assert worst_v <= 1.0 and worst_a <= 1.0, (worst_v, worst_a)
    return worst_v, worst_a


def run_until_enabled(ctl):
    arm = DriftingArm(ctl)
    arm.run(0.3)
    ctl.enable(arm.t)
    arm.run(1.0)
    assert ctl.state is State.RUN
    return arm


def test_a_blocked_arm_gets_trajectories_from_where_it_is_never_a_jump(runtime):
    """Stuck while the chunks move on (1 rad/s on joint 1): every trajectory starts where the
    arm is and stays within the limits. The command leans towards the arm at each trajectory
    (COMMAND_LEAK), so this slow a blockage is no tracking fault: the arm is pushed gently,
    never jumped; the robot's own contact reflexes judge the force (the sim emulates them)."""
    rt = RampRuntime(runtime, speed=1.0)
    ctl = ActionController(FR3, rt, ActionParams())
    arm = run_until_enabled(ctl)
    n = len(arm.sent)
    arm.blocked = True
    arm.run(2.0)
    assert len([s for s in arm.sent[n:] if s[0] == "chunk"]) >= 20
    check_all(arm)
    d = ctl.diagnostics(arm.t)
    assert 0.0 < d["first_point_acceleration_ratio_max"] <= CHECK_SHARE + 1e-9


def test_an_arm_pushed_off_its_command_never_gets_a_jump_and_stops_where_it_is(runtime):
    """Shoved at 2 rad/s on joint 2: a tracking fault, the stop from where the arm is, the
    hold until ~/enable, and no trajectory on the way that the JTC could not reach."""
    ctl = ActionController(FR3, RampRuntime(runtime), ActionParams())
    assert ctl.from_measured
    arm = run_until_enabled(ctl)
    n = len(arm.sent)
    arm.push[1] = 2.0
    arm.run(2.0)
    assert ctl.state is State.HOLD and ctl.tracking_faults == 1, ctl.reason()
    assert "tracking lost: fr3_joint2" in ctl.reason() and "~/enable" in ctl.reason()
    chunks = [s for s in arm.sent if s[0] == "chunk"]
    stops = [s for s in arm.sent[n:] if s[0] == "stop"]
    assert len(chunks) >= 10 and len(stops) == 1 and arm.sent[-1][0] == "stop"
    check_all(arm)
    # the stop starts where the arm is and comes to rest near it
    _, sp, qm, qdm = stops[0]
    assert np.max(np.abs(sp.points[-1][1] - qm)) <= np.max(np.abs(qdm)) * 0.5 + 0.01
    np.testing.assert_array_equal(sp.points[-1][2], 0.0)
    d = ctl.diagnostics(arm.t)
    assert d["first_point_stops"] == 0 and d["stops_from_measured"] == 1
    assert 0.0 < d["first_point_acceleration_ratio_max"] <= CHECK_SHARE + 1e-9
    assert any(level == "error" and "tracking lost" in text for level, text in ctl.events)
    # nothing more until ~/enable
    k = len(arm.sent)
    arm.push[:] = 0.0
    arm.run(0.5)
    assert len(arm.sent) == k and ctl.state is State.HOLD


def test_a_small_tracking_error_is_blended_out_within_the_limits(runtime):
    ctl = ActionController(FR3, runtime, ActionParams())
    arm = run_until_enabled(ctl)
    # pushed 0.04 rad off over 0.4 s (a faster push gives the arm momentum, which a start from
    # the measured velocity within the limits has to carry on for a while)
    arm.push[:] = np.where(np.arange(7) % 2, 0.1, -0.1)
    arm.run(0.4)
    arm.push[:] = 0.0
    arm.run(1.0)
    assert ctl.state is State.RUN and ctl.tracking_faults == 0
    check_all(arm)
    assert np.max(np.abs(arm.q - ctl.commanded(arm.t)[0])) < 0.01  # back on its command


def test_a_steady_push_is_followed_or_stopped_never_jumped(runtime):
    ctl = ActionController(FR3, runtime, ActionParams())
    arm = run_until_enabled(ctl)
    arm.push[3] = 0.1  # a gentle, steady push on joint 4
    arm.run(2.0)
    if ctl.state is not State.RUN:
        assert "tracking lost: fr3_joint4" in ctl.reason()
    check_all(arm)


def test_a_stale_input_stop_starts_from_the_measured_state(runtime):
    ctl = ActionController(FR3, runtime, ActionParams())
    arm = run_until_enabled(ctl)
    arm.push[:] = 0.1  # pushed 0.02 rad off in 0.2 s: a little off, within the tolerance
    arm.run(0.2)
    arm.push[:] = 0.0
    arm.run(0.3)
    assert ctl.state is State.RUN
    arm.next_frame = np.inf  # the camera stops: stale latent -> smooth stop
    arm.run(1.5)
    stops = [s for s in arm.sent if s[0] == "stop"]
    assert len(stops) == 1 and ctl.first_point_stops == 0
    _, sp, qm, qdm = stops[0]
    fp, v, a = check_first_segment(sp, qm, qdm)
    assert fp.velocity_fraction <= 1.0 and np.all(a <= LIM.acceleration)


def test_interpolate_from_desired_state_keeps_the_command_start(runtime):
    ctl = ActionController(
        FR3, runtime, ActionParams(interpolate_from_desired_state=True, tracking_tolerance_rad=3.0)
    )
    assert not ctl.from_measured and ctl.measured_state(0.0) is None
    arm = DriftingArm(ctl)
    arm.run(0.3)
    ctl.enable(arm.t)
    arm.blocked = True  # an open-loop replay: the measured arm is not ours
    arm.run(1.0)
    assert ctl.state is State.RUN and ctl.first_point_stops == 0
    assert "first_point_stops" not in ctl.diagnostics(arm.t)
