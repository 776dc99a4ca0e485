"""The sim driver core stops the arm where the real one would (issue 13): a reflex on contact and
on a discontinuous command, the hold, the refused commands, the recovery; JTC start state and
tolerances. Commands are JointTrajectory chunks as the action node sends them (trajectory_chunk
of a plan, every 1/15 s, stamp 0), through SimDriverCore.command, the path sim_driver and
eval-sim --mode direct share."""

import numpy as np
import pytest

from clap_ros.control.trajectory import trajectory_chunk
from clap_ros.sim.driver_core import SimDriverCore, SimDriverParams

CHUNK_PERIOD = 1.0 / 15.0


class LinePlan:
    """A joint-space straight line from q0 to q1 with a minimum-jerk time law."""

    def __init__(self, q0, q1, duration):
        self.q0, self.q1, self.duration = np.asarray(q0), np.asarray(q1), float(duration)

    def sample(self, t):
        s = min(max(t / self.duration, 0.0), 1.0)
        p = s**3 * (10 - 15 * s + 6 * s * s)
        dp = 30 * s * s * (1 - s) ** 2 / self.duration
        return self.q0 + p * (self.q1 - self.q0), dp * (self.q1 - self.q0), 1.0


def make_core(robot="fr3", **kw):
    return SimDriverCore(
        SimDriverParams(
            robot=robot,
            task="reach",
            seed=0,
            camera_rate_hz=0.0,
            real_time_factor=0.0,
            use_sim_time=True,
            **dict(dict(reflexes=True), **kw),
        )
    )


def stream(core, plan, seconds, until=None):
    """Send the plan as action-node chunks and step; stop early when ``until(core)``."""
    names = list(core.profile.joint_names)
    t0 = core.clock_s
    next_chunk = t0
    reasons = []
    while core.clock_s - t0 < seconds:
        if core.clock_s >= next_chunk:
            tau = core.clock_s - t0
            if tau < plan.duration:
                r = core.command("trajectory", (names, trajectory_chunk(plan, tau, 0.5, 0.1)))
                reasons.append(r)
            next_chunk += CHUNK_PERIOD
        core.step()
        if until is not None and until(core):
            break
    return reasons


# Poses that put the hand and the forearm into the table top from home.
INTO_TABLE = {"fr3": (1, 1.8), "ur5e": (1, 1.0)}


@pytest.mark.parametrize(
    "robot,reasons", [("fr3", ("cartesian_reflex", "joint_reflex")), ("ur5e", ("PROTECTIVE_STOP",))]
)
def test_arm_driven_into_the_table_reflex_hold_refusal_recovery(robot, reasons):
    core = make_core(robot)
    lines = []
    core.safety._log = core.safety.monitor._log = lambda lv, tx: lines.append((lv, tx))
    q0 = core.world.arm_qpos()
    j, dq = INTO_TABLE[robot]
    q1 = q0.copy()
    q1[j] += dq
    stream(core, LinePlan(q0, q1, 8.0), 9.0, until=lambda c: c.reflex is not None)
    ev = core.reflex
    assert ev is not None and ev.reason in reasons, core.status_dict()
    assert any(lv == "error" and ev.reason in tx for lv, tx in lines)
    st = core.status_dict()
    assert st["reflex"]["reason"] == ev.reason and st["reflexes"] == 1
    assert core.robot_error()["reflex_active"]
    # the hold: the arm comes to rest where it stopped and stays there
    for _ in range(int(0.5 / core.control_dt)):
        core.step()
    q_hold = core.world.arm_qpos()
    for _ in range(int(0.5 / core.control_dt)):
        core.step()
    assert np.max(np.abs(core.world.arm_qpos() - q_hold)) < 2e-3
    assert np.max(np.abs(core.world.arm_qvel())) < 0.05
    # the refusal: arm commands are refused, counted and named
    before = core.rejected
    r = core.command(
        "trajectory",
        (list(core.profile.joint_names), [(0.5, list(q0), list(np.zeros(core.profile.dof)))]),
    )
    assert r is not None and "refused until error recovery" in r and ev.reason in r
    assert core.command("forward", list(core.world.arm_qpos())) is not None
    assert core.rejected == before + 2
    assert core.command("gripper", [0.5]) is None  # the gripper is a separate device
    # the recovery: (UR: not in the first 5 s) then commands go through again
    if robot == "ur5e":
        ok, msg = core.recover()
        if core.clock_s - ev.t < 5.0:
            assert not ok and "after occurrence" in msg
        while core.clock_s - ev.t < 5.05:
            core.step()
    ok, msg = core.recover()
    assert ok, msg
    assert core.reflex is None and core.status_dict()["reflex"] is None
    back = LinePlan(core.world.arm_qpos(), q0, 2.0)
    assert all(x is None for x in stream(core, back, 2.5))
    assert np.max(np.abs(core.world.arm_qpos() - q0)) < 0.02
    assert core.reflex is None


