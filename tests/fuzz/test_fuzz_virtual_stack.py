"""The three cores on the VirtualStack (what eval-bag offline and eval-sim direct drive) with
fuzzed frames, joint states and instructions mixed into a good stream: every command the stack
sends is one the driver accepts (finite, inside the limits, JTC-valid), refusals are counted, and
once only garbage arrives the arm comes to rest and holds."""

import numpy as np
import pytest
from fuzz_support import (
    FR3,
    MAX_TEXT,
    fuzz_settings,
    image_fields,
    image_ns,
    instructions,
    joint_states,
)
from hypothesis import given, strategies as st

from clap_ros.control.trajectory import TrajectoryRules, validate_points
from clap_ros.control.watchdog import State
from clap_ros.runtime.params import ActionParams, EncoderParams
from clap_ros.runtime.virtual_stack import ARM, GRIPPER, TRAJECTORY, StackParams, VirtualStack

NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)
LO, HI = FR3.limits.lower, FR3.limits.upper


@pytest.fixture(scope="module")
def runtime():
    from clap_ros.inference.policy import ClapRuntime

    rt = ClapRuntime("models/default", backend="cpu")
    yield rt
    rt.close()


class Arm:
    """Follows what the stack sends, as the JTC / a forward controller would."""

    def __init__(self):
        self.q = FR3.home.copy()
        self.traj = None

    def at(self, t):
        if self.traj is not None:
            t0, times, pos = self.traj
            self.q = np.array([np.interp(t - t0, times, pos[:, j]) for j in range(FR3.dof)])
        return self.q

    def take(self, out):
        if out.kind == TRAJECTORY:
            tr = out.value
            pts = [(float(p[0]), list(p[1]), list(p[2])) for p in tr.points]
            validate_points(tr.joint_names, pts, FR3, self.at(out.t), TrajectoryRules())
            self.traj = (
                out.t,
                np.array([0.0] + [p[0] for p in pts]),
                np.vstack([self.at(out.t)] + [p[1] for p in pts]),
            )
        elif out.kind == ARM:
            q = np.asarray(out.value)
            assert np.all(np.isfinite(q)) and np.all(q >= LO) and np.all(q <= HI)
            self.traj, self.q = None, q.copy()
        else:
            assert out.kind == GRIPPER and 0.0 <= out.value <= 1.0


@fuzz_settings(12, shrink=False)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("frame"), image_fields(max_side=24)),
            st.tuples(st.just("js"), joint_states(FR3)),
            st.tuples(st.just("instruction"), instructions()),
        ),
        min_size=1,
        max_size=10,
    ),
    st.sampled_from(["joint_trajectory", "forward_position"]),
)
def test_virtual_stack_with_garbage_mixed_in(runtime, garbage, mode):
    params = StackParams(
        encoder=EncoderParams(require_camera_info=False),
        action=ActionParams(command_mode=mode, enable_on_start=True),
    )
    stack = VirtualStack(FR3, runtime, params, latency_ms=20.0)
    arm = Arm()
    rng = np.random.default_rng(0)
    b = runtime.bundle
    t = 0.0
    stack.on_instruction("put the red cube in the blue bowl", t)
    ran = False
    for k in range(150):  # 1.5 s at 100 Hz, garbage spread over it
        t = k * 0.01
        stack.on_joint_state(NAMES, list(arm.at(t)) + [0.04, 0.04], t, t)
        if k % 6 == 0:
            frame = rng.integers(0, 256, (b.image_height, b.image_width, 3), dtype=np.uint8)
            stack.on_frame(frame, t, t)
        if k % 15 == 7 and garbage:
            ev = garbage[(k // 15) % len(garbage)]
            if ev[0] == "frame":
                stack.on_frame(image_ns(ev[1]), t, t)
            elif ev[0] == "js":
                names, pos, _ = ev[1]
                assert isinstance(stack.on_joint_state(names, pos, t, t), bool)
            else:
                why = stack.on_instruction(ev[1], t)
                assert why is None or len(why) < MAX_TEXT
        for out in stack.advance_to(t + 0.01):
            arm.take(out)
        ran = ran or stack.state is State.RUN
    # then nothing good: stale -> stop -> hold (a glide to a far measured pose takes seconds)
    for k in range(150, 1200):
        if k >= 300 and stack.state is State.HOLD:
            break
        t = k * 0.01
        if k % 10 == 0 and garbage:
            ev = garbage[k % len(garbage)]
            if ev[0] == "js":
                stack.on_joint_state(ev[1][0], ev[1][1], t, t)
        for out in stack.advance_to(t + 0.01):
            arm.take(out)
    assert ran, "the stack never ran: %s" % stack.action.reason()
    assert stack.state is State.HOLD, stack.action.reason()
    d = stack.diagnostics(t)
    assert all(len(str(v)) < MAX_TEXT for v in d.values()), {k: len(str(v)) for k, v in d.items()}
