"""BagWriter -> BagReader round trips and clear errors for bad bags."""

import json

import numpy as np
import pytest
import yaml

from clap_ros import topics as T
from clap_ros.data import bags
from clap_ros.data.bags import BagError, BagReader, BagWriter


def _write_sample(path):
    rng = np.random.default_rng(1)
    imgs, qs = [], []
    with BagWriter(path) as w:
        w.set_custom_data("robot", "fr3")
        for i in range(20):
            t = 1_000_000_000 + i * 50_000_000
            img = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
            q = rng.normal(size=3)
            imgs.append(img)
            qs.append(q)
            w.write(T.CAMERA_IMAGE, t, bags.image_msg(img, t))
            w.write("/joint_states", t + 1, bags.joint_state_msg(["j1", "j2", "j3"], q, t + 1))
        w.write(
            "/ctl/joint_trajectory",
            t,
            bags.joint_trajectory_msg(
                ["j1", "j2", "j3"], [0.5, 1.0], np.ones((2, 3)), np.zeros((2, 3))
            ),
        )
        w.add_topic("/cmd", T.TYPES["float64_array"])
        w.write_cdr("/cmd", t + 2, bags.serialize(bags.float64_array_msg([0.25])))
        w.write(T.EPISODE_OUTCOME, t + 3, bags.json_msg({"success": True, "seed": np.int64(4)}))
    return imgs, qs


def test_round_trip_values_equal(tmp_path):
    path = tmp_path / "bag"
    imgs, qs = _write_sample(path)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == bags.BAG_VERSION and meta["storage_identifier"] == "mcap"
    assert meta["custom_data"]["robot"] == "fr3"
    qos = {
        t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
        for t in meta["topics_with_message_count"]
    }
    assert qos[T.CAMERA_IMAGE][0]["reliability"] == "best_effort"
    assert qos[T.EPISODE_OUTCOME][0]["reliability"] == "reliable"
    with BagReader(path) as r:
        assert r.topics[T.CAMERA_IMAGE] == "sensor_msgs/msg/Image"
        assert r.message_counts["/joint_states"] == 20
        from clap_ros.data.images import image_to_numpy

        got_imgs = [image_to_numpy(m) for _, _, _, m in r.messages([T.CAMERA_IMAGE])]
        got = list(r.messages(["/joint_states"]))
        assert [ts for _, _, ts, _ in got] == [1_000_000_001 + i * 50_000_000 for i in range(20)]
        assert all(bags.stamp_to_ns(m.header.stamp) == ts for _, _, ts, m in got)
        np.testing.assert_array_equal(np.stack(got_imgs), np.stack(imgs))
        np.testing.assert_array_equal(np.stack([m.position for *_, m in got]), np.stack(qs))
        ((_, _, _, traj),) = list(r.messages(["/ctl/joint_trajectory"]))
        assert list(traj.joint_names) == ["j1", "j2", "j3"]
        assert bags.stamp_to_ns(traj.points[1].time_from_start) == 1_000_000_000
        ((_, _, _, cmd),) = list(r.messages(["/cmd"]))
        assert list(cmd.data) == [0.25]
        ((_, _, _, out),) = list(r.messages([T.EPISODE_OUTCOME]))
        assert json.loads(out.data) == {"success": True, "seed": 4}
        all_ts = [ts for _, _, ts, _ in r.raw_messages()]
        assert all_ts == sorted(all_ts) and len(all_ts) == 43
    # iterating the reader itself opens and closes the bag
    msgs = list(BagReader(path))
    assert [ts for _, _, ts, _ in msgs] == all_ts
    assert msgs[-1][0] == T.EPISODE_OUTCOME and msgs[-1][1] == "std_msgs/msg/String"


def test_require_names_missing_topics(tmp_path):
    _write_sample(tmp_path / "bag")
    with BagReader(tmp_path / "bag") as r:
        r.require([T.CAMERA_IMAGE])
        with pytest.raises(BagError, match=r"missing topic\(s\) /wrist_camera/image_raw"):
            r.require([T.CAMERA_IMAGE, T.WRIST_IMAGE])


