"""Fuzzed JointStates (missing, extra, duplicate and aliased names, mismatched lengths, NaN/inf)
through the profile's name indexing and the state check every CLAP node runs: a measurement is
taken only when it names every arm joint exactly once with a finite value; anything else is refused
with an error that names the problem, in bounded length."""

import numpy as np
import pytest
from fuzz_support import (
    FR3,
    MAX_TEXT,
    PANDA,
    UR5E,
    fuzz_settings,
    joint_states,
    profile_joints_measured,
)
from hypothesis import given, strategies as st

from clap_ros.nodes.clap_logic import state_from_joint_state
from clap_ros.robots import ProfileError

PROFILES = {"fr3": FR3, "ur5e": UR5E, "panda": PANDA}


def _has_any_duplicate(profile, names):
    canon = [profile.canonical_name(n) for n in names]
    return len(set(canon)) != len(canon)


@pytest.mark.parametrize("robot", sorted(PROFILES))
@fuzz_settings(150)
@given(data=st.data())
def test_state_from_joint_state_takes_only_a_clean_measurement(robot, data):
    profile = PROFILES[robot]
    names, pos, info = data.draw(joint_states(profile))
    expect = profile_joints_measured(profile, names, pos)
    try:
        state, measured = state_from_joint_state(profile, names, pos)
    except ValueError as e:  # InputError / ProfileError
        text = str(e)
        assert text and len(text) < MAX_TEXT, "refusal must say why, briefly: %d chars" % len(text)
        assert expect is None or _has_any_duplicate(profile, names), (
            "a clean JointState was refused: %s (%s)" % (text, info)
        )
        return
    assert expect is not None, "taken as a measurement: names=%s positions=%s (%s)" % (
        names,
        pos,
        info,
    )
    arm, grip = expect
    assert state.shape == (profile.dof + 1,) and np.all(np.isfinite(state))
    np.testing.assert_array_equal(state[: profile.dof], arm)
    assert measured == bool(grip)
    assert 0.0 <= state[-1] <= 1.0


def test_every_name_listed_twice_is_refused():
    """The issue's case: a JointState listing every joint twice (the second copy elsewhere)."""
    names = list(FR3.joint_names) * 2
    pos = list(FR3.home) + list(FR3.home + 0.5)
    with pytest.raises(ValueError, match="more than once"):
        state_from_joint_state(FR3, names, pos)
    with pytest.raises(ProfileError, match="more than once"):
        FR3.reorder(names, pos)


@pytest.mark.parametrize("robot", sorted(PROFILES))
@fuzz_settings(150)
@given(data=st.data())
def test_reorder_uses_each_arm_joint_once_or_refuses(robot, data):
    profile = PROFILES[robot]
    names, pos, _ = data.draw(joint_states(profile))
    try:
        q = profile.reorder(names, pos)
    except ProfileError as e:
        assert str(e) and len(str(e)) < MAX_TEXT
        return
    canon = [profile.canonical_name(n) for n in names]
    for j, name in enumerate(profile.joint_names):
        assert canon.count(name) == 1, "%s used though listed %d times" % (name, canon.count(name))
        assert q[j] == pos[canon.index(name)] or (
            np.isnan(q[j]) and np.isnan(pos[canon.index(name)])
        )


@fuzz_settings(100)
@given(st.lists(st.text(max_size=3000), max_size=300))
def test_index_map_error_stays_short_for_thousands_of_garbage_names(names):
    try:
        FR3.index_map(names)
    except ProfileError as e:
        assert len(str(e)) < MAX_TEXT, len(str(e))
