"""LeRobot v3.0 import/export (clap_ros.data.lerobot, `clap-ros dataset import-lerobot /
export-lerobot`): layout, exact state/action round trip, frames within codec tolerance, datasets
not written by us, and clear errors."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clap_ros.cli import main
from clap_ros.data.dataset import Dataset, DatasetWriter, EpisodeRecord
from clap_ros.data.lerobot import LeRobotError, export_lerobot, import_lerobot, read_tasks

NAMES = ["j1", "j2", "j3"]
LENGTHS = (12, 9, 15)
H, W = 32, 48
SCENE = "observation.images.scene"
WRIST = "observation.images.wrist"


def _frame(ep, k, cam=0):
    """A frame that tells its episode (background) and index (bar position) apart."""
    f = np.full((H, W, 3), 30 + 60 * ep + 20 * cam, np.uint8)
    x = (4 * k) % (W - 6)
    f[:, x : x + 6] = (250, 250 - 40 * cam, 60)
    return f


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    root = tmp_path_factory.mktemp("lr") / "ours"
    rng = np.random.default_rng(7)
    w = DatasetWriter(root, "toy", NAMES, fps=15)
    for e, n in enumerate(LENGTHS):
        for cam, key in enumerate(("scene", "wrist")):
            vw = w.video_writer(key)
            for k in range(n):
                vw.write(_frame(e, k, cam))
        w.add_episode(
            EpisodeRecord(
                state=rng.normal(size=(n, 4)),
                action=rng.normal(size=(n, 4)),
                timestamp=np.arange(n) / 15.0,
                instruction="push the %s block" % ("red", "blue")[e % 2],
                meta={
                    "seed": 100 + e,
                    "success": e != 1,
                    "task_name": "push",
                    "appearance": {"light": e, "colors": ["red", "blue"]},
                },
            )
        )
    w.finalize()
    return root


@pytest.fixture(scope="module")
def exported(ours, tmp_path_factory):
    out = tmp_path_factory.mktemp("lr") / "lerobot"
    s = export_lerobot(ours, out, progress=False)
    print(
        "export: %d frames in %.3f s (%.0f frames/s)"
        % (s["frames"], s["wall_s"], s["frames"] / s["wall_s"])
    )
    return out


def _episodes_table(root):
    return pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()


def test_export_writes_the_v3_layout(ours, exported):
    info = json.loads((exported / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "toy"
    assert info["fps"] == 15 and info["total_episodes"] == 3
    assert info["total_frames"] == sum(LENGTHS) and info["total_tasks"] == 2
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert (
        info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    assert info["splits"] == {"train": "0:3"}
    assert info["features"]["action"]["names"] == NAMES + ["gripper"]
    assert info["features"][SCENE]["dtype"] == "video"
    assert info["features"][SCENE]["info"]["video.height"] == H
    # all episodes in one data file and one video file per camera
    data = pq.read_table(exported / "data/chunk-000/file-000.parquet")
    assert data.num_rows == sum(LENGTHS)
    assert data.column("index").to_pylist() == list(range(sum(LENGTHS)))
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 4)
    for key in (SCENE, WRIST):
        assert (exported / "videos" / key / "chunk-000/file-000.mp4").is_file()
    eps = _episodes_table(exported)
    assert [e["episode_index"] for e in eps] == [0, 1, 2]
    assert [e["length"] for e in eps] == list(LENGTHS)
    assert eps[1]["tasks"] == ["push the blue block"]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [
        (0, 12),
        (12, 21),
        (21, 36),
    ]
    # episodes lie back to back in the mp4: [from, to) in seconds
    starts = np.cumsum((0,) + LENGTHS) / 15.0
    for e, ep in enumerate(eps):
        assert ep["videos/%s/from_timestamp" % SCENE] == pytest.approx(starts[e])
        assert ep["videos/%s/to_timestamp" % SCENE] == pytest.approx(starts[e + 1])
    assert eps[2]["seed"] == 102 and eps[1]["success"] is False
    assert len(eps[0]["stats/action/mean"]) == 4
    assert np.asarray(eps[0]["stats/%s/mean" % SCENE]).shape == (3, 1, 1)
    assert read_tasks(exported) == {0: "push the red block", 1: "push the blue block"}
    tasks_meta = json.loads(pq.read_schema(exported / "meta/tasks.parquet").metadata[b"pandas"])
    assert tasks_meta["index_columns"] == ["task"]  # pandas reads the task string as the index
    stats = json.loads((exported / "meta/stats.json").read_text())
    assert np.asarray(stats[SCENE]["mean"]).shape == (3, 1, 1)
    assert stats["action"] == Dataset(ours).stats["action"]


def _assert_same(a_root, b_root, max_err=6.0):
    a, b = Dataset(a_root), Dataset(b_root)
    assert len(a) == len(b) and a.joint_names == b.joint_names and a.robot == b.robot
    assert a.tasks == b.tasks and a.image_keys == b.image_keys
    for i in range(len(a)):
        x, y = a.load_episode(i), b.load_episode(i)
        assert np.array_equal(x["state"], y["state"]) and x["state"].dtype == y["state"].dtype
        assert np.array_equal(x["action"], y["action"])
        np.testing.assert_array_equal(x["timestamp"], y["timestamp"])
        assert x["instruction"] == y["instruction"]
        for k in ("seed", "success", "appearance", "task_name"):
            assert x["meta"].get(k) == y["meta"].get(k), k
        for key in a.image_keys:
            fx = x["images"][key].astype(np.float64)
            fy = y["images"][key].astype(np.float64)
            assert fx.shape == fy.shape
            err = np.abs(fx - fy).mean(axis=(1, 2, 3))
            assert err.max() < max_err, (key, i, err)
            # each frame is its own, not a neighbour (the bar moves 4 px per frame)
            if len(fx) > 1:
                shifted = np.abs(fx[1:] - fy[:-1]).mean(axis=(1, 2, 3))
                assert np.all(err[1:] < shifted)


def test_round_trip_is_exact_for_vectors(ours, exported, tmp_path):
    back = tmp_path / "back"
    s = import_lerobot(exported, back, progress=False)
    print(
        "import: %d frames in %.3f s (%.0f frames/s)"
        % (s["frames"], s["wall_s"], s["frames"] / s["wall_s"])
    )
    assert not s["skipped"] and s["joint_names_from"] == "clap_ros export"
    _assert_same(ours, back)


def test_round_trip_over_many_small_files(ours, tmp_path, capsys):
    """Tiny size limits: every episode its own data and video file (file-000, -001, ...)."""
    lr = tmp_path / "lr"
    rc = main(
        [
            "dataset",
            "export-lerobot",
            str(ours),
            "--out",
            str(lr),
            "--quiet",
            "--data-file-size-mb",
            "0.0001",
            "--video-file-size-mb",
            "0.0001",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "frames/s" in out.strip().splitlines()[-1]
    assert sorted(p.name for p in (lr / "data/chunk-000").iterdir()) == [
        "file-000.parquet",
        "file-001.parquet",
        "file-002.parquet",
    ]
    eps = _episodes_table(lr)
    assert [e["videos/%s/file_index" % WRIST] for e in eps] == [0, 1, 2]
    assert all(e["videos/%s/from_timestamp" % WRIST] == 0.0 for e in eps)
    rc = main(["dataset", "import-lerobot", str(lr), "--out", str(tmp_path / "back"), "--quiet"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    print(last)
    assert rc == 0 and last.startswith("import-lerobot: 3 episodes imported, 0 skipped")
    _assert_same(ours, tmp_path / "back")


# --- a LeRobot dataset not written by us ---------------------------------------------------
FR3 = ["fr3_joint%d" % k for k in range(1, 8)]


def _foreign(root, n_eps=2, n=6, version="v3.0", drop_feature=None):
    """LeRobot v3 as its own writer lays it out: state names in another order, PNG images in the
    parquet (dtype image), list<float32> columns, tasks.parquet with an unnamed pandas index."""
    import cv2

    order = FR3[::-1] + ["gripper"]  # reversed joint order
    rows = {
        "observation.state": [],
        "action": [],
        "observation.image": [],
        "timestamp": [],
        "frame_index": [],
        "episode_index": [],
        "index": [],
        "task_index": [],
    }
    for e in range(n_eps):
        for k in range(n):
            q = np.array([10 * e + k + j / 10 for j in range(7)] + [0.5], np.float32)
            # stored in the file's (reversed) order
            rows["observation.state"].append(np.r_[q[:7][::-1], q[7]].tolist())
            rows["action"].append(np.r_[q[:7][::-1] + 1, q[7]].tolist())
            img = np.full((16, 20, 3), 40 * e + 10 * k, np.uint8)
            rows["observation.image"].append(
                {"bytes": cv2.imencode(".png", img)[1].tobytes(), "path": None}
            )
            rows["timestamp"].append(k / 10.0)
            rows["frame_index"].append(k)
            rows["episode_index"].append(e)
            rows["index"].append(e * n + k)
            rows["task_index"].append(e % 2)
    (root / "data/chunk-000").mkdir(parents=True)
    table = pa.table(
        {
            "observation.state": pa.array(rows["observation.state"], pa.list_(pa.float32())),
            "action": pa.array(rows["action"], pa.list_(pa.float32())),
            "observation.image": pa.array(
                rows["observation.image"],
                pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            ),
            "timestamp": pa.array(rows["timestamp"], pa.float32()),
            **{
                k: pa.array(rows[k], pa.int64())
                for k in ("frame_index", "episode_index", "index", "task_index")
            },
        }
    )
    pq.write_table(table, root / "data/chunk-000/file-000.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "episode_index": list(range(n_eps)),
                "tasks": [["open the drawer"], ["close it"]][:n_eps],
                "length": [n] * n_eps,
                "data/chunk_index": [0] * n_eps,
                "data/file_index": [0] * n_eps,
                "dataset_from_index": [e * n for e in range(n_eps)],
                "dataset_to_index": [(e + 1) * n for e in range(n_eps)],
                "stats/action/mean": [[0.0] * 8] * n_eps,
            }
        ),
        root / "meta/episodes/chunk-000/file-000.parquet",
    )
    pq.write_table(
        pa.table({"task_index": [0, 1], "__index_level_0__": ["open the drawer", "close it"]}),
        root / "meta/tasks.parquet",
    )
    feats = {
        "observation.state": {"dtype": "float32", "shape": [8], "names": order},
        "action": {"dtype": "float32", "shape": [8], "names": {"motors": order}},
        "observation.image": {
            "dtype": "image",
            "shape": [16, 20, 3],
            "names": ["height", "width", "channels"],
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    if drop_feature:
        feats.pop(drop_feature)
    (root / "meta/info.json").write_text(
        json.dumps(
            {
                "codebase_version": version,
                "robot_type": "franka",
                "fps": 10,
                "features": feats,
                "total_episodes": n_eps,
                "total_frames": n_eps * n,
                "total_tasks": 2,
                "chunks_size": 1000,
                "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            }
        )
    )
    return root


def test_import_foreign_dataset_reorders_joints_by_name(tmp_path):
    src = _foreign(tmp_path / "foreign")
    s = import_lerobot(src, tmp_path / "ds", robot="fr3", progress=False)
    assert not s["skipped"] and s["robot"] == "fr3"
    ds = Dataset(tmp_path / "ds")
    assert (
        ds.joint_names == FR3 and ds.fps == 10.0 and ds.image_keys == ["observation.images.image"]
    )
    ep = ds.load_episode(1)
    np.testing.assert_array_equal(
        ep["state"][2], np.array([12 + j / 10 for j in range(7)] + [0.5], np.float32)
    )
    np.testing.assert_array_equal(ep["action"][:, :7], ep["state"][:, :7] + 1)
    assert ep["instruction"] == "close it" and ds.tasks == {0: "open the drawer", 1: "close it"}
    img = ep["images"]["observation.images.image"]
    assert img.shape == (6, 16, 20, 3)
    assert np.abs(img.astype(float).mean(axis=(1, 2, 3)) - (40 + 10 * np.arange(6))).max() < 3
    # without a profile, joint names come from the state feature (file order kept)
    s = import_lerobot(src, tmp_path / "ds2", progress=False)
    assert s["robot"] == "franka" and Dataset(tmp_path / "ds2").joint_names == FR3[::-1]


def test_not_v3_says_which_version(tmp_path, capsys):
    src = _foreign(tmp_path / "old", version="v2.1")
    with pytest.raises(
        LeRobotError, match=r"LeRobot v2\.1 dataset; this importer reads LeRobot v3\.0"
    ):
        import_lerobot(src, tmp_path / "x", progress=False)
    assert main(["dataset", "import-lerobot", str(src), "--out", str(tmp_path / "x")]) == 1
    assert "v2.1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_feature_and_wrong_joint_count(tmp_path):
    src = _foreign(tmp_path / "noact", drop_feature="action")
    with pytest.raises(LeRobotError, match=r"missing feature\(s\) \['action'\]"):
        import_lerobot(src, tmp_path / "x", progress=False)
    src = _foreign(tmp_path / "ok")
    with pytest.raises(LeRobotError, match="8 entries, so 7 arm joints"):
        import_lerobot(src, tmp_path / "x", robot="ur5e", progress=False)
    with pytest.raises(LeRobotError, match="gives 2 joint names"):
        import_lerobot(src, tmp_path / "x", joint_names=["a", "b"], progress=False)
    with pytest.raises(LeRobotError, match="not a LeRobot dataset directory"):
        import_lerobot(tmp_path, tmp_path / "x", progress=False)


def test_corrupt_video_skips_that_episode(ours, tmp_path, capsys):
    lr = tmp_path / "lr"
    export_lerobot(ours, lr, progress=False, video_file_size_mb=0.0001, data_file_size_mb=0.0001)
    bad = lr / "videos" / SCENE / "chunk-000/file-001.mp4"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated: episode 1 cannot be decoded
    rc = main(["dataset", "import-lerobot", str(lr), "--out", str(tmp_path / "ds"), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0 and "2 episodes imported, 1 skipped" in cap.out
    assert "episode 1" in cap.err and "file-001.mp4" in cap.err
    ds = Dataset(tmp_path / "ds")
    assert [e["lerobot_episode_index"] for e in ds.episodes] == [0, 2]
    np.testing.assert_array_equal(
        ds.load_episode(1)["state"], Dataset(ours).load_episode(2)["state"]
    )
    rc = main(
        [
            "dataset",
            "import-lerobot",
            str(lr),
            "--out",
            str(tmp_path / "ds2"),
            "--quiet",
            "--strict",
        ]
    )
    assert rc == 1


def test_export_refuses_existing_out(ours, tmp_path, capsys):
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr" / "keep").write_text("x")
    assert main(["dataset", "export-lerobot", str(ours), "--out", str(tmp_path / "lr")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "lr" / "keep").exists()
