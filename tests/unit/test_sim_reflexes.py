"""Reflex emulation (clap_ros.sim.reflexes) and arm-link collision geometry, no ROS."""

import numpy as np
import pytest

from clap_ros.robots import load_profile
from clap_ros.sim.reflexes import KNOWN_REASONS, UNKNOWN_REASON, ContactLoad, ReflexMonitor

FR3 = load_profile("fr3")
UR5E = load_profile("ur5e")
DT = 0.002


def load(dof, tau=None, wrench=None, force=0.0, body="link4", self_contact=""):
    return ContactLoad(
        np.zeros(dof) if tau is None else np.asarray(tau, float),
        np.zeros(6) if wrench is None else np.asarray(wrench, float),
        force,
        body,
        self_contact,
    )


def test_profiles_carry_franka_defaults_and_ur_protective_stop():
    r = FR3.reflexes
    assert r.style == "franka" and r.motion_checks
    np.testing.assert_allclose(r.torque_thresholds, [35, 35, 32, 30, 29, 27, 24])
    np.testing.assert_allclose(r.force_thresholds, [40, 40, 40, 35, 35, 35])
    u = UR5E.reflexes
    assert u.style == "ur" and u.protective_stop_force == 150.0 and u.recovery_delay_s == 5.0
    assert r.error_topic == "/sim/robot_error" and r.recovery_service.endswith("error_recovery")


def test_smooth_commanded_motion_passes_and_a_jump_trips_the_discontinuity_reflex():
    m = ReflexMonitor(FR3, DT)
    t = np.arange(0, 1.0, DT)
    for k, tk in enumerate(t):  # 0.5 rad/s sine: well inside 2.62 rad/s, 10 rad/s^2
        q = FR3.home + 0.5 / 3.0 * np.sin(3.0 * tk)
        qd = np.full(7, 0.5 * np.cos(3.0 * tk))
        assert m.check_motion(tk, q, qd) is None
    assert 0 < m.peaks["acceleration_ratio"] < 1.0
    # the commanded velocity jumps by 0.5 rad/s in one cycle: 250 rad/s^2
    ev = m.check_motion(1.0, FR3.home, np.full(7, 0.5 * np.cos(3.0) + 0.5))
    assert ev is not None and ev.reason == "joint_motion_generator_velocity_discontinuity"
    assert m.active is ev and "rad/s^2" in ev.detail


def test_velocity_limit_and_position_step_without_velocity():
    m = ReflexMonitor(FR3, DT)
    assert m.check_motion(0.0, FR3.home, np.zeros(7)) is None
    ev = m.check_motion(DT, FR3.home, np.r_[3.0, np.zeros(6)])
    assert ev.reason == "joint_motion_generator_velocity_limits_violation"
    # forward-position commands: velocity from the position differences (a 0.01 rad step in
    # 2 ms is 5 rad/s)
    m2 = ReflexMonitor(FR3, DT)
    assert m2.check_motion(0.0, FR3.home) is None
    ev2 = m2.check_motion(DT, FR3.home + 0.01)
    assert ev2.reason == "joint_motion_generator_velocity_limits_violation"


def held(m, L, seconds=0.3):
    """The same load for ``seconds`` (the judged load is low-passed over contact_filter_s)."""
    for k in range(int(seconds / DT)):
        ev = m.check_contact(k * DT, L)
        if ev:
            return ev
    return None


def test_contact_thresholds_franka():
    m = ReflexMonitor(FR3, DT)
    assert held(m, load(7, tau=[34, 0, 0, 0, 0, 0, 0])) is None  # below 35 Nm
    ev = held(m, load(7, tau=[0, 0, 0, 31, 0, 0, 0]))
    assert ev.reason == "joint_reflex" and "fr3_joint4" in ev.detail
    m = ReflexMonitor(FR3, DT)
    ev = held(m, load(7, wrench=[0, 0, -45, 0, 0, 0]))
    assert ev.reason == "cartesian_reflex" and "Fz" in ev.detail
    m = ReflexMonitor(FR3, DT)
    assert (
        m.check_contact(0.0, load(7, self_contact="link2/hand")).reason
        == "self_collision_avoidance_violation"
    )


def test_a_one_step_contact_impulse_is_filtered_out():
    # a rigid-contact sim's single-step impulse; the real arms judge filtered estimates
    m = ReflexMonitor(FR3, DT)
    assert m.check_contact(0.0, load(7, tau=[100, 0, 0, 0, 0, 0, 0])) is None
    assert held(m, load(7), 0.2) is None


