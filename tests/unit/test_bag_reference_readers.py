"""Our bags read as rosbag2 (Jazzy) bags (issue 16 item 5): every topic of a recorded episode
decodes with the reference readers (mcap 1.6.0 + mcap-ros2-support 0.6.0, pinned in
requirements/dev.txt) to the same values our reader gives; the metadata says ros_distro jazzy in
metadata.yaml and in the MCAP ``rosbag2`` metadata record (serialized_metadata and ROS_DISTRO, as
Jazzy's reader looks); QoS durations are the RMW's "infinite" as rosbag2 records them; every bag
has a ``recorder`` entry."""

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml

from clap_ros.cli import main as cli_main
from clap_ros.data import bags
from clap_ros.data.bags import BagReader, BagWriter

INF = {"sec": 9223372036, "nsec": 854775807}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    rc = cli_main(
        [
            "sim",
            "record",
            "--direct",
            "--robot",
            "fr3",
            "--task",
            "reach",
            "--episodes",
            "1",
            "--seed",
            "1",
            "--out",
            str(out),
            "--camera-size",
            "64x48",
            "--camera-rate",
            "4",
            "--quiet",
        ]
    )
    assert rc == 0
    (bag,) = [p for p in out.iterdir() if p.is_dir()]
    return bag


def _mcap(bag: Path) -> Path:
    (f,) = bag.glob("*.mcap")
    return f


def test_reference_reader_versions_are_pinned():
    assert metadata.version("mcap") == "1.6.0"
    assert metadata.version("mcap-ros2-support") == "0.6.0"
    dev = (Path(__file__).resolve().parents[2] / "requirements" / "dev.txt").read_text()
    assert "mcap==1.6.0" in dev and "mcap-ros2-support==0.6.0" in dev


def test_every_topic_decodes_with_the_reference_readers(recorded):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    meta = yaml.safe_load((recorded / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    expected = {
        t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]
    }
    ours = {}
    with BagReader(recorded) as r:
        for topic, msgtype, ts, msg in r.messages():
            ours.setdefault(topic, []).append((ts, msg))
    seen = {}
    with open(_mcap(recorded), "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            seen.setdefault(channel.topic, []).append((message.log_time, decoded))
    assert set(seen) == set(expected) == set(ours) and len(expected) >= 7
    for topic, msgs in seen.items():
        assert len(msgs) == expected[topic] > 0, topic
        times = [t for t, _ in msgs]
        assert times == sorted(times), "log times not monotonic on %s" % topic
        assert times == [t for t, _ in ours[topic]], topic
    # the decoded values are ours, field for field, on the types that carry numbers and pixels
    for (_, a), (_, b) in zip(seen["/joint_states"], ours["/joint_states"]):
        assert list(a.name) == list(b.name)
        assert np.array_equal(np.asarray(a.position), np.asarray(b.position))
        assert (a.header.stamp.sec, a.header.stamp.nanosec) == (
            b.header.stamp.sec,
            b.header.stamp.nanosec,
        )
    for (_, a), (_, b) in zip(seen["/camera/image_raw"], ours["/camera/image_raw"]):
        assert (
            (a.width, a.height, a.encoding) == (b.width, b.height, b.encoding) == (64, 48, "rgb8")
        )
        assert bytes(a.data) == bytes(b.data)
    traj = [k for k in seen if k.endswith("/joint_trajectory")]
    for (_, a), (_, b) in zip(seen[traj[0]], ours[traj[0]]):
        assert [list(p.positions) for p in a.points] == [list(p.positions) for p in b.points]
    assert [m.data for _, m in seen["/clap/instruction"]] == [
        m.data for _, m in ours["/clap/instruction"]
    ]


def test_metadata_is_what_rosbag2_on_jazzy_writes(recorded):
    from mcap.reader import make_reader

    meta = yaml.safe_load((recorded / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["ros_distro"] == "jazzy" and meta["version"] == 9
    assert meta["custom_data"]["recorder"] == "direct"
    for t in meta["topics_with_message_count"]:
        for q in t["topic_metadata"]["offered_qos_profiles"]:
            assert q["deadline"] == q["lifespan"] == q["liveliness_lease_duration"] == INF
            assert q["liveliness"] == "automatic" and q["history"] == "keep_last"
    with open(_mcap(recorded), "rb") as f:
        reader = make_reader(f)
        records = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
        channels = reader.get_summary().channels.values()
    assert len(records) == 1
    rec = records[0].metadata
    assert rec["ROS_DISTRO"] == "jazzy"
    embedded = yaml.safe_load(rec["serialized_metadata"])
    assert embedded["ros_distro"] == "jazzy" and embedded["custom_data"]["recorder"] == "direct"
    for ch in channels:  # the per-channel QoS ros2 bag play offers again
        (q,) = yaml.safe_load(ch.metadata["offered_qos_profiles"])
        assert q["deadline"] == INF and q["liveliness_lease_duration"] == INF, ch.topic
    by_topic = {c.topic: yaml.safe_load(c.metadata["offered_qos_profiles"])[0] for c in channels}
    assert by_topic["/camera/image_raw"]["reliability"] == "best_effort"
    assert by_topic["/clap/instruction"]["durability"] == "transient_local"


@pytest.mark.parametrize("storage, compress", [("mcap", True), ("mcap", False), ("sqlite3", False)])
def test_every_bag_says_jazzy_and_its_recorder(tmp_path, storage, compress):
    path = tmp_path / "b"
    msg = bags.typestore().types["std_msgs/msg/String"](data="hi")
    with BagWriter(path, compress=compress, storage=storage) as w:
        w.write("/clap/instruction", 5, msg)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["ros_distro"] == "jazzy"
    assert meta["custom_data"] == {"writer": "clap_ros", "recorder": bags.DEFAULT_RECORDER}
    with BagWriter(tmp_path / "c", recorder="clap-ros eval-bag --mode ros") as w:
        w.write("/clap/instruction", 5, msg)
    meta = yaml.safe_load((tmp_path / "c" / "metadata.yaml").read_text())
    assert (
        meta["rosbag2_bagfile_information"]["custom_data"]["recorder"]
        == "clap-ros eval-bag --mode ros"
    )
    with BagReader(path) as r:  # and it still reads back
        assert [m.data for *_, m in r.messages()] == ["hi"]
