"""`clap-ros sim record --direct`: one real MuJoCo episode into a bag, then bag2dataset on it."""

import json

import numpy as np
import pytest
import yaml

from clap_ros import topics as T
from clap_ros.cli import main as cli_main
from clap_ros.data.bags import BagReader
from clap_ros.data.dataset import Dataset
from clap_ros.data.record import parse_size
from clap_ros.robots import load_profile

pytest.importorskip("mujoco")


def _ros_recorder_topics(profile, mode):
    """Topic -> type of what the ROS recorder (episode_runner) records, for comparison."""
    from clap_ros.nodes.episode_runner import _recorded_topics

    topics = {k: v[2] for k, v in _recorded_topics(profile, mode, False).items()}
    topics[T.EPISODE_OUTCOME] = T.TYPES["string"]
    return topics


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["joint_trajectory", "forward_position"])
def test_direct_record_then_bag2dataset(tmp_path, capsys, mode):
    fr3 = load_profile("fr3")
    out = tmp_path / "bags"
    # small, slow camera: rendering dominates the cost of an episode on a CPU
    rc = cli_main(
        [
            "sim",
            "record",
            "--direct",
            "--robot",
            "fr3",
            "--task",
            "pick_place",
            "--episodes",
            "1",
            "--seed",
            "3",
            "--out",
            str(out),
            "--camera-size",
            "64x48",
            "--camera-rate",
            "4",
            "--command-mode",
            mode,
            "--quiet",
        ]
    )
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert "recorded 1 episode" in stdout and "MB written" in stdout
    bag = out / "fr3_pick_place_seed000003"
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["custom_data"]["recorder"] == "direct"

    with BagReader(bag) as r:
        assert r.topics == _ros_recorder_topics(fr3, mode)
        counts = r.message_counts
        duration_s = (r.end_time_ns - r.start_time_ns) / 1e9
        outcome = [json.loads(m.data) for *_, m in r.messages([T.EPISODE_OUTCOME])]
        js = [(ts, m) for _, _, ts, m in r.messages([fr3.driver.joint_states_topic])]
        imgs = [(ts, m) for _, _, ts, m in r.messages([T.CAMERA_IMAGE])]
    assert len(outcome) == 1 and outcome[0]["seed"] == 3 and outcome[0]["robot"] == "fr3"
    assert outcome[0]["command_mode"] == mode and outcome[0]["rejected_commands"] == 0
    assert outcome[0]["success"] is True
    # rates: joint_states at the profile's rate (at most one per 2 ms physics step), camera at
    # 4 Hz, on the sim clock
    js_rate = min(fr3.driver.joint_states_rate_hz, 500.0)
    assert counts[fr3.driver.joint_states_topic] == pytest.approx(js_rate * duration_s, rel=0.02)
    assert counts[T.CAMERA_IMAGE] == pytest.approx(4 * duration_s, abs=2)
    assert all(ts == int(m.header.stamp.sec) * 10**9 + int(m.header.stamp.nanosec) for ts, m in js)
    assert list(js[0][1].name) == fr3.joint_names + fr3.gripper.joint_names
    assert (imgs[0][1].width, imgs[0][1].height, imgs[0][1].encoding) == (64, 48, "rgb8")

    rc = cli_main(
        ["bag2dataset", "--bags", str(out), "--out", str(tmp_path / "ds"), "--fps", "4", "--quiet"]
    )
    assert rc == 0
    ds = Dataset(tmp_path / "ds")
    ep = ds.load_episode(0)
    assert ep["meta"]["success"] is True and ep["meta"]["seed"] == 3
    assert ep["instruction"] == outcome[0]["instruction"]
    n = len(ep["timestamp"])
    assert n == pytest.approx(4 * duration_s, abs=2)
    assert ep["images"]["observation.images.scene"].shape == (n, 48, 64, 3)
    s, a = ep["state"], ep["action"]
    # the arm follows its command closely, and the arm moved
    assert np.abs(a[:, :7] - s[:, :7]).max() < 0.1
    assert np.ptp(s[:, :7], axis=0).max() > 0.3
    # the gripper closes on the cube and opens again
    assert a[:, 7].min() < 0.1 and a[0, 7] > 0.9 and a[-1, 7] > 0.9
    assert s[:, 7].min() < 0.9


def test_parse_size():
    assert parse_size("128x96") == (128, 96)
    import argparse

    for bad in ("128", "0x10", "127x128", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_record_refuses_existing_bag_and_bad_task(tmp_path, capsys):
    (tmp_path / "fr3_pick_place_seed000000").mkdir(parents=True)
    rc = cli_main(["sim", "record", "--direct", "--out", str(tmp_path), "--quiet"])
    assert rc == 1 and "never overwritten" in capsys.readouterr().err
    rc = cli_main(["sim", "record", "--direct", "--task", "juggle", "--out", str(tmp_path)])
    assert rc == 2 and "unknown task 'juggle'" in capsys.readouterr().err
