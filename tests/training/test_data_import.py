"""The trainer's loaders read what `clap-ros dataset import-lerobot` / `import-videos` write."""

import numpy as np

from clap_ros.data.dataset import DatasetWriter, EpisodeRecord
from clap_ros.data.lerobot import export_lerobot, import_lerobot
from clap_ros.data.video import write_video
from clap_ros.data.video_import import import_videos
from clap_train.data import (
    build_human_windows,
    build_robot_windows,
    load_human_clips,
    load_robot_episodes,
    make_synthetic_episodes,
    make_synthetic_human_clips,
)


def test_trainer_reads_an_imported_lerobot_dataset(tmp_path):
    eps = make_synthetic_episodes(3, length=20, image_size=32, seed=3)
    w = DatasetWriter(tmp_path / "ours", "toy", ["x", "y"], fps=15)
    for ep in eps:
        vw = w.video_writer("scene")
        for f in ep["images"]["observation.images.scene"]:
            vw.write(f)
        w.add_episode(
            EpisodeRecord(
                ep["state"],
                ep["action"],
                ep["timestamp"],
                ep["instruction"],
                meta={"appearance": ep["appearance"], "task_name": "synthetic"},
            )
        )
    w.finalize()
    export_lerobot(tmp_path / "ours", tmp_path / "lerobot", progress=False)
    import_lerobot(tmp_path / "lerobot", tmp_path / "back", progress=False)

    loaded = load_robot_episodes(tmp_path / "back", image_key="observation.images.scene")
    assert len(loaded) == 3
    for ep, got in zip(eps, loaded):
        np.testing.assert_array_equal(got["action"], ep["action"])
        assert got["appearance"] == ep["appearance"] and got["task_name"] == "synthetic"
    win = build_robot_windows(loaded, H=4, image_size=32, image_key="observation.images.scene")
    assert len(win) == 3 * (20 - 4) and tuple(win.frames.shape) == (60, 3, 32, 32)
    assert set(win.appearance) == {"background", "distractor"}


def test_trainer_reads_imported_human_videos(tmp_path):
    clips = make_synthetic_human_clips(4, length=24, image_size=48, seed=1)
    src = tmp_path / "src"
    for i, c in enumerate(clips):
        write_video(src / c["action_category"] / ("clip%d.mp4" % i), c["frames"], fps=30)
    s = import_videos(src, tmp_path / "human", fps=15, size=(32, 32), progress=False)
    assert len(s["clips"]) == 4 and not s["skipped"]
    loaded = load_human_clips(tmp_path / "human")
    assert sorted(c["action_category"] for c in loaded) == sorted(
        c["action_category"] for c in clips
    )
    assert all(c["frames"].shape == (12, 32, 32, 3) for c in loaded)
    win = build_human_windows(loaded, H=4, image_size=32)
    assert len(win) == 4 * (12 - 4) and len(win.categories) == 4
