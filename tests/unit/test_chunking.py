"""ChunkQueue: alignment, blending continuity, rejection, running dry, JTC points (no ROS)."""

import numpy as np
import pytest

from clap_ros.control.chunking import ChunkQueue, bench_stream
from clap_ros.control.trajectory import TrajectoryRules, validate_points
from clap_ros.robots import load_profile

H, CDT = 16, 1.0 / 15.0
EPS = 1e-6


@pytest.fixture(scope="module")
def fr3():
    return load_profile("fr3")


def chunk_of(fn, t0, profile, dim=None):
    """A chunk whose step i holds fn(t0 + i * CDT) added to the home pose (+ gripper 0.5)."""
    ts = t0 + np.arange(H) * CDT
    c = np.tile(profile.home, (H, 1)) + fn(ts)[:, None]
    if dim and dim > profile.dof:
        c = np.hstack([c, 0.5 + 0.3 * np.sin(ts)[:, None]])
    return c


def jump_at(q, t, eps=EPS):
    """Largest change of (q, qd, qdd) across t, sampled eps before and after."""
    a = q.peek(t - eps)
    b = q.peek(t + eps)
    return [float(np.max(np.abs(x - y))) for x, y in zip(a, b)]


def test_blend_keeps_position_velocity_acceleration_continuous(fr3):
    q = ChunkQueue(fr3, dim=fr3.dof + 1, blend_window=0.1)
    q.reset(0.0, np.append(fr3.home, 1.0))
    r = q.push(chunk_of(lambda t: 0.2 * np.sin(2 * t), 0.0, fr3, fr3.dof + 1), 0.0, CDT, 0.05)
    assert r.accepted
    # A second chunk that disagrees: 5 cm-scale offset and a different velocity, arriving late.
    r = q.push(
        chunk_of(lambda t: 0.05 + 0.2 * np.sin(2 * t) + 0.3 * t, 0.3, fr3, fr3.dof + 1),
        0.3,
        CDT,
        0.37,
    )
    assert r.accepted and r.delay == pytest.approx(0.07)
    old = ChunkQueue(fr3, dim=fr3.dof + 1)
    old.reset(0.0, np.append(fr3.home, 1.0))
    old.push(chunk_of(lambda t: 0.2 * np.sin(2 * t), 0.0, fr3, fr3.dof + 1), 0.0, CDT, 0.05)
    # The new chunk does change where the arm goes ...
    assert np.max(np.abs(q.peek(0.6)[0] - old.peek(0.6)[0])) > 0.04
    # ... but nothing jumps at the blend start, inside it, at its end, or at a chunk step.
    for t in (0.05, 0.37, 0.42, 0.47, 0.3 + 3 * CDT):
        dq, dqd, dqdd = jump_at(q, t)
        assert dq < 1e-4 and dqd < 1e-3 and dqdd < 0.05, (t, dq, dqd, dqdd)
    # The velocity/acceleration reported are the derivatives of the positions streamed.
    ts = np.arange(0.0, 1.2, 0.001)
    S = [q.peek(t) for t in ts]
    Q = np.array([s[0] for s in S])
    QD = np.array([s[1] for s in S])
    QDD = np.array([s[2] for s in S])
    np.testing.assert_allclose(np.diff(Q, axis=0) / 0.001, 0.5 * (QD[1:] + QD[:-1]), atol=2e-3)
    np.testing.assert_allclose(np.diff(QD, axis=0) / 0.001, 0.5 * (QDD[1:] + QDD[:-1]), atol=0.5)


