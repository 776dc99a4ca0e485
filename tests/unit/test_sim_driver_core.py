"""SimDriverCore: the sim driver's rules without ROS (shared by sim_driver and eval-sim direct)."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from clap_ros.runtime.params import ParamError, check_params_file
from clap_ros.sim.driver_core import Schedule, SimDriverCore, SimDriverParams

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim_driver.yaml"


@pytest.fixture(scope="module")
def core():
    return SimDriverCore(
        SimDriverParams(
            task="reach", seed=3, camera_rate_hz=0.0, real_time_factor=0.0, use_sim_time=True
        )
    )


def test_no_rclpy_in_the_core():
    src = (Path(__file__).resolve().parents[2] / "clap_ros" / "sim" / "driver_core.py").read_text()
    assert "rclpy" not in src.replace("No rclpy import", "")


def test_config_file_matches_the_schema():
    data = yaml.safe_load(CONFIG.read_text())
    assert check_params_file(data, {"sim_driver": SimDriverParams}) == []
    section = data["sim_driver"]["ros__parameters"]
    for name, value in section.items():
        assert SimDriverParams.spec(name).default == value, name
    # every schema parameter is in the file, so the file documents them all
    assert set(SimDriverParams.names()) - set(section) <= {"camera_info_file"}


@pytest.mark.parametrize(
    "values,needle",
    [
        ({"camera_rate_hz": -1.0}, "camera_rate_hz"),
        ({"task": "juggle"}, "one of"),
        ({"seed": -1}, "seed"),
        ({"max_forward_step": 11.0}, "0 .. 10 rad"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_bad_values_are_refused_by_name_and_range(values, needle):
    with pytest.raises(ParamError) as e:
        SimDriverParams.from_mapping(values)
    assert needle in str(e.value)


def test_fast_clock_needs_sim_time():
    with pytest.raises(ParamError, match="use_sim_time"):
        SimDriverParams(real_time_factor=0.0).validate().check_clock()


def test_schedule_fires_at_its_rate_and_skips_missed_ticks():
    s = Schedule({"a": 0.1, "never": math.inf, "off": 0.0})
    fired = [t for t in np.arange(0.0, 1.0 + 1e-9, 0.01) if s.fire("a", t)]
    assert len(fired) == 11 and not any(s.fire("never", t) for t in (0.0, 5.0))
    assert not s.fire("off", 1.0)
    assert s.fire("a", 5.0) and s.due["a"] == pytest.approx(5.1)  # no burst of 40 ticks


def test_trajectory_is_followed_and_bad_commands_are_rejected_and_counted(core):
    core.reset(3)
    q0 = core.world.arm_qpos()
    names = list(core.profile.joint_names)
    target = q0 + 0.05
    assert core.command("trajectory", (names, [(0.5, target, np.zeros_like(q0))])) is None
    before = core.rejected
    bad = core.command("trajectory", (names[:-1], [(0.5, target[:-1])]))
    assert bad is not None and "missing" in bad and core.rejected == before + 1
    assert core.last_rejection.startswith(core.trajectory_topic)
    jump = core.command("forward", list(q0 + 1.0))
    assert jump is not None and "jump" in jump
    assert core.command("gripper", [2.0]) is not None
    assert core.rejected == before + 3
    t_end = core.clock_s + 1.0
    while core.clock_s < t_end:
        core.step()
    assert np.max(np.abs(core.world.arm_qpos() - target)) < 0.01  # the good one still runs
    assert core.status_dict()["rejected_commands"] == core.rejected


def test_reset_keeps_the_clock_monotonic_and_restarts_the_schedule(core):
    core.reset(3)
    for _ in range(100):
        core.step()
    t = core.clock_s
    resets = core.resets
    msg = core.reset(4)
    assert "seed 4" in msg and core.resets == resets + 1
    assert core.clock_s >= t and core.world.time == 0.0
    assert "js" in core.due() and core.seed == 4
    st = core.status_dict()
    assert st["seed"] == 4 and st["success"] is False and st["goal_distance_m"] > 0


def test_joint_states_name_arm_and_gripper_joints(core):
    js = core.joint_state(core.js_period)
    p = core.profile
    assert js.names == list(p.joint_names) + list(p.gripper.joint_names)
    assert js.positions.shape == js.velocities.shape == (len(js.names),)


def test_controller_rate_follows_the_profile(core):
    # Franka: 1 kHz driver; the physics step (2 ms) bounds it: one update per physics step.
    assert core.n_sub == 1 and core.control_dt == pytest.approx(core.world.timestep)
    # joint states at the profile's controller rate (1 kHz), at most one per controller update
    assert core.profile.driver.joint_states_rate_hz == 1000.0
    assert core.js_rate == min(core.profile.driver.joint_states_rate_hz, 1.0 / core.control_dt)
