"""ActionController (the action node's logic) without ROS, on the real default bundle (onnxruntime
CPU) and simulated time: inputs are fed with stamps, inference runs synchronously when a job is
ready, and the "arm" tracks the commands perfectly, so every check is about what the controller
sends."""

import math

import numpy as np
import pytest

from clap_ros.control.trajectory import TrajectoryFollower, TrajectoryRules, validate_points
from clap_ros.control.watchdog import State
from clap_ros.inference.policy import ClapRuntime
from clap_ros.nodes.action_logic import ActionConfig, ActionController
from clap_ros.robots import load_profile

PROFILE = load_profile("fr3")
NAMES = list(PROFILE.joint_names) + list(PROFILE.gripper.joint_names)
LIM = PROFILE.limits


@pytest.fixture(scope="module")
def runtime():
    rt = ClapRuntime("models/default", backend="cpu")
    yield rt
    rt.close()


class NanRuntime:
    """The real runtime whose RF output is poisoned after ``good`` chunks (a diverged model)."""

    def __init__(self, rt, good=2):
        self.rt, self.bundle, self.good = rt, rt.bundle, good

    def act(self, *a):
        out = self.rt.act(*a)
        self.good -= 1
        return out if self.good >= 0 else out * np.nan

    def joint_targets(self, chunk, state):
        return np.asarray(chunk, dtype=np.float64)  # the controller must catch what passes


class Loop:
    """Simulated time for the controller: camera at 15 Hz, joint_states every tick, inference
    delay ``delay`` s. The arm tracks commands perfectly (streamed positions at once, a
    trajectory as the sim driver's JTC interpolates it from the arm's state), optionally seen
    ``lag`` s late (a driver trailing its command); ``stuck`` freezes it (a driver that drops
    our commands)."""

    def __init__(self, ctl, delay=0.03, latent_seed=0, lag=0.0, stamped_late=False):
        self.ctl, self.delay, self.lag = ctl, delay, lag
        # the joint_states carry the time of their measurement (else: of their arrival)
        self.stamped_late = stamped_late
        self.stuck = False
        self.history = []  # (t, q) of the arm, for the lagged measurement
        self.traj = None  # (t_sent, times, positions) being executed
        self.t = 10.0
        self.q = PROFILE.home.copy()
        self.qd = np.zeros(PROFILE.dof)
        self.grip = 1.0
        self.rng = np.random.default_rng(latent_seed)
        b = ctl.runtime.bundle
        self.latent_shape = (b.latent_tokens, b.latent_dim)
        self.next_frame = self.t
        self.latent_on = True
        self.joints_on = True
        self.names = NAMES
        self.arm, self.states, self.trajs, self.grips = [], [], [], []
        self.f2c = []  # frame -> first command latencies the node logs

    def plan(self, tokens=(1, 2, 3, 4)):
        self.ctl.on_plan_tokens(tokens)
        assert self.ctl.on_plan(self.t - 0.05, self.t)

    def follow(self, t):
        if self.traj is None or self.stuck:
            return
        self.q, self.qd = self.traj.sample(t)

    def measured(self, t):
        self.history.append((t, self.q.copy()))
        seen = [q for tq, q in self.history if tq <= t - self.lag + 1e-12]
        return seen[-1] if seen else self.history[0][1]

    def step(self, dt):
        ctl, t = self.ctl, self.t
        self.follow(t)
        if self.joints_on:
            pos = list(self.measured(t)) + [PROFILE.gripper.position_from_command(self.grip)] * 2
            # one position per name (a driver without finger joints sends the arm's only)
            stamp = t - self.lag if self.stamped_late else t
            ctl.on_joint_state(self.names, pos[: len(self.names)], stamp, t)
        if self.latent_on and t >= self.next_frame:
            self.next_frame += 1 / 15
            ctl.on_latent(self.rng.standard_normal(self.latent_shape).astype(np.float32), t, t)
            self.plan()  # a planner keeps its plan fresh too
        job = ctl.take_job()
        if job is not None:
            ctl.infer_once(job, lambda: t + self.delay)
        out = ctl.tick(t)
        self.states.append(out.state)
        if out.arm is not None:
            if not self.stuck:
                self.q = out.arm.copy()
            self.arm.append((t, out.arm.copy()))
        if out.trajectory is not None:
            self.trajs.append((t, out.trajectory))
            pts = [(p[0], list(p[1]), list(p[2])) for p in out.trajectory.points]
            # executed as the sim driver's JTC does: from the arm's state, splines
            self.traj = TrajectoryFollower(PROFILE, self.q)
            self.traj.set_trajectory(
                out.trajectory.joint_names, pts, now_s=t, measured=(self.q, self.qd)
            )
        if out.gripper is not None:
            self.grips.append(out.gripper)
            self.grip = out.gripper
        lat = ctl.pop_frame_to_command()
        if lat is not None:
            self.f2c.append(lat)
        self.t += dt
        return out

    def run(self, seconds, dt=None):
        dt = dt or self.ctl.cfg.tick_period_s
        for _ in range(int(round(seconds / dt))):
            self.step(dt)


