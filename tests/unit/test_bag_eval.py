"""clap-ros eval-bag, offline mode, on short sim bags with the shipped bundle: metrics.json,
report.html, the summary over several bags, and the bad-input errors (each names its cause and
the other bags are still evaluated)."""

import base64
import json
import shutil

import numpy as np
import pytest

from clap_ros import topics as T
from clap_ros.cli import main as cli_main
from clap_ros.data import bags
from clap_ros.eval.bag_eval import BagEvalConfig, BagEvaluator

MODEL = "models/default"


@pytest.fixture(scope="module")
def sim_bags(tmp_path_factory):
    from clap_ros.data.record import DirectConfig, record_direct

    out = tmp_path_factory.mktemp("bags")
    res = record_direct("fr3", "reach", [0, 1], out, DirectConfig(), progress=False)
    return [r["bag"] for r in res]


def rewrite(src, dst, drop=(), edit=None):
    """Copy a bag message by message; ``edit(topic, msg)`` may change a message in place."""
    with bags.BagReader(src) as r, bags.BagWriter(dst) as w:
        types = r.topics
        for topic, msgtype, ts, msg in r.messages():
            if topic in drop:
                continue
            if topic not in w.topics:
                w.add_topic(topic, types[topic])
            if edit is not None:
                msg = edit(topic, msg) or msg
            w.write(topic, ts, msg)
    return dst


def finite(x):
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, list):
        return all(finite(v) for v in x)
    if isinstance(x, float):
        return np.isfinite(x)
    return True


