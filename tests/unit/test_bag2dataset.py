"""bag2dataset on synthetic bags with known timestamps: exact alignment, joint order by name,
commanded actions through the controller rules, gripper, metadata, stats, and bad bags."""

import numpy as np
import pytest

from clap_ros import topics as T
from clap_ros.cli import main as cli_main
from clap_ros.data import bags
from clap_ros.data.bag2dataset import ConvertConfig, convert, latest_index, make_grid
from clap_ros.data.dataset import Dataset
from clap_ros.robots import load_profile

MS = 1_000_000
FR3 = load_profile("fr3")
HOME = FR3.home.copy()
GRIP = FR3.gripper
JS_T = np.arange(5, 1000, 30) * MS  # 5, 35, ..., 995 ms
IMG_T = np.array([20, 86, 153, 220, 286, 353, 420, 486, 553, 620, 686, 753, 820, 886, 953]) * MS
FWD = [(150 * MS, 0.01), (450 * MS, 0.03), (460 * MS, 0.05)]  # (time, offset on every joint)


def js_q(t_ns):
    """Measured arm positions at a joint_states time: home + a known ramp."""
    return HOME + 0.1 * (t_ns / 1e9) + 0.001 * np.arange(7)


def finger(t_ns):
    return 0.04 - 0.03 * (t_ns / 1e9)  # closes from 0.04 to 0.01 m over the episode


def write_bag(
    path, names_order=None, command="forward", outcome=True, seed=3, success=True, robot="fr3"
):
    names = list(FR3.joint_names) + list(GRIP.joint_names)
    order = names_order or [6, 2, 0, 8, 4, 1, 3, 5, 7]  # scrambled: by name, never by order
    with bags.BagWriter(path) as w:
        w.write(T.INSTRUCTION, 0, bags.string_msg("stack the cubes"))
        for t in JS_T:
            pos = np.concatenate([js_q(t), [finger(t), finger(t)]])
            w.write(
                "/joint_states",
                int(t),
                bags.joint_state_msg([names[i] for i in order], pos[order], int(t)),
            )
        for k, t in enumerate(IMG_T):
            img = np.full((32, 48, 3), 10 + 15 * k, np.uint8)
            img[:, :, 2] = 200 - 10 * k
            w.write(T.CAMERA_IMAGE, int(t), bags.image_msg(img, int(t)))
        if command == "forward":
            for t, off in FWD:
                w.write(FR3.driver.forward_topic, t, bags.float64_array_msg(HOME + off))
        else:
            # one trajectory received at 100 ms, stamp 0: knots at +200 ms and +400 ms,
            # positions only
            w.write(
                FR3.driver.trajectory_topic,
                100 * MS,
                bags.joint_trajectory_msg(
                    FR3.joint_names, [0.2, 0.4], np.stack([HOME + 0.1, HOME + 0.2])
                ),
            )
        w.write(FR3.driver.gripper_command_topic, 400 * MS, bags.float64_array_msg([0.2]))
        if outcome:
            w.write(
                T.EPISODE_OUTCOME,
                999 * MS,
                bags.json_msg(
                    {
                        "robot": robot,
                        "task": "stack",
                        "seed": seed,
                        "success": success,
                        "instruction": "stack the cubes",
                        "appearance": {"light": 2},
                    }
                ),
            )


def test_grid_and_latest_index():
    g = make_grid(20 * MS, 953 * MS, 10)
    assert list(g) == [(20 + 100 * k) * MS for k in range(10)]
    assert list(make_grid(0, 10**9, 3)) == [0, 333333333, 666666667, 10**9]
    assert list(latest_index([10, 20, 30], np.array([5, 10, 25, 30, 99]))) == [-1, 0, 1, 2, 2]


def _convert(tmp_path, n=1, fps=10.0, **kw):
    for i in range(n):
        write_bag(tmp_path / "bags" / ("ep%d" % i), seed=i, **kw)
    out = tmp_path / "ds"
    summary = convert(tmp_path / "bags", out, ConvertConfig(fps=fps), progress=False)
    return summary, Dataset(out)


