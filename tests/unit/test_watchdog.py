"""Watchdog staleness checks and the HOLD / RUN / STOPPING state machine (no ROS)."""

import pytest

from clap_ros.control.watchdog import DEFAULT_THRESHOLDS, State, Watchdog

INPUTS = ("camera", "latent", "plan", "joint_states")


def feed_all(w, now, skip=()):
    for name in INPUTS:
        if name not in skip:
            w.feed(name, now, now)


def running(now=10.0):
    w = Watchdog()
    feed_all(w, now)
    w.enable(now)
    assert w.state is State.RUN
    return w


def test_holds_until_enabled_fresh_and_planned():
    w = Watchdog()
    now = 1.0
    assert w.update(now) is State.HOLD
    assert "no camera received yet" in w.reason and "not enabled" in w.reason
    feed_all(w, now, skip=("plan",))
    assert w.update(now) is State.HOLD
    w.enable(now)
    assert w.state is State.HOLD and "no plan received yet" in w.reason
    w.feed("plan", now)
    assert w.update(now + 0.01) is State.RUN
    assert w.last_transition.target is State.RUN and w.last_transition.reason


@pytest.mark.parametrize("name", INPUTS)
def test_each_stale_input_stops_then_holds_with_reason(name):
    w = running(10.0)
    t = 10.0
    limit = DEFAULT_THRESHOLDS[name]
    # Everything else keeps arriving; only `name` goes quiet.
    while t < 10.0 + limit - 0.02:
        t += 0.01
        feed_all(w, t, skip=(name,))
        assert w.update(t) is State.RUN
    t = 10.0 + limit + 0.01
    feed_all(w, t, skip=(name,))
    assert w.update(t) is State.STOPPING
    tr = w.last_transition
    assert tr.source is State.RUN and tr.target is State.STOPPING
    assert "%s is stale" % name in tr.reason and "limit %.3f s" % limit in tr.reason
    # The node's stop profile finishes; the watchdog holds and keeps saying why.
    w.stop_finished(t + 0.3)
    assert w.state is State.HOLD and name in w.last_transition.reason
    assert w.update(t + 0.31) is State.HOLD


def test_dead_planner_is_a_stale_plan():
    w = running(0.0)
    for k in range(1, 200):  # camera/latent/joint_states at 100 Hz, planner died at t = 0
        t = k * 0.01
        feed_all(w, t, skip=("plan",))
        if w.update(t) is State.STOPPING:
            break
    assert t == pytest.approx(DEFAULT_THRESHOLDS["plan"] + 0.01, abs=0.011)
    assert "plan is stale" in w.reason


def test_missing_joint_states_never_runs():
    w = Watchdog()
    feed_all(w, 0.0, skip=("joint_states",))
    w.enable(0.0)
    for k in range(50):
        feed_all(w, k * 0.02, skip=("joint_states",))
        assert w.update(k * 0.02) is State.HOLD
    assert "no joint_states received yet" in w.reason


def test_model_nan_fault_stops_and_blocks_until_cleared():
    w = running(5.0)
    w.report_fault(5.01, "model output contains NaN")
    assert w.state is State.STOPPING and w.last_transition.reason == "model output contains NaN"
    w.stop_finished(5.2)
    feed_all(w, 5.3)
    assert w.update(5.3) is State.HOLD and "NaN" in w.reason
    w.clear_fault()
    assert w.update(5.31) is State.RUN


def test_disable_and_stop_request_need_enable_to_resume():
    w = running(1.0)
    w.disable(1.1, "disabled by ~/enable false")
    assert w.state is State.STOPPING and "disabled" in w.last_transition.reason
    w.stop_finished(1.3)
    feed_all(w, 1.4)
    assert w.update(1.4) is State.HOLD
    w.enable(1.4)
    assert w.state is State.RUN

    w.request_stop(2.0, "stop requested via ~/stop")
    assert w.state is State.STOPPING and "~/stop" in w.last_transition.reason
    assert not w.enabled
    w.stop_finished(2.2)
    feed_all(w, 2.3)
    assert w.update(2.3) is State.HOLD
    w.enable(2.3)
    assert w.state is State.RUN


def test_stop_completes_before_resume_and_resume_needs_fresh_inputs():
    w = running(0.0)
    assert w.update(0.6) is State.STOPPING  # camera, latent and joint_states went stale
    feed_all(w, 0.65)  # inputs are back mid-stop ...
    assert w.update(0.65) is State.STOPPING  # ... but the stop finishes first
    w.stop_finished(0.8)
    assert w.state is State.HOLD
    # Fresh again (fed at 0.65, joint_states limit 0.2 s): resumes at once.
    assert w.update(0.81) is State.RUN
    assert [t.target for t in w.transitions] == [State.RUN, State.STOPPING, State.HOLD, State.RUN]
    assert all(t.reason for t in w.transitions)