def test_writer_refuses_existing_bag_and_type_clash(tmp_path):
    _write_sample(tmp_path / "bag")
    with pytest.raises(BagError, match="exists"):
        with BagWriter(tmp_path / "bag"):
            pass
    with BagWriter(tmp_path / "b2") as w:
        w.write("/x", 1, bags.string_msg("a"))
        with pytest.raises(BagError, match="has type std_msgs/msg/String"):
            w.write("/x", 2, bags.float64_array_msg([1.0]))
        with pytest.raises(BagError, match="was not added"):
            w.write_cdr("/y", 3, b"\x00\x01\x00\x00")


def test_metadata_written_even_when_recording_raises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with BagWriter(tmp_path / "b") as w:
            w.write("/x", 5, bags.string_msg("kept"))
            1 / 0
    with BagReader(tmp_path / "b") as r:
        assert [m.data for *_, m in r.messages()] == ["kept"]


@pytest.mark.parametrize(
    "damage", ["truncate", "garbage", "no_metadata", "missing", "loose_garbage"]
)
def test_reader_errors_name_the_bag(tmp_path, damage):
    path = tmp_path / "bag"
    _write_sample(path)
    mcap = next(path.glob("*.mcap"))
    if damage == "truncate":
        data = mcap.read_bytes()
        mcap.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        mcap.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif damage == "no_metadata":
        (path / "metadata.yaml").unlink()
    elif damage == "missing":
        path = tmp_path / "nope"
    else:
        path = tmp_path / "loose.mcap"
        path.write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError) as ei:
        with BagReader(path) as r:
            list(r.messages())
    assert str(path) in str(ei.value)


def test_find_bags(tmp_path):
    _write_sample(tmp_path / "a" / "ep1")
    _write_sample(tmp_path / "ep0")
    (tmp_path / "loose.mcap").write_bytes(b"x")
    found = bags.find_bags(tmp_path)
    assert found == sorted([tmp_path / "a" / "ep1", tmp_path / "ep0", tmp_path / "loose.mcap"])
    assert bags.find_bags(tmp_path / "ep0") == [tmp_path / "ep0"]
    with pytest.raises(BagError, match="no such"):
        bags.find_bags(tmp_path / "zzz")


def test_raw_rclpy_bytes_read_back(tmp_path):
    """What the ROS recorder writes: Fast DDS bytes (with their unused tail) via write_cdr."""
    ser = pytest.importorskip("rclpy.serialization")
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    js = JointState(name=["a", "b"], position=[1.0, 2.0], velocity=[0.5, 0.25])
    traj = JointTrajectory(
        joint_names=["a", "b"],
        points=[
            JointTrajectoryPoint(
                positions=[1.0, 2.0],
                velocities=[0.0, 0.0],
                time_from_start=Duration(sec=0, nanosec=100_000_000),
            )
        ],
    )
    with BagWriter(tmp_path / "b") as w:
        w.add_topic("/joint_states", T.TYPES["joint_state"])
        w.add_topic("/traj", T.TYPES["joint_trajectory"])
        w.write_cdr("/joint_states", 10, bytes(ser.serialize_message(js)))
        w.write_cdr("/traj", 20, bytes(ser.serialize_message(traj)))
    with BagReader(tmp_path / "b") as r:
        (_, _, _, m1), (_, _, _, m2) = list(r.messages())
    assert list(m1.name) == ["a", "b"] and list(m1.velocity) == [0.5, 0.25] and len(m1.effort) == 0
    assert list(m2.points[0].positions) == [1.0, 2.0]
    assert bags.stamp_to_ns(m2.points[0].time_from_start) == 100_000_000


def test_flipped_bytes_inside_a_chunk_are_detected(tmp_path):
    """Chunk CRCs are 0 in rosbags' MCAP files; the zstd content checksum catches the damage."""
    path = tmp_path / "bag"
    _write_sample(path)
    mcap = next(path.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    start = data.find(b"\x28\xb5\x2f\xfd")  # zstd frame magic: the first chunk's payload
    assert start > 0
    for i in range(start + 30, start + 34):
        data[i] ^= 0x5A
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError, match="corrupt"):
        with BagReader(path) as r:
            list(r.raw_messages())