def test_ur_protective_stop_and_its_unlock_delay():
    m = ReflexMonitor(UR5E, DT)
    assert held(m, load(6, force=140.0)) is None
    for k in range(200):
        ev = m.check_contact(1.0, load(6, force=160.0, body="link3"))
        if ev:
            break
    assert ev.reason == "PROTECTIVE_STOP" and "link3" in ev.detail
    ok, msg = m.recover(3.0, 0.0)
    assert not ok and "5.0 s after occurrence" in msg and m.active is ev
    ok, msg = m.recover(6.5, 0.0)
    assert ok and m.active is None and m.recoveries == 1


def test_first_reflex_wins_until_recovery_and_recovery_refused_while_moving():
    lines = []
    m = ReflexMonitor(FR3, DT, log=lambda level, text: lines.append((level, text)))
    first = m.trip("cartesian_reflex", "test", 0.0)
    assert m.trip("joint_reflex", "later", 0.1) is first
    ok, msg = m.recover(0.2, arm_speed=0.3)
    assert not ok and "still moving" in msg and m.active is first
    assert any(lv == "warn" and "still moving" in tx for lv, tx in lines)
    ok, _ = m.recover(0.3, arm_speed=0.0)
    assert ok and m.active is None
    assert m.recover(0.4, 0.0) == (True, "no reflex active: nothing to recover")


def test_unknown_reason_still_stops_with_a_clear_line():
    lines = []
    m = ReflexMonitor(FR3, DT, log=lambda level, text: lines.append((level, text)))
    ev = m.trip("made_up_reflex" * 20, "from a test", 1.0)
    assert ev.reason == UNKNOWN_REASON and m.active is ev
    assert "made_up_reflex" in ev.detail
    err = [tx for lv, tx in lines if lv == "error" and "unknown reflex reason" in tx]
    assert err and len(err[0]) < 400  # the garbage name is cut
    assert UNKNOWN_REASON not in KNOWN_REASONS


def test_disabled_monitor_never_trips():
    m = ReflexMonitor(FR3, DT, enabled=False)
    assert m.check_contact(0.0, load(7, tau=[100] * 7)) is None
    assert m.check_motion(0.0, FR3.home) is None and m.check_motion(DT, FR3.home + 1) is None


# --- collision geometry --------------------------------------------------------------------


@pytest.fixture(scope="module", params=["fr3", "ur5e"])
def world(request):
    from clap_ros.sim.world import SimWorld

    w = SimWorld(robot=request.param, task="pick_place", seed=0, randomize=False)
    yield w
    w.close()


def _arm_contacts(w):
    m, d = w.model, w.data
    out = []
    for c in d.contact[: d.ncon]:
        names = (m.body(m.geom_bodyid[c.geom1]).name, m.body(m.geom_bodyid[c.geom2]).name)
        if any(n.startswith("link") for n in names):
            out.append(names)
    return out


def test_every_link_has_collision_geometry_and_none_touches_at_home(world):
    import mujoco

    m = world.model
    for i in range(world.profile.dof):
        geoms = [
            g
            for g in range(m.ngeom)
            if m.geom_bodyid[g] == m.body("link%d" % (i + 1)).id and m.geom_contype[g]
        ]
        assert geoms, "link%d has no collision geometry" % (i + 1)
    world.reset(seed=0)
    mujoco.mj_forward(world.model, world.data)
    assert _arm_contacts(world) == []


def test_a_link_on_the_table_collides_and_the_meter_sees_the_load(world):
    import mujoco

    from clap_ros.sim.reflexes import ContactMeter

    world.reset(seed=0)
    meter = ContactMeter(world)
    assert meter.measure().max_body_force == 0.0
    m, d = world.model, world.data
    lim = world.profile.limits
    rng = np.random.default_rng(3)
    qadr = [m.joint(n).qposadr[0] for n in world.profile.joint_names]
    # a pose where an arm link (not the hand) rests in the table top
    for _ in range(5000):
        q = rng.uniform(np.maximum(lim.lower, -3.0), np.minimum(lim.upper, 3.0))
        d.qpos[qadr] = q
        mujoco.mj_forward(m, d)
        pairs = _arm_contacts(world)
        depth = min((c.dist for c in d.contact[: d.ncon]), default=0.0)
        # a link on the table, pressed in by less than 1 cm (deeper starts the physics unstable)
        if any("world" in p for p in pairs) and depth > -0.01:
            break
    else:
        pytest.fail("no pose with a link on the table found")
    d.qvel[:] = 0.0
    peak = 0.0
    for _ in range(50):  # the servo holds the link in the table: a sustained load
        world.set_arm_target(q)
        world.step(1)
        peak = max(peak, meter.measure().max_body_force)
    assert peak > 5.0  # the table pushes the link out: a load the reflexes judge