def forward(runtime, **kw):
    cfg = ActionConfig(command_mode="forward_position", command_rate_hz=500.0, **kw)
    return ActionController(PROFILE, runtime, cfg)


def assert_within_limits(arm, dt, margin=0.02):
    q = np.array([a for _, a in arm])
    assert np.all(q >= LIM.lower + margin - 1e-9) and np.all(q <= LIM.upper - margin + 1e-9)
    v = np.diff(q, axis=0) / dt
    assert np.all(np.abs(v) <= LIM.velocity * (1 + 1e-6))
    a = np.diff(v, axis=0) / dt
    assert np.all(np.abs(a) <= LIM.acceleration * (1 + 1e-3) + 1e-6), np.abs(a).max()
    return q, v, a


def test_holds_until_enabled_fresh_and_planned(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    # Inputs without a plan and without enable: nothing is commanded.
    for _ in range(50):
        loop.ctl.on_joint_state(NAMES, list(loop.q) + [0.04, 0.04], loop.t, loop.t)
        loop.ctl.on_latent(np.zeros(loop.latent_shape, np.float32), loop.t, loop.t)
        assert loop.ctl.tick(loop.t).arm is None
        loop.t += 0.002
    assert ctl.state is State.HOLD and "not enabled" in ctl.reason()
    ctl.enable(loop.t)
    out = ctl.tick(loop.t)
    assert out.arm is None and ctl.state is State.HOLD
    assert "no plan received yet" in ctl.reason()
    # A plan without its tokens does not count.
    assert not ctl.on_plan(loop.t, loop.t)
    loop.plan()
    out = ctl.tick(loop.t)
    assert ctl.state is State.RUN
    np.testing.assert_array_equal(out.arm, PROFILE.home)  # first command = measured position


def test_run_streams_commands_within_limits(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.plan()
    loop.run(0.05)
    ctl.enable(loop.t)
    loop.run(2.0)
    assert ctl.state is State.RUN
    assert ctl.inferences >= 20 and ctl.inference_errors == 0 and ctl.tracking_faults == 0
    assert ctl.queue.accepted >= 20
    np.testing.assert_allclose(loop.arm[0][1], PROFILE.home, atol=0)
    q, v, a = assert_within_limits(loop.arm, 0.002)
    assert np.max(np.abs(q - PROFILE.home)) > 1e-3  # the policy really moves the arm
    assert loop.grips and all(0.0 <= g <= 1.0 for g in loop.grips)
    d = ctl.diagnostics(loop.t)
    assert d["state"] == "run" and d["chunks_accepted"] == ctl.queue.accepted
    assert 0.0 < d["frame_to_chunk_delay_s"] < 0.1
    # one frame -> first command figure per accepted chunk, read once: within a tick of the
    # frame (this loop infers synchronously), except the first, from a frame seen before enable
    assert len(loop.f2c) == ctl.queue.accepted
    assert 0.0 <= loop.f2c[0] <= 0.06 and all(0.0 <= x <= 0.002 + 1e-9 for x in loop.f2c[1:])
    assert ctl.pop_frame_to_command() is None


def stopped_smoothly(loop, start_index):
    q, v, a = assert_within_limits(loop.arm[start_index:], 0.002)
    assert np.all(np.abs(v[-1]) < 1e-3)  # the last command is at rest
    # A stop brakes where the arm is: from at most the velocity limit at >= 1/4 of the
    # acceleration limit (the filter brakes at half), it travels less than v^2 / (2 a / 4).
    stop_at = next(i for i, s in enumerate(loop.states) if s is State.STOPPING)
    t_stop = loop.t - (len(loop.states) - stop_at) * 0.002
    q_stop = [a for t, a in loop.arm if t >= t_stop - 1e-9]
    travel = np.abs(q_stop[-1] - q_stop[0])
    assert np.all(travel <= LIM.velocity**2 / (0.5 * LIM.acceleration) + 1e-3), travel
    return q


def test_model_nan_output_stops_smoothly_and_holds_until_enabled(runtime):
    ctl = ActionController(
        PROFILE, NanRuntime(runtime, good=3), ActionConfig(command_mode="forward_position")
    )
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(1.0)
    assert ctl.inference_errors >= 1
    assert State.STOPPING in loop.states and loop.states[-1] is State.HOLD
    assert "NaN" in ctl.watchdog.fault and "NaN" in ctl.reason()
    assert any("model fault" in text for _, text in ctl.events)
    stopped_smoothly(loop, 0)
    n = len(loop.arm)
    loop.run(0.3)  # inputs stay fresh, but a model fault needs ~/enable
    assert ctl.state is State.HOLD and len(loop.arm) == n
    ctl.enable(loop.t)
    loop.step(0.002)
    assert ctl.state is State.RUN
    np.testing.assert_array_equal(loop.arm[-1][1], loop.arm[n - 1][1])


def test_nan_latent_is_a_model_fault_from_the_real_runtime(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(0.3)
    assert ctl.state is State.RUN
    bad = np.full(loop.latent_shape, np.nan, np.float32)
    ctl.on_latent(bad, loop.t, loop.t)
    loop.latent_on = False
    loop.plan()
    job = ctl.take_job()
    assert job is not None and not ctl.infer_once(job, lambda: loop.t)
    assert "non-finite" in ctl.watchdog.fault
    loop.latent_on = True
    loop.run(1.0)
    assert loop.states[-1] is State.HOLD
    stopped_smoothly(loop, 0)


def test_stale_latent_stops_then_resumes_from_measured(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(1.0)
    assert ctl.state is State.RUN
    loop.latent_on = False
    loop.run(1.5)
    assert loop.states[-1] is State.HOLD
    assert "latent is stale" in ctl.watchdog.transitions[-2].reason
    stopped_smoothly(loop, 0)
    held = loop.q.copy()
    n = len(loop.arm)
    loop.run(0.2)
    assert len(loop.arm) == n  # HOLD sends nothing: the forward controller keeps it
    loop.latent_on = True
    loop.next_frame = loop.t
    loop.step(0.002)
    assert ctl.state is State.RUN  # still enabled: resumes when fresh
    np.testing.assert_array_equal(loop.arm[-1][1], held)


def test_missing_joint_states_and_stop_service(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(0.5)
    loop.joints_on = False
    loop.run(1.2)
    assert loop.states[-1] is State.HOLD
    assert "joint_states is stale" in ctl.watchdog.transitions[-2].reason
    loop.joints_on = True
    loop.run(0.3)
    assert ctl.state is State.RUN
    ctl.stop(loop.t)
    loop.run(1.0)
    assert State.STOPPING in loop.states[-500:] and ctl.state is State.HOLD
    assert not ctl.watchdog.enabled and "stop requested" in ctl.watchdog.transitions[-2].reason
    stopped_smoothly(loop, 0)


def test_wrong_joint_names_hold_with_reason(runtime):
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.names = ["panda_joint%d" % i for i in range(1, 8)] + ["a", "b"]
    loop.plan()
    ctl.enable(loop.t)
    loop.run(0.5)
    assert not loop.arm and ctl.state is State.HOLD
    assert "missing ['fr3_joint1'" in ctl.joint_error
    assert "joint_states rejected" in ctl.reason() and "panda_joint1" in ctl.reason()
    assert any("ignoring /joint_states" in t for _, t in ctl.events)
    # The right names fix it.
    loop.names = NAMES
    loop.run(0.1)
    assert ctl.state is State.RUN and ctl.joint_error == ""


def test_joint_trajectory_mode_sends_valid_trajectories_and_a_stop(runtime):
    cfg = ActionConfig(command_mode="joint_trajectory", supervision_rate_hz=100.0)
    ctl = ActionController(PROFILE, runtime, cfg)
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(1.5)
    chunks = [tr for _, tr in loop.trajs if tr.kind == "chunk"]
    assert len(chunks) >= 10 and not loop.arm
    assert ctl.state is State.RUN and ctl.tracking_faults == 0
    assert len(loop.f2c) == len(chunks) and all(0.0 <= x <= 0.01 + 1e-9 for x in loop.f2c)
    d = ctl.diagnostics(loop.t)
    assert 1.0 <= d["trajectory_time_scale_median"] <= d["trajectory_time_scale_max"]
    assert d["trajectory_time_scale_max"] == pytest.approx(
        max(tr.time_scale for tr in chunks[-100:]), abs=1e-3
    )
    rules = TrajectoryRules()
    for tr in chunks:
        assert tr.joint_names == list(PROFILE.joint_names)
        times = [p[0] for p in tr.points]
        assert times[0] > 0 and np.all(np.diff(times) > 0)
        np.testing.assert_array_equal(tr.points[-1][2], 0.0)
        validate_points(tr.joint_names, tr.points, PROFILE, PROFILE.home, rules)
        Q = np.array([p[1] for p in tr.points])
        assert np.all(Q >= LIM.lower + 0.02 - 1e-9) and np.all(Q <= LIM.upper - 0.02 + 1e-9)
        assert all(np.all(np.abs(p[2]) <= LIM.velocity + 1e-9) for p in tr.points)
    # The first trajectory starts where the arm is (measured at enable).
    first_t, first = loop.trajs[0]
    dist = np.max(np.abs(first.points[0][1] - PROFILE.home))
    assert dist <= np.max(LIM.velocity) * first.points[0][0]
    loop.latent_on = False
    loop.run(1.5)
    stops = [tr for _, tr in loop.trajs if tr.kind == "stop"]
    assert len(stops) == 1 and ctl.state is State.HOLD
    sp = stops[0]
    validate_points(sp.joint_names, sp.points, PROFILE, PROFILE.home, rules)
    np.testing.assert_array_equal(sp.points[-1][2], 0.0)


def test_bad_inputs_are_rejected_with_a_reason(runtime):
    ctl = forward(runtime)
    with pytest.raises(ValueError, match="latent must be"):
        ctl.on_latent(np.zeros((3, 3), np.float32), 0.0, 0.0)
    with pytest.raises(ValueError, match="tokens"):
        ctl.on_plan_tokens([1, 2])
    with pytest.raises(ValueError, match="command_mode"):
        ActionController(PROFILE, runtime, ActionConfig(command_mode="velocity"))
    with pytest.raises(ValueError, match="do not match robot profile"):
        ActionController(load_profile("panda"), runtime, ActionConfig())
    assert not ctl.on_joint_state(NAMES, [math.nan] * len(NAMES), 0.0, 0.0)
    assert "non-finite" in ctl.joint_error


@pytest.mark.parametrize(
    "mode,desired,lag",
    [
        ("forward_position", False, 0.08),
        ("joint_trajectory", True, 0.08),
        ("joint_trajectory", False, 0.02),
    ],
)
def test_a_driver_trailing_its_command_is_not_a_tracking_fault(runtime, mode, desired, lag):
    # 80 ms behind the command, seen through fresh joint_states: inside the lag allowance.
    # Trajectories from the measured state (joint_trajectory, the JTC's default) start where the
    # arm is now, extrapolated from a sample stamped when it was measured: the joint states
    # must carry the measurement's time and be recent (20 ms old here, DDS under load).
    cfg = ActionConfig(command_mode=mode, interpolate_from_desired_state=desired)
    ctl = ActionController(PROFILE, runtime, cfg)
    loop = Loop(ctl, lag=lag, stamped_late=mode == "joint_trajectory" and not desired)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(2.0)
    assert ctl.state is State.RUN and ctl.tracking_faults == 0
    d = ctl.diagnostics(loop.t)
    assert 0.0 <= d["tracking_error_rad"] < ctl.cfg.tracking_tolerance_rad + 0.3


@pytest.mark.parametrize("mode", ["forward_position", "joint_trajectory"])
def test_arm_not_following_stops_where_it_is_and_holds_until_enabled(runtime, mode):
    ctl = ActionController(PROFILE, runtime, ActionConfig(command_mode=mode))
    loop = Loop(ctl)
    loop.plan()
    ctl.enable(loop.t)
    loop.run(0.5)
    assert ctl.state is State.RUN
    # A collision shoves joint 2 by 0.3 rad (0.5 in joint_trajectory mode: there each new
    # trajectory starts where the arm is and the command leans 30 % towards it, so a shove that
    # the policy's next chunks absorb is no fault) and the driver stops following our commands.
    loop.stuck = True
    loop.q = loop.q.copy()
    loop.q[1] += 0.3 if mode == "forward_position" else 0.5
    held = loop.q.copy()
    n_arm, n_traj = len(loop.arm), len(loop.trajs)
    loop.run(0.05)  # shorter than tracking_persist_s: still running
    assert ctl.state is State.RUN and ctl.tracking_faults == 0
    loop.run(1.0)
    assert ctl.tracking_faults == 1 and ctl.state is State.HOLD
    assert "tracking lost: fr3_joint2" in ctl.reason() and "~/enable" in ctl.reason()
    assert any("tracking lost" in text for level, text in ctl.events if level == "error")
    if mode == "forward_position":
        # The command glides to where the arm is (not along the command it never followed),
        # within every limit (no jump in the stream), and holds there.
        stop_cmds = [(t, q) for t, q in loop.arm[n_arm - 1 :]]
        assert_within_limits(stop_cmds, 0.002)
        np.testing.assert_allclose(stop_cmds[-1][1], held, atol=1e-3)
    else:
        stops = [tr for _, tr in loop.trajs[n_traj:] if tr.kind == "stop"]
        assert len(stops) == 1
        sp = stops[0]
        np.testing.assert_allclose(sp.points[-1][1], held, atol=1e-9)
        np.testing.assert_array_equal(sp.points[-1][2], 0.0)
        # it starts where the arm is (the JTC's start), within the JTC rules and the limits
        validate_points(sp.joint_names, sp.points, PROFILE, held, TrajectoryRules())
        np.testing.assert_allclose(sp.points[0][1], held, atol=1e-6)
        assert all(np.all(np.abs(p[2]) <= LIM.velocity + 1e-9) for p in sp.points)
    # A fault needs ~/enable: fresh inputs alone do not move the arm again.
    loop.stuck = False
    loop.run(0.3)
    assert ctl.state is State.HOLD
    ctl.enable(loop.t)
    loop.run(0.1)
    assert ctl.state is State.RUN


def test_without_finger_joints_the_gripper_state_is_the_last_command(runtime):
    # A driver whose joint_states carry only the arm (e.g. a gripper on its own action server):
    # the state fed to the model takes the opening this node last commanded, not "open".
    ctl = forward(runtime)
    loop = Loop(ctl)
    loop.names = list(PROFILE.joint_names)
    seen = []
    act = runtime.act

    class Spy:
        bundle = runtime.bundle
        joint_targets = staticmethod(runtime.joint_targets)

        @staticmethod
        def act(latent, tokens, state, rng):
            seen.append(float(state[-1]))
            return act(latent, tokens, state, rng)

    ctl.runtime = Spy
    loop.plan()
    ctl.enable(loop.t)
    loop.run(1.0)
    assert loop.grips and len(seen) >= 5
    assert seen[0] == 1.0  # nothing commanded yet: open
    # every later inference saw a gripper opening this node had commanded
    assert all(any(abs(s - g) < 1e-6 for g in loop.grips) for s in seen[1:])  # float32 state
    assert any(abs(s - 1.0) > 1e-3 for s in seen[1:])  # not merely "open" every time