def test_stale_while_holding_stays_hold_and_future_or_bad_stamps():
    w = running(0.0)
    w.feed("camera", 5.0)  # stamp far in the future: clocks disagree
    ok, reasons = w.check(0.01)
    assert not ok and any("in the future" in r for r in reasons)
    w.feed("camera", 0.005)  # older than what we have: ignored, not rewinding
    assert w.age("camera", 5.0) == 0.0
    with pytest.raises(KeyError, match="unknown watchdog input 'lidar'"):
        w.feed("lidar", 0.0)
    with pytest.raises(ValueError, match="not finite"):
        w.feed("camera", float("nan"))
    with pytest.raises(ValueError, match="threshold for 'camera'"):
        Watchdog({"camera": 0.0})
    d = w.diagnostics(0.02)
    assert d["state"] == "run" and d["received_camera"] == 3 and d["age_latent_s"] == 0.02


def test_receive_rates_from_receipt_times():
    w = Watchdog()
    for k in range(100):
        w.feed("camera", k / 30.0, now=k / 30.0 + 0.01)
        if k % 6 == 0:
            w.feed("plan", k / 30.0, now=k / 30.0 + 0.05)
    assert w.rate_hz("camera") == pytest.approx(30.0, rel=1e-6)
    assert w.rate_hz("plan") == pytest.approx(5.0, rel=1e-6)
    assert w.rate_hz("joint_states") == 0.0
    assert w.diagnostics(3.4)["rate_camera_hz"] == 30.0


def test_the_pieces_compose_into_a_jump_free_command_loop():
    """The action node's tick, end to end without ROS: HOLD -> RUN (queue -> filter) -> camera
    goes stale -> STOPPING (StopProfile through the filter) -> HOLD -> resume from the pose."""
    import numpy as np

    from clap_ros.control.chunking import ChunkQueue
    from clap_ros.control.safety import SafetyFilter, StopProfile
    from clap_ros.robots import load_profile

    profile = load_profile("fr3")
    dt, cdt, H = 0.002, 1.0 / 15.0, 16
    w = Watchdog()
    queue = ChunkQueue(profile)
    filt = SafetyFilter(profile, dt=dt)
    measured = profile.home.copy()
    stop = None
    camera_dies_at, camera_back_at = 1.5, 2.5
    out, states = [], []
    w.enable(0.0)
    for k in range(2000):
        now = k * dt
        camera_ok = not camera_dies_at <= now < camera_back_at
        if k % 15 == 0:  # 33 Hz inputs
            if camera_ok:
                w.feed("camera", now)
                w.feed("latent", now)
            w.feed("plan", now)
            w.feed("joint_states", now)
        before = w.state
        state = w.update(now)
        if state is State.RUN and before is State.HOLD:
            queue.reset(now, measured)  # start from where the arm is
            filt.reset(measured)
        if state is State.RUN and camera_ok and k % 50 == 0:  # a chunk every 0.1 s, 40 ms late
            t0 = now - 0.04
            c = profile.home + 0.3 * np.sin(t0 + np.arange(H) * cdt)[:, None] * 0.5
            queue.push(c, t0, cdt, now)
        if state is State.RUN:
            cmd = filt.filter(queue.sample(now)[0]).q
        elif state is State.STOPPING:
            if stop is None:
                stop = StopProfile(profile, filt.q, filt.qd, filt.qdd, now, filt.margin)
            cmd = filt.filter(stop.sample(now)[0]).q
            if stop.done(now) and filt.at_rest(acc_tol=0.05):
                w.stop_finished(now)
                stop = None
        else:
            cmd = filt.hold().q if filt.started else measured
        measured = cmd.copy()  # a perfect position servo
        out.append(cmd.copy())
        states.append(state)
    seq = [t.target for t in w.transitions]
    assert seq == [State.RUN, State.STOPPING, State.HOLD, State.RUN]
    assert "camera is stale" in w.transitions[1].reason
    Q = np.array(out)
    V = np.diff(Q, axis=0) / dt
    A = np.diff(V, axis=0) / dt
    lim = profile.limits
    assert np.max(np.abs(V) / lim.velocity) <= 1 + 1e-6
    assert np.max(np.abs(A) / lim.acceleration) <= 1 + 1e-6
    assert np.max(np.abs(np.diff(A, axis=0) / dt) / lim.jerk) <= 1 + 1e-6
    hold = [i for i, s in enumerate(states) if s is State.HOLD and i > 100]
    assert hold and np.ptp(Q[hold[0] : hold[-1] + 1], axis=0).max() < 1e-6  # still while holding
    assert np.max(np.abs(V[:750])) > 0.05  # it did move before
