"""The action controller (clap_ros.runtime.action_core, the action node's logic) fed fuzzed inputs
while it runs on the real default bundle: garbage joint states, latents, plan tokens and plan stamps
arrive between good ones, in any order. Whatever arrives:

* no input method raises anything but a ValueError that says why (the node catches those), and a
  refused joint state is never a measurement (``joint_error`` says why, a counter moves);
* every command is finite and inside the position limits, consecutive streamed commands never
  jump, every trajectory is one the JointTrajectoryController accepts;
* log events and diagnostics stay short.
"""

import math

import numpy as np
import pytest
from fuzz_support import FR3, MAX_TEXT, ODD_FLOATS, any_float, fuzz_settings, joint_states
from hypothesis import given, strategies as st

from clap_ros.control.trajectory import TrajectoryFollower, TrajectoryRules, validate_points
from clap_ros.control.watchdog import State
from clap_ros.nodes.action_logic import ActionConfig, ActionController

LO, HI = FR3.limits.lower, FR3.limits.upper
NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)


@pytest.fixture(scope="module")
def runtime():
    from clap_ros.inference.policy import ClapRuntime

    rt = ClapRuntime("models/default", backend="cpu")
    yield rt
    rt.close()


def latents(shape):
    good = st.builds(
        lambda s: np.random.default_rng(s).standard_normal(shape).astype(np.float32),
        st.integers(0, 2**32 - 1),
    )
    return st.one_of(
        good,
        st.builds(
            lambda a, v: np.where(np.arange(a.size).reshape(shape) == 3, v, a),
            good,
            st.sampled_from(ODD_FLOATS),
        ),
        st.builds(
            lambda s: np.zeros(s, np.float32), st.lists(st.integers(0, 20), max_size=3).map(tuple)
        ),
        st.sampled_from([[], "latent", None, [[1.0, 2.0], [3.0]], np.zeros(shape, np.complex64)]),
    )


def tokens():
    return st.one_of(
        st.lists(st.integers(0, 63), min_size=4, max_size=4),
        st.lists(st.integers(-(2**40), 2**40), max_size=6),
        st.lists(any_float(), max_size=5),
        st.sampled_from([[], None, "abcd", [[1, 2], [3, 4]]]),
    )


def events(shape):
    return st.lists(
        st.one_of(
            st.tuples(st.just("js"), joint_states(FR3)),
            st.tuples(st.just("latent"), latents(shape), st.sampled_from([0.0, -0.05, -5.0, 5.0])),
            st.tuples(st.just("tokens"), tokens()),
            st.tuples(st.just("plan"), st.sampled_from([0.0, -0.05, math.nan, math.inf, -1e18])),
            st.tuples(st.just("good")),
            st.tuples(st.just("tick"), st.integers(1, 30)),
            st.tuples(st.just("service"), st.sampled_from(["enable", "stop", "disable"])),
        ),
        min_size=1,
        max_size=25,
    )


class Bench:
    """A perfectly tracking arm around an ActionController on simulated time."""

    def __init__(self, ctl):
        self.ctl = ctl
        self.t = 10.0
        self.q = FR3.home.copy()
        self.qd = np.zeros(FR3.dof)
        self.last_arm = None
        self.traj = None
        b = ctl.runtime.bundle
        self.shape = (b.latent_tokens, b.latent_dim)
        self.rng = np.random.default_rng(0)
        self.rules = TrajectoryRules(position_margin=0.0)

    def good(self):
        ctl, t = self.ctl, self.t
        assert ctl.on_joint_state(NAMES, list(self.q) + [0.04, 0.04], t, t)
        ctl.on_latent(self.rng.standard_normal(self.shape).astype(np.float32), t, t)
        ctl.on_plan_tokens([1, 2, 3, 4])
        assert ctl.on_plan(t, t)

    def follow(self):
        """The JTC's interpolation of the trajectory being executed (the sim driver's
        TrajectoryFollower: from the measured state, splines through the points)."""
        if self.traj is not None:
            self.q, self.qd = self.traj.sample(self.t)

    def tick(self, n, feed=True):
        ctl = self.ctl
        for _ in range(n):
            self.follow()
            if feed:
                ctl.on_joint_state(NAMES, list(self.q) + [0.04, 0.04], self.t, self.t)
            job = ctl.take_job()
            if job is not None:
                ctl.infer_once(job, lambda: self.t + 0.01)
            out = ctl.tick(self.t)
            self.check(out)
            self.t += ctl.cfg.tick_period_s

    def check(self, out):
        ctl = self.ctl
        m = ctl.cfg.position_margin
        if out.arm is not None:
            q = np.array(out.arm)
            assert q.shape == (FR3.dof,) and np.all(np.isfinite(q)), q
            assert np.all(q >= LO + m - 1e-9) and np.all(q <= HI - m + 1e-9), q
            if self.last_arm is not None:
                step = np.max(np.abs(q - self.last_arm))
                assert step <= ctl.filter.max_step + 1e-9, "streamed command jumped %.4f rad" % step
            self.last_arm = q.copy()
            self.qd = np.zeros(FR3.dof)
            self.q = q.copy()
        if out.trajectory is not None:
            tr = out.trajectory
            assert list(tr.joint_names) == list(FR3.joint_names)
            pts = [(float(p[0]), list(p[1]), list(p[2])) for p in tr.points]
            for _, pos, vel in pts:
                assert np.all(np.isfinite(pos)) and np.all(np.isfinite(vel))
            validate_points(tr.joint_names, pts, FR3, self.q, self.rules)  # JTC would accept
            # and the sim driver too (its follower also refuses a spline leaving the limits)
            follower = TrajectoryFollower(FR3, self.q)
            follower.set_trajectory(tr.joint_names, pts, self.t, measured=(self.q, self.qd))
            self.traj = follower
        if out.gripper is not None:
            assert math.isfinite(out.gripper) and 0.0 <= out.gripper <= 1.0
        if out.state is State.HOLD:
            self.last_arm = None  # a new run restarts from the measured pose


