"""record_episodes_ros: sim_driver + expert_node processes over DDS, recorded into MCAP bags that
rosbags (and so ROS 2 tools) read back."""

import json

import numpy as np
import pytest
from ros_harness import fresh_domain_id

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from clap_ros import topics as T  # noqa: E402
from clap_ros.control.trajectory import points_from_msg, validate_points  # noqa: E402
from clap_ros.nodes.episode_runner import RecordingError, record_episodes_ros  # noqa: E402
from clap_ros.robots import load_profile  # noqa: E402

PROFILE = load_profile("fr3")


def read_bag(path):
    from pathlib import Path

    path = Path(path)
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    out = {}
    with Reader(path) as reader:
        assert list(path.glob("*.mcap")), "not an MCAP bag"
        for conn, ts, data in reader.messages():
            out.setdefault(conn.topic, []).append(
                (ts, store.deserialize_cdr(data, conn.msgtype), conn.msgtype)
            )
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("bags")
    results = record_episodes_ros(
        "fr3", "reach", [1, 2], out, domain_id=fresh_domain_id(), progress=False
    )
    return out, results


def test_each_seed_gives_a_successful_episode(recorded):
    _, results = recorded
    assert [r.seed for r in results] == [1, 2]
    for r in results:
        assert r.error == "" and r.expert_exit_code == 0
        assert r.success, "reach expert failed for seed %d" % r.seed
        assert r.instruction and 0.5 < r.duration_s < 30.0


def test_bag_has_every_topic_with_consistent_content(recorded):
    _, results = recorded
    r = results[0]
    msgs = read_bag(r.bag)
    expected = {
        T.CAMERA_IMAGE: "sensor_msgs/msg/Image",
        T.CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
        "/joint_states": "sensor_msgs/msg/JointState",
        PROFILE.driver.trajectory_topic: "trajectory_msgs/msg/JointTrajectory",
        PROFILE.driver.gripper_command_topic: "std_msgs/msg/Float64MultiArray",
        T.INSTRUCTION: "std_msgs/msg/String",
        T.SIM_STATUS: "std_msgs/msg/String",
        T.EPISODE_OUTCOME: "std_msgs/msg/String",
    }
    for topic, msgtype in expected.items():
        assert topic in msgs, "no %s in the bag" % topic
        assert msgs[topic][0][2] == msgtype
    assert {t: len(v) for t, v in msgs.items()} == r.counts
    # rates: camera 15 Hz and joint states 30 Hz over the episode (allowing for a loaded machine)
    assert len(msgs[T.CAMERA_IMAGE]) >= 0.5 * 15 * r.duration_s
    assert len(msgs["/joint_states"]) >= 0.6 * 30 * r.duration_s
    img = msgs[T.CAMERA_IMAGE][-1][1]
    assert (img.width, img.height, img.encoding) == (128, 128, "rgb8")
    js = msgs["/joint_states"][-1][1]
    assert list(js.name) == PROFILE.joint_names + PROFILE.gripper.joint_names
    # every recorded trajectory obeys the controller's rules (what the driver accepted)
    for _, traj, _ in msgs[PROFILE.driver.trajectory_topic]:
        names, points, stamp = points_from_msg(traj)
        assert stamp == 0.0
        validate_points(names, points, PROFILE, PROFILE.home)
    # the outcome is the last message and agrees with the instruction and the result
    outcome_ts, outcome, _ = msgs[T.EPISODE_OUTCOME][0]
    assert len(msgs[T.EPISODE_OUTCOME]) == 1
    assert outcome_ts >= max(ts for v in msgs.values() for ts, _, _ in v)
    o = json.loads(outcome.data)
    assert o["seed"] == 1 and o["robot"] == "fr3" and o["task"] == "reach"
    assert o["success"] is True and o["rejected_commands"] == 0
    assert o["instruction"] == msgs[T.INSTRUCTION][0][1].data == r.instruction
    assert o["appearance"] == r.appearance and "table_texture" in o["appearance"]
    first_status = json.loads(msgs[T.SIM_STATUS][0][1].data)
    assert first_status["seed"] == 1
    # the arm moved: final joint state differs from the first one
    q_first = PROFILE.reorder(
        msgs["/joint_states"][0][1].name, msgs["/joint_states"][0][1].position
    )
    q_last = PROFILE.reorder(js.name, js.position)
    # the bag starts with the episode: the arm at its reset pose
    np.testing.assert_allclose(q_first, PROFILE.home, atol=0.01)
    assert np.max(np.abs(q_last - q_first)) > 0.05


def test_seeds_give_different_episodes(recorded):
    _, results = recorded
    a, b = (read_bag(r.bag) for r in results)
    qa = np.array(a["/joint_states"][-1][1].position)
    qb = np.array(b["/joint_states"][-1][1].position)
    assert np.max(np.abs(qa - qb)) > 1e-3
    assert json.loads(b[T.EPISODE_OUTCOME][0][1].data)["seed"] == 2


def test_forward_position_mode_records_forward_commands(tmp_path):
    results = record_episodes_ros(
        "fr3",
        "reach",
        [4],
        tmp_path,
        command_mode="forward_position",
        camera_size=(64, 64),
        domain_id=fresh_domain_id(),
        progress=False,
    )
    r = results[0]
    assert r.success and r.error == ""
    msgs = read_bag(r.bag)
    assert PROFILE.driver.trajectory_topic not in msgs
    fwd = msgs[PROFILE.driver.forward_topic]
    # streamed at 100 Hz: many commands, each a full arm vector in profile order
    assert len(fwd) >= 50
    assert all(len(m.data) == PROFILE.dof for _, m, _ in fwd)
    assert msgs[T.CAMERA_IMAGE][0][1].width == 64


def test_existing_bag_is_never_overwritten(recorded):
    out, _ = recorded
    with pytest.raises(RecordingError, match="never overwritten"):
        record_episodes_ros("fr3", "reach", [2, 9], out, progress=False)
    with pytest.raises(ValueError, match="duplicate seeds"):
        record_episodes_ros("fr3", "reach", [3, 3], out, progress=False)