def test_alignment_exact_rows_forward_commands(tmp_path):
    summary, ds = _convert(tmp_path)
    assert len(summary["converted"]) == 1 and not summary["skipped"]
    ep = ds.load_episode(0)
    grid = np.array([(20 + 100 * k) * MS for k in range(10)])
    np.testing.assert_allclose(ep["timestamp"], np.arange(10) * 0.1, atol=1e-6)
    # state: latest joint_states at or before each grid time, in profile order
    js_idx = [int(np.flatnonzero(JS_T <= g)[-1]) for g in grid]
    exp_arm = np.stack([js_q(JS_T[i]) for i in js_idx])
    exp_grip = np.array([GRIP.command_from_position(finger(JS_T[i])) for i in js_idx])
    np.testing.assert_allclose(ep["state"][:, :7], exp_arm, atol=1e-6)
    np.testing.assert_allclose(ep["state"][:, 7], exp_grip, atol=1e-6)
    # action: the forward command in force at each grid time; before the first one, the arm holds
    # its measured position at the last joint_states before that command (125 ms)
    hold = js_q(125 * MS)
    exp_cmd = []
    for g in grid:
        past = [off for t, off in FWD if t <= g]
        exp_cmd.append(HOME + past[-1] if past else hold)
    np.testing.assert_allclose(ep["action"][:, :7], np.stack(exp_cmd), atol=1e-6)
    # gripper command 0.2 from 400 ms on; before it, the measured opening
    exp_gcmd = np.where(grid >= 400 * MS, 0.2, exp_grip)
    np.testing.assert_allclose(ep["action"][:, 7], exp_gcmd, atol=1e-6)
    # frames: latest image at or before each grid time (pixel value encodes the image index)
    img_idx = np.array([int(np.flatnonzero(IMG_T <= g)[-1]) for g in grid])
    frames = ep["images"]["observation.images.scene"]
    assert frames.shape == (10, 32, 48, 3)
    r = frames[:, :, :, 0].mean(axis=(1, 2))
    b = frames[:, :, :, 2].mean(axis=(1, 2))
    k = np.arange(len(IMG_T))
    # lossy coding shifts colours by a few levels: identify each frame by its nearest source image
    nearest = [
        int(np.argmin(np.abs(r[i] - (10 + 15 * k)) + np.abs(b[i] - (200 - 10 * k))))
        for i in range(10)
    ]
    assert nearest == list(img_idx)
    assert np.abs(r - (10 + 15 * img_idx)).max() < 5


def test_trajectory_commands_replayed_with_controller_rules(tmp_path):
    _, ds = _convert(tmp_path, command="trajectory")
    ep = ds.load_episode(0, images=False)
    assert ep["images"] == {}
    # received at 100 ms starting from the held position q0 (measured at 95 ms); linear through
    # knots at 300 ms (home+0.1) and 500 ms (home+0.2), then held.
    q0 = js_q(95 * MS)
    exp = []
    for k in range(10):
        t = 0.020 + 0.1 * k
        if t <= 0.1:
            exp.append(q0)
        elif t <= 0.3:
            exp.append(q0 + (t - 0.1) / 0.2 * (HOME + 0.1 - q0))
        elif t <= 0.5:
            exp.append(HOME + 0.1 + (t - 0.3) / 0.2 * 0.1)
        else:
            exp.append(HOME + 0.2)
    np.testing.assert_allclose(ep["action"][:, :7], np.stack(exp), atol=1e-5)


def test_metadata_tasks_info_and_stats(tmp_path):
    summary, ds = _convert(tmp_path, n=2)
    assert len(ds) == 2 and ds.robot == "fr3" and ds.fps == 10.0
    assert ds.joint_names == FR3.joint_names
    assert ds.info["features"]["observation.state"]["names"] == FR3.joint_names + ["gripper"]
    assert ds.info["features"]["observation.images.scene"]["shape"] == [32, 48, 3]
    assert ds.info["total_frames"] == 20
    m = ds.episodes[1]
    assert (m["seed"], m["success"], m["task_name"], m["appearance"]) == (
        1,
        True,
        "stack",
        {"light": 2},
    )
    assert m["instruction"] == "stack the cubes" and m["length"] == 10
    assert ds.tasks == {0: "stack the cubes"}
    ep1 = ds.load_episode(1, images=False)
    assert list(ep1["frame_index"]) == list(range(10)) and set(ep1["task_index"]) == {0}
    allstate = np.concatenate([ds.load_episode(i, images=False)["state"] for i in range(2)])
    np.testing.assert_allclose(
        ds.stats_array("observation.state", "mean"), allstate.mean(0), atol=1e-6
    )
    np.testing.assert_allclose(
        ds.stats_array("observation.state", "max"), allstate.max(0), atol=1e-6
    )
    np.testing.assert_allclose(
        ds.stats_array("action", "q01"),
        np.quantile(
            np.concatenate([ds.load_episode(i, images=False)["action"] for i in range(2)]),
            0.01,
            axis=0,
        ),
        atol=1e-6,
    )
    img = ds.stats["observation.images.scene"]
    assert len(img["mean"]) == 3 and 0.0 <= img["min"][0] <= img["mean"][0] <= img["max"][0] <= 1.0
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "ds" / "data" / "chunk-000" / "episode_000001.parquet")
    assert list(t.column("index").to_numpy()) == list(range(10, 20))
    import pyarrow as pa

    typ = t.schema.field("observation.state").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 8
    assert typ.value_type == pa.float32()


def test_wrong_joint_names_skip_with_clear_error(tmp_path, capsys):
    write_bag(tmp_path / "bags" / "good", seed=1)
    bad = tmp_path / "bags" / "bad"
    write_bag(bad, seed=2)
    # rewrite the bad one with a renamed joint
    import shutil

    shutil.rmtree(bad)
    names = list(FR3.joint_names) + list(GRIP.joint_names)
    names[2] = "panda_joint3"
    with bags.BagWriter(bad) as w:
        for t in JS_T:
            w.write("/joint_states", int(t), bags.joint_state_msg(names, np.zeros(9), int(t)))
        for t in IMG_T:
            w.write(T.CAMERA_IMAGE, int(t), bags.image_msg(np.zeros((32, 48, 3), np.uint8), int(t)))
        w.write(FR3.driver.forward_topic, 150 * MS, bags.float64_array_msg(HOME))
    summary = convert(
        tmp_path / "bags", tmp_path / "ds", ConvertConfig(fps=10, robot="fr3"), progress=False
    )
    assert [c["bag"] for c in summary["converted"]] == [str(tmp_path / "bags" / "good")]
    (skip,) = summary["skipped"]
    assert str(bad) in skip["reason"] and "fr3_joint3" in skip["reason"]
    assert "panda_joint3" in skip["reason"]


