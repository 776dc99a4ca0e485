"""Robot profiles: published facts, name-based indexing and forward kinematics."""

import math

import numpy as np
import pytest

from clap_ros.robots import ProfileError, available_profiles, load_profile


def test_all_profiles_load():
    assert set(available_profiles()) >= {"fr3", "panda", "ur5e"}
    for name in available_profiles():
        prof = load_profile(name)
        assert prof.name == name
        assert prof.within_limits(prof.home)


def test_fr3_published_limits():
    prof = load_profile("fr3")
    assert prof.joint_names == ["fr3_joint%d" % i for i in range(1, 8)]
    np.testing.assert_allclose(prof.limits.lower[3], -3.0421)
    np.testing.assert_allclose(prof.limits.upper[5], 4.5169)
    np.testing.assert_allclose(prof.limits.velocity, [2.62] * 4 + [5.26, 4.18, 5.26])
    assert prof.driver.rate_hz == 1000
    assert prof.driver.trajectory_topic == "/fr3_arm_controller/joint_trajectory"


def test_fr3_tcp_at_ready_pose_matches_franka():
    # Franka's "ready" pose puts the hand's TCP at (0.3069, 0, 0.4869) in the base frame,
    # pointing straight down.
    prof = load_profile("fr3")
    T = prof.tcp_pose(prof.home)
    np.testing.assert_allclose(T[:3, 3], [0.3069, 0.0, 0.4869], atol=2e-3)
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-3)


def test_ur5e_flange_at_zero_matches_published_dh():
    prof = load_profile("ur5e")
    T = prof.flange_pose(np.zeros(6))
    # Standard UR5e DH at q = 0: x = a2 + a3, y = -(d4 + d6), z = d1 - d5.
    np.testing.assert_allclose(T[:3, 3], [-0.8172, -0.2329, 0.0628], atol=1e-4)
    assert prof.limits.upper[2] == pytest.approx(math.pi, abs=1e-3)


def test_panda_aliases_map_to_fer_names():
    prof = load_profile("panda")
    names = ["panda_joint%d" % i for i in range(7, 0, -1)]  # reversed order on purpose
    values = np.arange(7, 0, -1, dtype=float)
    np.testing.assert_allclose(prof.reorder(names, values), np.arange(1, 8))


def test_reorder_by_name_not_order():
    prof = load_profile("ur5e")
    names = list(reversed(prof.joint_names)) + ["robotiq_85_left_knuckle_joint"]
    values = [6, 5, 4, 3, 2, 1, 0.5]
    np.testing.assert_allclose(prof.reorder(names, values), [1, 2, 3, 4, 5, 6])


def test_wrong_joint_names_are_named_in_error():
    prof = load_profile("fr3")
    with pytest.raises(ProfileError) as e:
        prof.index_map(["fr3_joint1", "fr3_joint2", "elbow_joint"])
    msg = str(e.value)
    assert "fr3_joint3" in msg and "elbow_joint" in msg


def test_unknown_profile_lists_choices(tmp_path):
    with pytest.raises(ProfileError, match="fr3"):
        load_profile("kuka")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\njoint_names: [a, b]\nlimits: {lower: [0], upper: [1]}\n")
    with pytest.raises(ProfileError, match="bad.yaml"):
        load_profile(str(bad))


def test_gripper_command_mapping_round_trip():
    for name in ("fr3", "ur5e"):
        g = load_profile(name).gripper
        assert g.position_from_command(1.0) == pytest.approx(g.open_position)
        assert g.position_from_command(0.0) == pytest.approx(g.closed_position)
        assert g.command_from_position(g.position_from_command(0.3)) == pytest.approx(0.3)
        assert g.position_from_command(7.0) == pytest.approx(g.open_position)  # clamped
