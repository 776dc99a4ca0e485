"""Human-video renderer: a floating hand does the tasks; clips are real H.264 mp4 files and
labels.json follows docs/INTERFACES.md with no actions or proprioception."""

import json

import numpy as np
import pytest

from clap_ros.cli import main
from clap_ros.sim import TASKS, SimWorld, make_expert, run_plan
from clap_ros.sim.embodiments import FloatingHandEmbodiment

CLIP_KEYS = {
    "file",
    "action_category",
    "instruction",
    "scene_id",
    "appearance",
    "num_frames",
    "seed",
}


@pytest.mark.parametrize("task", list(TASKS))
def test_floating_hand_expert_solves_the_task(task):
    world = SimWorld(task=task, seed=3, embodiment=FloatingHandEmbodiment())
    assert world.profile is None and world.arm_qpos().shape == (0,)
    assert not world.success()
    assert run_plan(world, make_expert(world).plan())


def _decode(path):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, frames


def test_cli_writes_clips_and_labels_and_reuses_scenes(tmp_path):
    out = tmp_path / "human"
    assert (
        main(
            [
                "sim",
                "human-videos",
                "--task",
                "push",
                "--episodes",
                "2",
                "--scenes",
                "1",
                "--size",
                "64x80",
                "--fps",
                "15",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    labels = json.loads((out / "labels.json").read_text())
    assert set(labels) == {"format", "version", "fps", "clips"}
    assert labels["format"] == "clap_ros_human_videos" and labels["version"] == 1
    assert labels["fps"] == 15
    assert len(labels["clips"]) == 2
    for clip in labels["clips"]:
        assert set(clip) == CLIP_KEYS  # nothing else: no actions, no proprioception
        assert clip["action_category"] == "push" and clip["scene_id"] == 0
        assert clip["instruction"].startswith("push the ")
        codec, pix_fmt, frames = _decode(out / clip["file"])
        assert codec == "h264" and pix_fmt == "yuv420p"
        assert len(frames) == clip["num_frames"] > 15
        assert frames[0].shape == (64, 80, 3)
        # The hand moves: first and middle frames differ.
        assert np.abs(frames[0].astype(int) - frames[len(frames) // 2].astype(int)).mean() > 0.5
    assert labels["clips"][0]["seed"] != labels["clips"][1]["seed"]
    # Same scene id -> same look (scene factors) even though layouts differ.
    a, b = (c["appearance"] for c in labels["clips"])
    for key in ("table_texture", "wall_texture", "light", "camera_jitter", "distractors"):
        assert a[key] == b[key]

    # Running again into the same directory is refused (nothing is overwritten) ...
    before = (out / "labels.json").read_text()
    with pytest.raises(SystemExit):
        main(
            [
                "sim",
                "human-videos",
                "--task",
                "stack",
                "--episodes",
                "1",
                "--size",
                "64x80",
                "--fps",
                "15",
                "--out",
                str(out),
            ]
        )
    assert (out / "labels.json").read_text() == before
    # ... unless appending: a different task in the same scene keeps the look.
    assert (
        main(
            [
                "sim",
                "human-videos",
                "--task",
                "stack",
                "--episodes",
                "1",
                "--scenes",
                "1",
                "--size",
                "64x80",
                "--fps",
                "15",
                "--out",
                str(out),
                "--append",
            ]
        )
        == 0
    )
    labels = json.loads((out / "labels.json").read_text())
    assert [c["file"] for c in labels["clips"]] == ["videos/%06d.mp4" % i for i in range(3)]
    stack = labels["clips"][2]
    assert stack["action_category"] == "stack"
    for key in ("table_texture", "wall_texture", "light", "camera_jitter"):
        assert stack["appearance"][key] == a[key]
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        "000000.mp4",
        "000001.mp4",
        "000002.mp4",
    ]


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["sim", "human-videos", "--task", "juggle", "--episodes", "1", "--out", str(tmp_path)])
    assert "juggle" in str(e.value)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "sim",
                "human-videos",
                "--task",
                "push",
                "--episodes",
                "1",
                "--size",
                "63x64",
                "--out",
                str(tmp_path),
            ]
        )
    assert "even" in str(e.value)
    assert not (tmp_path / "labels.json").exists()