def test_late_chunk_keeps_its_own_time_axis_and_drops_past_steps(fr3):
    q = ChunkQueue(fr3, blend_window=0.05, max_delay=0.5)
    q.reset(0.0, fr3.home)
    # Linear in time, so its C2 spline is exact: value at t is home + 0.1 t.
    r = q.push(chunk_of(lambda t: 0.1 * t, 0.0, fr3), 0.0, CDT, 0.2)
    assert r.accepted and r.dropped_steps == 3  # steps at 0, 1/15, 2/15 < 0.2 s
    assert q.dropped_steps == 3
    before = q.sample(0.2)[0].copy()
    np.testing.assert_allclose(before, fr3.home, atol=1e-12)  # hand-over starts where we are
    after = q.sample(0.3)[0]
    # Step i is executed at t0 + i*dt (aligned to its frame), not shifted by the 0.2 s delay.
    np.testing.assert_allclose(after, fr3.home + 0.1 * 0.3, atol=1e-12)


def test_stale_and_bad_chunks_are_rejected_and_change_nothing(fr3):
    q = ChunkQueue(fr3, max_delay=0.3)
    q.reset(0.0, fr3.home)
    assert q.push(chunk_of(lambda t: 0.1 * t, 1.0, fr3), 1.0, CDT, 1.05).accepted
    ref = q.peek(1.4)
    cases = [
        (chunk_of(lambda t: 0 * t, 0.5, fr3), 0.5, CDT, 0.9, "stale"),  # 0.4 s late
        (chunk_of(lambda t: 0 * t, 0.0, fr3), 0.0, CDT, 1.1, "stale"),  # all past, too
        (chunk_of(lambda t: 0 * t, 0.9, fr3), 0.9, CDT, 1.1, "older"),  # older frame
        (chunk_of(lambda t: 0 * t, 1.2, fr3)[:, :6], 1.2, CDT, 1.25, "shape"),  # wrong width
        (np.full((H, fr3.dof), np.nan), 1.2, CDT, 1.25, "NaN"),
        (chunk_of(lambda t: 0 * t, 1.2, fr3), 1.2, 0.0, 1.25, "timing"),
    ]
    for chunk, t0, dt, t_av, why in cases:
        r = q.push(chunk, t0, dt, t_av)
        assert not r.accepted and why in r.reason, (why, r.reason)
    q2 = ChunkQueue(fr3, max_delay=5.0)
    q2.reset(0.0, fr3.home)
    r = q2.push(chunk_of(lambda t: 0 * t, 0.0, fr3), 0.0, CDT, 2.0)
    assert not r.accepted and "already in the past" in r.reason
    assert q.rejected == len(cases) and q.accepted == 1
    for a, b in zip(ref, q.peek(1.4)):
        np.testing.assert_array_equal(a, b)


def test_running_dry_decelerates_smoothly_to_a_hold(fr3):
    q = ChunkQueue(fr3, blend_window=0.05)
    q.reset(0.0, fr3.home)
    # Moving at 1.5 rad/s on joint 1 at the chunk's end.
    assert q.push(chunk_of(lambda t: 1.5 * t, 0.0, fr3), 0.0, CDT, 0.01).accepted
    t_end = (H - 1) * CDT
    dq, dqd, dqdd = jump_at(q, t_end)
    assert dq < 1e-5 and dqd < 1e-4 and dqdd < 0.05
    ts = np.arange(t_end, q.rest_time() + 0.5, 0.001)
    S = [tuple(x.copy() for x in q.sample(t)) for t in ts]
    V = np.array([s[1][0] for s in S])
    A = np.array([s[2][0] for s in S])
    P = np.array([s[0][0] for s in S])
    assert V[0] == pytest.approx(1.5, abs=1e-6)
    assert np.all(np.diff(V) <= 1e-12) and np.all(V >= -1e-12)  # slows down, never reverses
    assert np.max(np.abs(A)) <= fr3.limits.acceleration[0] + 1e-9
    assert np.max(np.abs(np.diff(A)) / 0.001) <= fr3.limits.jerk[0] * 1.01
    assert V[-1] == 0.0 and P[-1] == P[-2] and q.running_dry(ts[-1])