def apply(bench, ev):
    ctl, t = bench.ctl, bench.t
    kind = ev[0]
    if kind == "js":
        names, pos, _ = ev[1]
        before = ctl.measured()
        refused = ctl.inputs.counters["joint_states_refused"]
        ok = ctl.on_joint_state(names, pos, t, t)
        assert isinstance(ok, bool)
        if ok:
            assert ctl.joint_error == ""

        else:
            assert ctl.joint_error and len(ctl.joint_error) < MAX_TEXT, ctl.joint_error
            assert ctl.inputs.counters["joint_states_refused"] == refused + 1
            after = ctl.measured()
            assert (before is None and after is None) or np.array_equal(before, after)
    elif kind == "latent":
        try:
            ctl.on_latent(ev[1], t + ev[2], t)
        except ValueError as e:
            assert str(e) and len(str(e)) < MAX_TEXT
    elif kind == "tokens":
        try:
            ctl.on_plan_tokens(ev[1])
        except ValueError as e:
            assert str(e) and len(str(e)) < MAX_TEXT
    elif kind == "plan":
        assert isinstance(ctl.on_plan(t + ev[1], t), bool)
    elif kind == "good":
        bench.good()
    elif kind == "tick":
        bench.tick(ev[1], feed=False)
    else:
        getattr(ctl, ev[1])(t)


def run_scenario(runtime, mode, evs):
    ctl = ActionController(FR3, runtime, ActionConfig(command_mode=mode))
    bench = Bench(ctl)
    bench.good()
    ctl.enable(bench.t)
    for _ in range(6):
        bench.good()
        bench.tick(3 if mode == "joint_trajectory" else 15)
    for ev in evs:
        apply(bench, ev)
        if ev[0] not in ("tick",):
            bench.tick(1, feed=False)
    # Garbage only from here: the arm must come to rest and hold (joint_states go stale).
    for _ in range(120 if mode == "joint_trajectory" else 600):
        bench.tick(1, feed=False)
    assert ctl.state is State.HOLD, (ctl.state, ctl.reason())
    d = ctl.diagnostics(bench.t)
    for k, v in d.items():
        assert len(str(v)) < MAX_TEXT, (k, len(str(v)))
    for level, text in ctl.events:
        assert len(text) < MAX_TEXT, (level, text[:200])
    return ctl


@fuzz_settings(40, shrink=False)
@given(data=st.data())
def test_trajectory_mode_survives_garbage_and_holds(runtime, data):
    ctl = run_scenario(runtime, "joint_trajectory", data.draw(events((16, 64))))
    assert ctl.trajectories >= 1


@fuzz_settings(15, shrink=False)
@given(data=st.data())
def test_forward_mode_survives_garbage_and_holds(runtime, data):
    ctl = run_scenario(runtime, "forward_position", data.draw(events((16, 64))))
    assert ctl.commands >= 1


def test_every_joint_listed_twice_is_refused_while_running(runtime):
    """The issue's JointState with every name twice (second copy 0.5 rad away) is refused with a
    reason and a counter, is not a measurement, and no tracking fault follows."""
    ctl = ActionController(FR3, runtime, ActionConfig(command_mode="joint_trajectory"))
    bench = Bench(ctl)
    bench.good()
    ctl.enable(bench.t)
    for _ in range(5):
        bench.good()
        bench.tick(3)
    assert ctl.state is State.RUN
    q = ctl.measured()
    names = NAMES * 2
    pos = list(q) + [0.04, 0.04] + list(q + 0.5) + [0.04, 0.04]
    for _ in range(30):
        assert not ctl.on_joint_state(names, pos, bench.t, bench.t)
        bench.tick(1, feed=False)
    assert "more than once" in ctl.joint_error
    assert ctl.inputs.counters["joint_states_refused"] == 30
    np.testing.assert_array_equal(ctl.measured(), q)
    assert ctl.tracking_faults == 0
    assert ctl.state in (State.STOPPING, State.HOLD)  # joint_states went stale: stop, hold
    assert "joint_states" in ctl.reason()


@pytest.mark.parametrize("which", ["latent", "plan", "joint_states"])
def test_one_future_stamped_input_does_not_wedge_the_arm(runtime, which):
    """A single message stamped an hour ahead (a bad clock, garbage) may be refused, but the good
    messages after it must count again: the arm resumes instead of holding for an hour."""
    ctl = ActionController(FR3, runtime, ActionConfig(command_mode="joint_trajectory"))
    bench = Bench(ctl)
    bench.good()
    ctl.enable(bench.t)
    for _ in range(5):
        bench.good()
        bench.tick(3)
    assert ctl.state is State.RUN
    t = bench.t
    if which == "latent":
        ctl.on_latent(np.zeros(bench.shape, np.float32), t + 3600.0, t)
    elif which == "plan":
        ctl.on_plan_tokens([1, 2, 3, 4])
        ctl.on_plan(t + 3600.0, t)
    else:
        ctl.on_joint_state(NAMES, list(bench.q) + [0.04, 0.04], t + 3600.0, t)
    for _ in range(150):  # 1.5 s of good input
        bench.good()
        bench.tick(1)
    assert ctl.state is State.RUN, ctl.reason()