def test_offline_two_bags_metrics_report_and_summary(sim_bags, tmp_path):
    out = tmp_path / "eval"
    rc = cli_main(
        [
            "eval-bag",
            "--bag",
            sim_bags[0],
            "--bag",
            sim_bags[1],
            "--model",
            MODEL,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["format"] == "clap_ros_bag_eval" and m["mode"] == "offline"
    assert m["evaluated"] == 2 and m["failed"] == 0 and len(m["bags"]) == 2
    for b in m["bags"]:
        assert b["reference"] == "commands"
        assert b["reference_topic"] == "/fr3_arm_controller/joint_trajectory"
        assert b["instruction"]
        for key in ("chunk", "rf_chunk"):
            c = b[key]
            assert c["chunks"] > 5 and c["steps"] > 0
            assert len(c["mae_per_joint"]) == 7 and len(c["rmse_per_joint"]) == 7
            assert all(0 <= v < 1.0 for v in c["mae_per_joint"])
            assert all(r >= a for r, a in zip(c["rmse_per_joint"], c["mae_per_joint"]))
        assert 0.0 <= b["gripper"]["agreement"] <= 1.0
        assert b["smoothness"]["jerk"]["max"] > 0
        assert b["boundaries"]["position"]["boundaries"] >= 1
        assert b["latency_ms"]["count"] >= 5 and b["latency_ms"]["p50"] > 0
        assert 5.0 < b["rates"]["command_hz"] < 30.0  # one trajectory per 15 Hz chunk
        assert b["counts"]["chunks_accepted"] > 5 and b["counts"]["watchdog_stops"] == 0
        assert b["counts"]["safety_interventions"] >= 0
        assert b["counts"]["plans"] >= 3 and b["counts"]["latents"] >= 10
        assert finite(b), b
    s = m["summary"]
    assert [r["name"] for r in s["per_bag"]] == [p.split("/")[-1] for p in sim_bags]
    agg = s["aggregate"]
    assert agg["bags"] == 2
    assert agg["chunk MAE"] == pytest.approx(np.mean([b["chunk"]["mae"] for b in m["bags"]]))
    assert agg["chunks"] == sum(b["counts"]["chunks_accepted"] for b in m["bags"])
    html = (out / "report.html").read_text()
    imgs = html.count("src='data:image/png;base64,")
    assert imgs == 6  # 3 plots per bag, embedded
    assert "http://" not in html and "https://" not in html  # opens offline
    first = html.split("src='data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "aggregate (2)" in html and "Summary" in html


def test_offline_is_reproducible_with_the_same_seed(sim_bags, tmp_path):
    a = BagEvaluator(
        BagEvalConfig(bags=[sim_bags[0]], out=str(tmp_path / "a"), progress=False),
        log=lambda *x, **k: None,
    ).run()
    b = BagEvaluator(
        BagEvalConfig(bags=[sim_bags[0]], out=str(tmp_path / "b"), progress=False),
        log=lambda *x, **k: None,
    ).run()
    # virtual time includes measured compute time, so timing may shift a chunk; the model's
    # noise is seeded, the numbers stay close
    ca, cb = a["bags"][0]["rf_chunk"]["mae"], b["bags"][0]["rf_chunk"]["mae"]
    assert abs(ca - cb) < 0.01


def test_bag_without_commands_falls_back_to_joint_states(sim_bags, tmp_path):
    bag = rewrite(sim_bags[0], tmp_path / "nocmd", drop={"/fr3_arm_controller/joint_trajectory"})
    m = BagEvaluator(
        BagEvalConfig(bags=[str(bag)], out=str(tmp_path / "o"), progress=False),
        log=lambda *x, **k: None,
    ).run()
    b = m["bags"][0]
    assert b["reference"] == "joint_states" and b["reference_topic"] == "/joint_states"
    assert any("reference is the recorded joint_states" in n for n in b["notes"])
    assert b["chunk"]["mae"] is not None and np.isfinite(b["chunk"]["mae"])


def test_error_cases_name_the_cause_and_keep_the_other_bags(sim_bags, tmp_path, capsys):
    good = sim_bags[0]
    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    mcap = next(truncated.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    no_camera = rewrite(good, tmp_path / "no_camera", drop={T.CAMERA_IMAGE})

    def rename(topic, msg):
        if topic == "/joint_states":
            msg.name = [n.replace("fr3_", "panda_") for n in msg.name]

    wrong_joints = rewrite(good, tmp_path / "wrong_joints", edit=rename)

    def depth(topic, msg):
        if topic == T.CAMERA_IMAGE:
            arr = np.zeros((msg.height, msg.width), dtype=np.uint16)
            return bags.image_msg(arr, bags.stamp_to_ns(msg.header.stamp), encoding="16UC1")

    bad_encoding = rewrite(good, tmp_path / "bad_encoding", edit=depth)
    missing = tmp_path / "does_not_exist"
    out = tmp_path / "eval"
    argv = ["eval-bag", "--model", MODEL, "--out", str(out), "--no-progress"]
    for b in (truncated, no_camera, wrong_joints, bad_encoding, missing, good):
        argv += ["--bag", str(b)]
    rc = cli_main(argv)
    assert rc == 1  # some failed, the good one evaluated
    err = capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["evaluated"] == 1 and m["failed"] == 5
    errors = {b["name"]: b.get("error") for b in m["bags"]}
    assert "corrupt or truncated" in errors["truncated"]
    assert "missing topic(s) /camera/image_raw" in errors["no_camera"]
    assert "do not match robot profile 'fr3'" in errors["wrong_joints"]
    assert "panda_joint1" in errors["wrong_joints"] or "fr3_joint1" in errors["wrong_joints"]
    assert "16UC1" in errors["bad_encoding"]
    assert "does not exist" in errors["does_not_exist"]
    assert errors[good.split("/")[-1]] is None
    for name in errors:
        if errors[name]:
            assert name in err  # one line per skipped bag on stderr
    assert "not evaluated" in (out / "report.html").read_text()


def test_cli_help_and_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        cli_main(["eval-bag", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--topic-map" in text and "Examples:" in text and "--mode" in text
    with pytest.raises(SystemExit):
        cli_main(["eval-bag", "--bag", "x", "--out", str(tmp_path), "--rate", "fast"])
    rc = cli_main(["eval-bag", "--bag", "x", "--out", str(tmp_path), "--model", "nope/none"])
    assert rc == 2
    assert "--model nope/none" in capsys.readouterr().err


def test_user_bag_with_other_topic_names_through_a_topic_map(sim_bags, tmp_path):
    pytest.importorskip("clap_ros.data.topic_map")
    names = {
        T.CAMERA_IMAGE: "/cam/rgb",
        T.CAMERA_INFO: "/cam/info",
        "/joint_states": "/robot/joint_states",
        T.INSTRUCTION: "/task/text",
        "/fr3_arm_controller/joint_trajectory": "/teleop/trajectory",
        "/gripper_controller/commands": "/teleop/gripper",
    }
    bag = tmp_path / "user"
    with bags.BagReader(sim_bags[0]) as r, bags.BagWriter(bag) as w:
        for topic, msgtype, ts, msg in r.messages():
            w.write(names.get(topic, topic), ts, msg)
    tmap = tmp_path / "map.yaml"
    tmap.write_text(
        "camera: /cam/rgb\ncamera_info: /cam/info\njoint_states: /robot/joint_states\n"
        "instruction: /task/text\narm_command: /teleop/trajectory\n"
        "gripper_command: /teleop/gripper\n"
    )
    quiet = dict(log=lambda *a, **k: None)
    plain = BagEvaluator(
        BagEvalConfig(bags=[str(bag)], out=str(tmp_path / "a"), progress=False), **quiet
    ).run()
    assert plain["failed"] == 1 and "/camera/image_raw" in plain["bags"][0]["error"]
    mapped = BagEvaluator(
        BagEvalConfig(
            bags=[str(bag)], out=str(tmp_path / "b"), topic_map=str(tmap), progress=False
        ),
        **quiet,
    ).run()
    b = mapped["bags"][0]
    assert mapped["evaluated"] == 1, b.get("error")
    assert b["reference"] == "commands" and b["reference_topic"] == "/teleop/trajectory"
    assert b["gripper"]["reference"] == "gripper commands"
    assert b["chunk"]["chunks"] > 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("camra: /cam/rgb\n")
    rc = cli_main(
        [
            "eval-bag",
            "--bag",
            str(bag),
            "--out",
            str(tmp_path / "c"),
            "--topic-map",
            str(bad),
            "--no-progress",
        ]
    )
    assert rc == 2


def test_a_folder_of_bags_expands_to_its_bags(sim_bags, tmp_path):
    from pathlib import Path

    from clap_ros.eval.bag_eval import expand_bag_args

    folder = Path(sim_bags[0]).parent
    got = expand_bag_args([str(folder)])
    assert sorted(got) == sorted(str(b) for b in sim_bags)
    # a bag stays itself; a folder without bags stays as given (the evaluator reports it)
    assert expand_bag_args([str(sim_bags[0])]) == [str(sim_bags[0])]
    assert expand_bag_args([str(tmp_path)]) == [str(tmp_path)]