def test_running_dry_with_joints_at_different_speeds(fr3):
    q = ChunkQueue(fr3)
    q.reset(0.0, fr3.home)
    speeds = np.array([1.5, -0.2, 0.8, 0.05, -2.0, 0.0, 1.0])
    ts = np.arange(H) * CDT
    assert q.push(fr3.home + ts[:, None] * speeds, 0.0, CDT, 0.01).accepted
    t_end = (H - 1) * CDT
    S = [q.peek(t) for t in np.arange(t_end, q.rest_time() + 0.2, 0.001)]
    Q = np.array([s[0] for s in S])
    V = np.array([s[1] for s in S])
    np.testing.assert_allclose(V[0], speeds, atol=1e-6)
    # Every joint slows monotonically to rest and stays where it stopped.
    assert np.all(np.diff(V * np.sign(speeds), axis=0) <= 1e-12)
    assert np.all(V * np.sign(speeds) >= -1e-12)
    np.testing.assert_array_equal(V[-1], 0.0)
    np.testing.assert_allclose(Q[-1], Q[-50], atol=1e-12)
    assert np.all(np.abs(Q[-1] - Q[0]) < np.abs(speeds) * 0.6 + 1e-9)  # no runaway polynomial


def test_sample_reuses_its_buffers(fr3):
    q = ChunkQueue(fr3)
    q.reset(0.0, fr3.home)
    q.push(chunk_of(lambda t: 0.1 * np.sin(t), 0.0, fr3), 0.0, CDT, 0.02)
    a = q.sample(0.03)
    b = q.sample(0.04)
    assert all(x is y for x, y in zip(a, b))
    assert not np.array_equal(q.peek(0.03)[0], q.peek(0.5)[0])


def test_trajectory_points_are_jtc_valid(fr3):
    q = ChunkQueue(fr3)
    q.reset(0.0, fr3.home)
    q.push(chunk_of(lambda t: 0.3 * np.sin(t), 0.0, fr3), 0.0, CDT, 0.05)
    pts = q.trajectory_points(0.1, horizon=0.8, period=0.05)
    assert pts[0][0] == pytest.approx(0.05) and len(pts) == 16
    assert np.all(np.diff([p[0] for p in pts]) > 0)
    assert np.all(pts[-1][2] == 0.0) and np.any(pts[5][2] != 0.0)
    validated = validate_points(fr3.joint_names, pts, fr3, fr3.home, TrajectoryRules())
    np.testing.assert_allclose(validated[3].positions, q.peek(0.1 + 0.2)[0], atol=1e-12)
    # After the queue comes to rest the points stop early instead of padding the horizon.
    pts = q.trajectory_points(q.rest_time() - 0.02, horizon=2.0, period=0.05)
    assert len(pts) == 1 and np.all(pts[0][2] == 0.0)


def test_trajectory_points_equal_point_by_point_sampling_during_blends(fr3):
    """The vectorised look-ahead gives exactly what peek() gives at each point's time, on the
    spline, inside several cross-fades at once and on the stop tail (gripper column too)."""
    dim = fr3.dof + 1
    q = ChunkQueue(fr3, dim=dim, blend_window=0.2)
    q.reset(0.0, np.concatenate([fr3.home, [1.0]]))
    for k, t0 in enumerate((0.0, 0.07, 0.13, 0.2)):
        amp = 0.1 + 0.05 * k
        q.push(chunk_of(lambda t, a=amp: a * np.sin(3 * t), t0, fr3, dim), t0, CDT, t0 + 0.04)
    for t_now in (0.05, 0.15, 0.21, 0.9, q.rest_time() - 0.3):
        pts = q.trajectory_points(t_now, horizon=1.5, period=0.02)
        for j, (tf, pos, vel) in enumerate(pts):
            ref_q, ref_qd, _ = q.peek(t_now + tf)
            assert np.array_equal(pos, ref_q[: fr3.dof])
            if j < len(pts) - 1:
                assert np.array_equal(vel, ref_qd[: fr3.dof])
    # the last window ran into the stop tail and ended where the queue comes to rest
    assert t_now + pts[-1][0] >= q.rest_time() and np.all(pts[-1][2] == 0.0)


