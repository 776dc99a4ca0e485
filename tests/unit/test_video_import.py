"""`clap-ros dataset import-videos`: folder of clips + labels -> labels.json + videos/ (the layout
clap_ros.sim.human_video writes); frame sampling, resizing, labels formats, bad clips."""

import json

import numpy as np
import pytest

from clap_ros.cli import main
from clap_ros.data.video import read_video, video_info, write_video
from clap_ros.data.video_import import (
    LabelsError,
    fit_frame,
    import_videos,
    read_labels,
    sampled_frames,
)


def _clip(n, h=48, w=64, shade=0):
    """Frame k has brightness 8*k (+shade): the index survives the codec."""
    return np.stack([np.full((h, w, 3), min(255, 8 * k + shade), np.uint8) for k in range(n)])


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    write_video(src / "78687.mp4", _clip(30), fps=30)  # 1 s
    write_video(src / "sub" / "42.mp4", _clip(20, h=64, w=48), fps=20)  # 1 s, portrait
    write_video(src / "nolabel.mp4", _clip(10), fps=30)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    good = (src / "78687.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(good[: len(good) // 3])
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            [
                {
                    "id": "78687",
                    "label": "pushing cup from left to right",
                    "template": "Pushing [something] from left to right",
                    "placeholders": ["cup"],
                },
                {
                    "id": "42",
                    "label": "lifting a pen",
                    "template": "Lifting [something]",
                    "placeholders": ["a pen"],
                },
                {"id": "broken", "label": "x", "template": "X"},
                {"id": "truncated", "label": "y", "template": "Y"},
                {"id": "99999", "label": "no such video", "template": "Z"},
            ]
        )
    )
    return src, labels


def test_import_with_ssv2_labels(folder, tmp_path, capsys):
    src, labels = folder
    out = tmp_path / "human"
    rc = main(
        [
            "dataset",
            "import-videos",
            str(src),
            "--out",
            str(out),
            "--labels",
            str(labels),
            "--fps",
            "15",
            "--size",
            "32x32",
            "--quiet",
        ]
    )
    cap = capsys.readouterr()
    last = cap.out.strip().splitlines()[-1]
    print(last)
    assert rc == 0
    assert (
        last.startswith("import-videos: 2 clips imported, 3 skipped; 50 frames decoded, 30 written")
        and "frames/s" in last
    )
    assert "broken.mp4" in cap.err and "truncated.mp4" in cap.err and "nolabel.mp4" in cap.err
    assert "1 label entries matched no video (e.g. 99999)" in cap.out
    meta = json.loads((out / "labels.json").read_text())
    assert meta["format"] == "clap_ros_human_videos" and meta["version"] == 1 and meta["fps"] == 15
    by_src = {c["source"]: c for c in meta["clips"]}
    push, lift = by_src["78687.mp4"], by_src["sub/42.mp4"]
    assert push["action_category"] == "pushing something from left to right"
    assert push["instruction"] == "pushing cup from left to right"
    assert lift["action_category"] == "lifting something" and lift["instruction"] == "lifting a pen"
    assert push["label_fields"]["placeholders"] == ["cup"]
    assert {c["scene_id"] for c in meta["clips"]} == {0, 1}
    for c in meta["clips"]:
        frames = read_video(out / c["file"])
        assert frames.shape == (15, 32, 32, 3) and c["num_frames"] == 15  # 1 s at 15 fps
        assert video_info(out / c["file"])["codec"] == "h264"
    # 30 fps -> 15 fps keeps every other frame: brightness 0, 16, 32, ...
    got = read_video(out / push["file"]).astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(got, 16 * np.arange(15), atol=3)
    assert not list(tmp_path.glob(".human.partial*"))

    # --strict: the same run fails because clips were skipped
    rc = main(
        [
            "dataset",
            "import-videos",
            str(src),
            "--out",
            str(tmp_path / "h2"),
            "--labels",
            str(labels),
            "--size",
            "32x32",
            "--quiet",
            "--strict",
        ]
    )
    assert rc == 1


def test_csv_labels_and_folder_categories(folder, tmp_path):
    src, _ = folder
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,instruction\n78687.mp4,push,push the cup\nsub/42.mp4,lift,\n")
    s = import_videos(src, tmp_path / "a", labels=csv, fps=10, size=(16, 24), progress=False)
    assert sorted((c["action_category"], c["instruction"]) for c in s["clips"]) == [
        ("lift", ""),
        ("push", "push the cup"),
    ]
    assert all(c["num_frames"] == 10 for c in s["clips"])
    # no labels: category = folder under SRC, else "unlabeled"; bad clips still skipped
    s = import_videos(
        src, tmp_path / "b", fps=10, size=(16, 16), progress=False, log=lambda *a, **k: None
    )
    cats = {c["source"]: c["action_category"] for c in s["clips"]}
    assert cats == {"78687.mp4": "unlabeled", "nolabel.mp4": "unlabeled", "sub/42.mp4": "sub"}
    assert len(s["skipped"]) == 2
    print(
        "import-videos: %d frames decoded in %.3f s (%.0f frames/s)"
        % (s["frames_in"], s["wall_s"], s["frames_in"] / s["wall_s"])
    )


def test_labels_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelsError, match="not valid JSON"):
        read_labels(bad)
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path / "missing.json")
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"a": "waving", "b": {"label": "x", "instruction": "do x"}}))
    assert read_labels(m) == {
        "a": {
            "action_category": "waving",
            "instruction": "",
            "label_fields": {"id": "a", "label": "waving"},
        },
        "b": {
            "action_category": "x",
            "instruction": "do x",
            "label_fields": {"id": "b", "label": "x"},
        },
    }


def test_refuses_existing_out_and_odd_size(folder, tmp_path, capsys):
    src, labels = folder
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("x")
    assert main(["dataset", "import-videos", str(src), "--out", str(tmp_path / "out")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(
            ["dataset", "import-videos", str(src), "--out", str(tmp_path / "o2"), "--size", "31x32"]
        )
        == 1
    )
    assert "even" in capsys.readouterr().err


def test_fit_frame_crop_pad_stretch():
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :20] = 255  # left quarter white
    crop = fit_frame(wide, (20, 20), "crop")
    assert crop.shape == (20, 20, 3) and crop.max() == 0  # centre crop drops the edge
    pad = fit_frame(wide, (20, 20), "pad")
    assert pad.shape == (20, 20, 3)
    assert pad[:5].max() == 0 and pad[-5:].max() == 0  # black bars above and below
    assert pad[8:12, :4].min() > 200  # the white edge is kept
    st = fit_frame(wide, (20, 20), "stretch")
    assert st[:, :4].min() > 200 and st[:, 6:].max() == 0


def test_sampling_upsamples_by_repeating(tmp_path):
    write_video(tmp_path / "c.mp4", _clip(10), fps=10)  # 1 s at 10 fps
    count = {}
    got = [k for k, _ in sampled_frames(tmp_path / "c.mp4", 20, count)]
    assert got == list(range(20)) and count["decoded"] == 10
    frames = [
        f.to_ndarray(format="rgb24").mean() for _, f in sampled_frames(tmp_path / "c.mp4", 20)
    ]
    np.testing.assert_allclose(frames, np.repeat(8 * np.arange(10), 2), atol=3)