def test_bad_bags_are_skipped_and_named_cli(tmp_path, capsys):
    bdir = tmp_path / "bags"
    for i in range(2):
        write_bag(bdir / ("ep%d" % i), seed=i)
    write_bag(bdir / "truncated", seed=5)
    mcap = next((bdir / "truncated").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])
    write_bag(bdir / "garbage", seed=6)
    mcap = next((bdir / "garbage").glob("*.mcap"))
    mcap.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (bdir / "loose.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 20)
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(bdir),
            "--out",
            str(tmp_path / "ds"),
            "--fps",
            "10",
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    assert "2 converted, 3 skipped" in out
    for name in ("truncated", "garbage", "loose.mcap"):
        assert any(name in line and "skipped" in line for line in err.splitlines()), err
    ds = Dataset(tmp_path / "ds")
    assert sorted(e["seed"] for e in ds.episodes) == [0, 1]
    assert (
        len(list((tmp_path / "ds" / "videos").rglob("*.mp4"))) == 2
    )  # no leftovers of skipped bags
    # --strict: the same conversion exits non-zero because something was skipped
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(bdir),
            "--out",
            str(tmp_path / "ds2"),
            "--fps",
            "10",
            "--quiet",
            "--strict",
        ]
    )
    assert rc == 1
    # nothing convertible: non-zero, and no dataset left behind
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(bdir / "garbage"),
            "--out",
            str(tmp_path / "ds3"),
            "--robot",
            "fr3",
            "--quiet",
        ]
    )
    assert rc == 1 and not (tmp_path / "ds3").exists()
    # --overwrite with nothing convertible keeps the old dataset; no partial directories remain
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(bdir / "garbage"),
            "--out",
            str(tmp_path / "ds"),
            "--robot",
            "fr3",
            "--quiet",
            "--overwrite",
        ]
    )
    assert rc == 1 and len(Dataset(tmp_path / "ds")) == 2
    assert not list(tmp_path.glob(".*partial*"))
    # an existing dataset is never overwritten silently
    rc = cli_main(["bag2dataset", "--bags", str(bdir), "--out", str(tmp_path / "ds"), "--quiet"])
    assert rc == 1 and "exists" in capsys.readouterr().err


def test_missing_topics_and_unknown_robot(tmp_path):
    with bags.BagWriter(tmp_path / "bags" / "nocam") as w:
        for t in JS_T:
            w.write("/joint_states", int(t), bags.joint_state_msg(FR3.joint_names, HOME, int(t)))
    summary = convert(
        tmp_path / "bags", tmp_path / "ds", ConvertConfig(fps=10, robot="fr3"), progress=False
    )
    assert not summary["converted"]
    assert "/camera/image_raw" in summary["skipped"][0]["reason"]
    from clap_ros.data.bag2dataset import ConversionError

    with pytest.raises(ConversionError, match="pass --robot"):
        convert(tmp_path / "bags", tmp_path / "ds", ConvertConfig(fps=10), progress=False)


def test_help_text():
    with pytest.raises(SystemExit) as ei:
        cli_main(["bag2dataset", "--help"])
    assert ei.value.code == 0


def test_camera_set_fixed_by_first_episode(tmp_path):
    write_bag(tmp_path / "bags" / "a_plain", seed=0)
    with_wrist = tmp_path / "bags" / "b_wrist"
    write_bag(with_wrist, seed=1)
    # a second bag that also has a wrist camera: the dataset (scene only) cannot take it
    import shutil

    shutil.rmtree(with_wrist)
    with bags.BagWriter(with_wrist) as w:
        for t in JS_T:
            w.write("/joint_states", int(t), bags.joint_state_msg(FR3.joint_names, HOME, int(t)))
        for t in IMG_T:
            for topic in (T.CAMERA_IMAGE, T.WRIST_IMAGE):
                w.write(topic, int(t), bags.image_msg(np.zeros((32, 48, 3), np.uint8), int(t)))
        w.write(FR3.driver.forward_topic, 150 * MS, bags.float64_array_msg(HOME))
        w.write(FR3.driver.gripper_command_topic, 150 * MS, bags.float64_array_msg([1.0]))
    summary = convert(tmp_path / "bags", tmp_path / "ds", ConvertConfig(fps=10), progress=False)
    assert len(summary["converted"]) == 1
    assert "observation.images.wrist" in summary["skipped"][0]["reason"]
    assert Dataset(tmp_path / "ds").image_keys == ["observation.images.scene"]