def test_bad_configuration(fr3):
    with pytest.raises(ValueError, match="blend_window"):
        ChunkQueue(fr3, blend_window=0.0)
    with pytest.raises(ValueError, match="dim"):
        ChunkQueue(fr3, dim=3)
    q = ChunkQueue(fr3)
    with pytest.raises(RuntimeError, match="reset"):
        q.sample(0.0)
    assert not q.push(np.zeros((H, fr3.dof)), 0.0, CDT, 0.0).accepted


def test_bench_stream_runs_paced(fr3):
    r = bench_stream(rate_hz=200.0, seconds=0.5, robot="fr3", chunk_rate_hz=20.0)
    assert r["ticks"] == 100
    # Paced by absolute deadlines: never faster than the rate. (How close it stays under load is
    # a benchmark figure, not a test.)
    assert 0.0045 <= r["period_median_s"] <= 0.05
    assert r["chunks_accepted"] >= 3 and r["chunks_accepted"] == r["chunks_pushed"]
    assert 0.0 <= r["period_error_median_s"] <= r["period_error_p99_s"] <= r["period_error_max_s"]


def test_prepare_outside_commit_inside_starts_blend_no_earlier_than_now(fr3):
    q = ChunkQueue(fr3, blend_window=0.1)
    q.reset(0.0, fr3.home)
    prepared = q.prepare(chunk_of(lambda t: 0.05 + 0 * t, 0.0, fr3), 0.0, CDT, 0.02)
    assert prepared.reason == "" and q.accepted == 0  # nothing changed yet
    streamed = q.sample(0.03)[0].copy()  # the loop went on meanwhile
    assert q.commit(prepared, t_now=0.03).accepted
    np.testing.assert_allclose(q.peek(0.03)[0], streamed, atol=1e-15)
    dq, dqd, dqdd = jump_at(q, 0.03)
    assert dq < 1e-4 and dqd < 1e-3 and dqdd < 0.05
    np.testing.assert_allclose(q.peek(0.2)[0], fr3.home + 0.05, atol=1e-12)
    bad = q.prepare(np.zeros((H, 3)), 0.1, CDT, 0.12)
    r = q.commit(bad)
    assert not r.accepted and "shape" in r.reason and q.rejected == 1


def test_streamed_chunks_through_the_safety_filter_stay_within_limits(fr3):
    """The forward_position pipeline: queue.sample -> SafetyFilter, chunks arriving every 0.2 s
    with 40-80 ms measured delays and disagreeing with each other."""
    from clap_ros.control.safety import SafetyFilter

    dt = 0.002
    rng = np.random.default_rng(3)
    q = ChunkQueue(fr3, blend_window=0.2)
    q.reset(0.0, fr3.home)
    f = SafetyFilter(fr3, dt=dt)
    f.reset(fr3.home)
    out, ref = [], []
    next_frame = 0.0
    for k in range(1500):
        t = k * dt
        if t >= next_frame + 0.06:
            off = 0.01 * rng.standard_normal(fr3.dof)
            c = chunk_of(lambda s: 0.0 * s, next_frame, fr3)
            c += off + 0.3 * np.sin(next_frame + np.arange(H) * CDT)[:, None]
            assert q.push(c, next_frame, CDT, t).accepted
            next_frame += 0.2
        r = q.sample(t)[0]
        ref.append(r.copy())
        out.append(f.filter(r).q.copy())
    Q = np.array(out)
    lim = fr3.limits
    V = np.diff(Q, axis=0) / dt
    A = np.diff(V, axis=0) / dt
    assert np.max(np.abs(V) / lim.velocity) <= 1 + 1e-6
    assert np.max(np.abs(A) / lim.acceleration) <= 1 + 1e-6
    assert np.max(np.abs(np.diff(A, axis=0) / dt) / lim.jerk) <= 1 + 1e-6
    # A 0.2 s cross-fade of ~1 cm disagreements stays within the acceleration limit, so the
    # filter passes the blended reference (almost) unchanged.
    assert np.max(np.abs(Q - np.array(ref))) < 1e-3, f.counts
