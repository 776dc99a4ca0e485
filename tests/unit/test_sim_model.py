"""The MuJoCo robot models are generated from the robot profiles: kinematics, limits, gripper units
and joint servos must agree with the profile facts."""

import numpy as np
import pytest

from clap_ros.robots import load_profile
from clap_ros.sim import SimWorld
from clap_ros.sim.embodiments import ArmEmbodiment


def _set_q(world, q):
    import mujoco

    world.data.qpos[world._arm_qadr] = q
    mujoco.mj_kinematics(world.model, world.data)


@pytest.mark.parametrize("robot", ["fr3", "panda", "ur5e"])
def test_tcp_and_flange_match_profile_fk(robot):
    world = SimWorld(robot=robot, task="reach", seed=0, randomize=False)
    prof = world.profile
    base = world.base_pose
    rng = np.random.default_rng(7)
    flange_body = world.model.body("flange").id
    for _ in range(25):
        q = rng.uniform(prof.limits.lower, prof.limits.upper)
        _set_q(world, q)
        T_tcp = np.linalg.inv(base) @ world.tcp_pose()
        np.testing.assert_allclose(T_tcp, prof.tcp_pose(q), atol=1e-6)
        T_fl = np.eye(4)
        T_fl[:3, :3] = world.data.xmat[flange_body].reshape(3, 3)
        T_fl[:3, 3] = world.data.xpos[flange_body]
        np.testing.assert_allclose(np.linalg.inv(base) @ T_fl, prof.flange_pose(q), atol=1e-6)


@pytest.mark.parametrize("robot", ["fr3", "ur5e"])
def test_joint_limits_and_timestep_come_from_profile(robot):
    world = SimWorld(robot=robot, task="reach", seed=0, randomize=False)
    prof = load_profile(robot)
    m = world.model
    for i, name in enumerate(prof.joint_names):
        np.testing.assert_allclose(
            m.jnt_range[m.joint(name).id], [prof.limits.lower[i], prof.limits.upper[i]]
        )
    assert 0.001 <= world.timestep <= 0.0025
    np.testing.assert_allclose(world.arm_qpos(), prof.home)


def test_home_tcp_is_in_front_of_every_robot():
    # The mount yaw turns each base so the shared workspace (+x) is in front of it.
    for robot in ("fr3", "ur5e"):
        p = ArmEmbodiment(robot)
        tcp = p.base_pose @ p.profile.tcp_pose(p.profile.home)
        assert tcp[0, 3] > 0.25 and abs(tcp[1, 3]) < 1e-9


@pytest.mark.parametrize("robot,open_value,closed_value", [("fr3", 0.04, 0.0), ("ur5e", 0.0, 0.8)])
def test_gripper_reports_profile_units(robot, open_value, closed_value):
    world = SimWorld(robot=robot, task="reach", seed=0, randomize=False)
    names = world.profile.gripper.joint_names
    g = world.gripper_qpos()
    assert g.shape == (len(names),)
    np.testing.assert_allclose(g, open_value, atol=1e-6)
    world.set_gripper(0.0)
    world.step(400)  # 0.8 s: nothing between the fingers, so they close fully
    np.testing.assert_allclose(world.gripper_qpos(), closed_value, atol=0.02 * 0.8)
    assert world.gripper_opening() < 0.02


@pytest.mark.parametrize("robot", ["fr3", "ur5e"])
def test_servo_tracks_and_holds_a_joint_target(robot):
    world = SimWorld(robot=robot, task="reach", seed=0, randomize=False)
    prof = world.profile
    # Standing still at home: gravity compensation means no sag.
    world.step(500)
    assert np.max(np.abs(world.arm_qpos() - prof.home)) < 2e-3
    target = prof.home + np.linspace(0.1, -0.1, prof.dof)
    world.set_arm_target(target)
    world.step(750)
    assert np.max(np.abs(world.arm_qpos() - target)) < 2e-3
    assert np.max(np.abs(world.arm_qvel())) < 0.02


def test_bad_targets_are_rejected():
    world = SimWorld(robot="fr3", task="reach", seed=0, randomize=False)
    before = world.data.ctrl.copy()
    with pytest.raises(ValueError):
        world.set_arm_target([0.0] * 6)
    with pytest.raises(ValueError):
        world.set_arm_target([np.nan] * 7)
    with pytest.raises(ValueError):
        world.set_gripper(float("inf"))
    np.testing.assert_array_equal(world.data.ctrl, before)
    # Out-of-range targets are clipped to the limits, not passed on.
    world.set_arm_target(world.profile.limits.upper + 1.0)
    np.testing.assert_allclose(world.data.ctrl[world._arm_pos_act], world.profile.limits.upper)
    with pytest.raises(ValueError):
        SimWorld(robot="fr3", task="nope")
