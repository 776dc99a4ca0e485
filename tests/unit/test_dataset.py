"""DatasetWriter / Dataset round trip without bags, statistics, and clear errors."""

import json

import numpy as np
import pytest

from clap_ros.data.dataset import (
    Dataset,
    DatasetError,
    DatasetWriter,
    EpisodeRecord,
    ImageStats,
    data_relpath,
    video_relpath,
)

NAMES = ["j1", "j2", "j3"]


def _episode(n, seed, instruction="push the block"):
    rng = np.random.default_rng(seed)
    return EpisodeRecord(
        state=rng.normal(size=(n, 4)),
        action=rng.normal(size=(n, 4)),
        timestamp=np.arange(n) / 10.0,
        instruction=instruction,
        meta={"seed": seed, "success": bool(seed % 2)},
    )


def _frames(n, value):
    f = np.zeros((n, 16, 24, 3), np.uint8)
    f[..., 0] = value
    f[..., 1] = np.arange(24, dtype=np.uint8)[None, None, :] * 10
    return f


def _write(root, lengths=(5, 7)):
    w = DatasetWriter(root, "toy", NAMES, fps=10)
    eps = []
    for i, n in enumerate(lengths):
        vw = w.video_writer("scene")
        for f in _frames(n, 40 * (i + 1)):
            vw.write(f)
        ep = _episode(n, i, "task %d" % (i % 2))
        w.add_episode(ep)
        eps.append(ep)
    w.finalize()
    return eps


def test_round_trip(tmp_path):
    eps = _write(tmp_path / "ds")
    ds = Dataset(tmp_path / "ds")
    assert len(ds) == 2 and ds.fps == 10.0 and ds.joint_names == NAMES and ds.robot == "toy"
    assert ds.info["features"]["action"]["names"] == NAMES + ["gripper"]
    assert ds.tasks == {0: "task 0", 1: "task 1"}
    for i, ep in enumerate(eps):
        got = ds.load_episode(i)
        np.testing.assert_allclose(got["state"], ep.state.astype(np.float32))
        np.testing.assert_allclose(got["action"], ep.action.astype(np.float32))
        np.testing.assert_allclose(got["timestamp"], ep.timestamp, atol=1e-6)
        assert got["meta"]["seed"] == i and got["meta"]["length"] == len(ep.state)
        frames = got["images"]["observation.images.scene"]
        assert frames.shape == (len(ep.state), 16, 24, 3)
        assert abs(frames[..., 0].mean() - 40 * (i + 1)) < 4
    allstate = np.concatenate([e.state for e in eps]).astype(np.float32)
    np.testing.assert_allclose(
        ds.stats_array("observation.state", "std"), allstate.std(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        ds.stats_array("observation.state", "q99"),
        np.quantile(allstate.astype(np.float64), 0.99, axis=0),
        rtol=1e-5,
    )
    assert ds.stats["observation.state"]["count"] == [12]
    with pytest.raises(IndexError):
        ds.load_episode(2)


def test_image_stats_exact_on_known_pixels():
    st = ImageStats()
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = [[0, 255], [255, 255]]
    img[..., 1] = 51
    st.add(img)
    d = st.to_dict()
    assert d["mean"][0] == pytest.approx(0.75) and d["std"][0] == pytest.approx(np.sqrt(0.1875))
    assert d["min"][0] == 0.0 and d["max"][0] == 1.0 and d["q01"][0] == 0.0 and d["q99"][0] == 1.0
    assert d["mean"][1] == pytest.approx(0.2) and d["count"] == [1]


def test_writer_rejects_bad_episodes_and_keeps_nothing_of_them(tmp_path):
    w = DatasetWriter(tmp_path / "ds", "toy", NAMES, fps=10)
    vw = w.video_writer("scene")
    for f in _frames(4, 10):
        vw.write(f)
    with pytest.raises(DatasetError, match="3 frames|4 frames"):
        w.add_episode(_episode(3, 0))
    assert not (tmp_path / "ds" / video_relpath("observation.images.scene", 0)).exists()
    bad = _episode(3, 0)
    bad.action[1, 2] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        w.add_episode(bad)
    with pytest.raises(DatasetError, match="expected"):
        w.add_episode(EpisodeRecord(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), "x"))
    assert w.next_index == 0
    with pytest.raises(DatasetError, match="no episodes"):
        w.finalize()
    with pytest.raises(DatasetError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("keep me")
        DatasetWriter(tmp_path / "full", "toy", NAMES, fps=10)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="info.json: missing"):
        Dataset(tmp_path)
    _write(tmp_path / "ds")
    (tmp_path / "ds" / data_relpath(1)).unlink()
    with pytest.raises(DatasetError, match="episode_000001.parquet: missing"):
        Dataset(tmp_path / "ds").load_episode(1)
    v = tmp_path / "ds" / video_relpath("observation.images.scene", 0)
    from clap_ros.data.video import write_video

    v.unlink()
    write_video(v, _frames(2, 5), fps=10)
    with pytest.raises(DatasetError, match="2 frames"):
        Dataset(tmp_path / "ds").load_episode(0)
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    info["version"] = 99
    (tmp_path / "ds" / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="newer"):
        Dataset(tmp_path / "ds")