def test_first_point_jump_trips_the_discontinuity_reflex():
    core = make_core("fr3")
    for _ in range(20):
        core.step()
    q = core.world.arm_qpos()
    far = q.copy()
    far[0] += 0.3  # the case: 0.3 rad from the measured state, 0.067 s ahead
    r = core.command(
        "trajectory", (list(core.profile.joint_names), [(0.067, list(far), list(np.zeros(7)))])
    )
    assert r is None  # a real JTC accepts it too
    for _ in range(40):
        core.step()
        if core.reflex:
            break
    assert core.reflex is not None
    assert core.reflex.reason.startswith("joint_motion_generator_")
    assert "fr3_joint1" in core.reflex.detail
    # held near where the arm was, not at the far point
    for _ in range(200):
        core.step()
    assert abs(core.world.arm_qpos()[0] - q[0]) < 0.1


def test_recovery_refused_while_the_arm_moves():
    core = make_core("fr3")
    q0 = core.world.arm_qpos()
    q1 = q0.copy()
    q1[0] += 0.8
    stream(core, LinePlan(q0, q1, 1.5), 0.7)
    assert np.max(np.abs(core.world.arm_qvel())) > 0.1
    core.safety.monitor.trip("cartesian_reflex", "test stop", core.clock_s)
    ok, msg = core.recover()
    assert not ok and "still moving" in msg and core.reflex is not None
    for _ in range(500):
        core.step()
    ok, msg = core.recover()
    assert ok, msg


def test_unknown_reflex_reason_holds_and_says_so():
    core = make_core("fr3")
    lines = []
    core.safety.monitor._log = lambda lv, tx: lines.append((lv, tx))
    q0 = core.world.arm_qpos()
    q1 = q0.copy()
    q1[0] += 0.8
    stream(core, LinePlan(q0, q1, 1.5), 0.5)
    core.safety.monitor.trip("brake_test_failed_xyz", "from a test", core.clock_s)
    core.follower.hold_at(core.world.arm_qpos(), core.clock_s)
    for _ in range(300):
        core.step()
    assert core.reflex.reason == "unknown_reflex"
    assert any(lv == "error" and "unknown reflex reason" in tx for lv, tx in lines)
    assert np.max(np.abs(core.world.arm_qvel())) < 0.05  # a safe hold
    assert core.command("forward", list(core.world.arm_qpos())) is not None


def test_tolerance_violated_mid_way_aborts_and_holds():
    # a path tolerance of 1 mrad on joint 1: a fast move lags more than that mid-way
    core = make_core(
        "fr3", reflexes=False, constraints={"constraints.fr3_joint1.trajectory": 0.001}
    )
    lines = []
    core.safety._log = lambda lv, tx: lines.append((lv, tx))
    q0 = core.world.arm_qpos()
    q1 = q0.copy()
    q1[0] += 0.6
    names = list(core.profile.joint_names)
    assert core.command("trajectory", (names, [(0.6, list(q1), list(np.zeros(7)))])) is None
    for _ in range(int(1.0 / core.control_dt)):
        core.step()
    st = core.status_dict()
    assert st["trajectory_aborts"] == 1
    assert "path tolerance violated: fr3_joint1" in core.safety.last_abort
    assert any(lv == "warn" and "trajectory aborted" in tx for lv, tx in lines)
    q_end = core.world.arm_qpos()
    assert q_end[0] < q1[0] - 0.1  # it stopped mid-way, holding
    assert np.max(np.abs(core.world.arm_qvel())) < 0.05


def test_commanded_start_when_interpolate_from_desired_state():
    core = make_core("fr3", interpolate_from_desired_state=True)
    assert core.follower.rules.interpolate_from_desired_state
    assert not make_core("fr3").follower.rules.interpolate_from_desired_state


def test_bad_constraint_parameter_is_refused_by_name():
    from clap_ros.runtime.params import ParamError

    with pytest.raises(ParamError, match="constraints.nojoint.goal"):
        make_core("fr3", constraints={"constraints.nojoint.goal": 0.1})


def test_direct_evaluator_fails_an_episode_with_a_reflex():
    from clap_ros.eval.direct_eval import DirectEpisodes
    from clap_ros.eval.sim_results import EvalConfig, report_markdown, summarize

    cfg = EvalConfig(
        robot="fr3", tasks=["reach"], episodes=1, policy="expert", mode="direct", reflexes=True
    )
    ep = DirectEpisodes(cfg)
    core = ep.core("reach")
    step = core.step

    def step_with_a_stop():  # the arm is stopped mid-reach, as a contact would stop it
        if core.world.time > 0.5 and core.reflex is None and not core.safety.monitor.history:
            core.safety.monitor.trip("cartesian_reflex", "test contact", core.clock_s)
            core.follower.hold_at(core.world.arm_qpos(), core.clock_s)
        return step()

    core.step = step_with_a_stop
    out = ep.run("reach", 0)
    assert out.error == "" and not out.success
    assert out.reflex == "cartesian_reflex" and out.reflex_detail == "test contact"
    res = summarize(cfg, "expert", [out], 1.0)
    assert res["tasks"]["reach"]["episodes_with_reflex"] == 1
    assert res["tasks"]["reach"]["reflexes"] == {"cartesian_reflex": 1}
    assert "reach seed 0: cartesian_reflex: test contact" in report_markdown(res)
