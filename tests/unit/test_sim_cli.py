"""`clap-ros sim render` and `clap-ros sim bench` through the real CLI entry point."""

import json

import numpy as np
import pytest

from clap_ros.cli import build_parser, main


def test_sim_help_lists_render_and_bench(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sim", "render", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--robot" in out and "--at" in out and "clap-ros sim render" in out
    parser = build_parser()
    args = parser.parse_args(["sim", "bench", "--robots", "fr3"])
    assert args.size == (224, 224)


def test_render_writes_a_picture_of_the_scene(tmp_path):
    from PIL import Image

    out = tmp_path / "pic.png"
    assert (
        main(
            [
                "sim",
                "render",
                "--robot",
                "ur5e",
                "--task",
                "push",
                "--seed",
                "1",
                "--size",
                "96x128",
                "--at",
                "reset",
                "--no-shadows",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = np.asarray(Image.open(out))
    assert img.shape == (96, 128, 3)
    assert img.std() > 10  # a scene, not a blank frame


def test_render_the_human_hand_at_its_grasp(tmp_path):
    from PIL import Image

    out = tmp_path / "hand.png"
    assert (
        main(
            [
                "sim",
                "render",
                "--hand",
                "--task",
                "stack",
                "--size",
                "64x64",
                "--no-shadows",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)


def test_render_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["sim", "render", "--size", "big", "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert "height x width" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sim", "render", "--at", "later", "--out", str(tmp_path / "x.png")])
    assert "--at" in str(e.value)
    assert not (tmp_path / "x.png").exists()


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "sim",
                "bench",
                "--robots",
                "fr3",
                "--task",
                "reach",
                "--size",
                "64x64",
                "--frames",
                "5",
                "--steps",
                "200",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "images/s" in text and "fr3" in text
    rows = json.loads(out.read_text())
    assert rows[0]["robot"] == "fr3"
    assert rows[0]["images_per_s"] > 0 and rows[0]["physics_steps_per_s"] > 0
    assert rows[0]["real_time_factor"] == pytest.approx(rows[0]["physics_steps_per_s"] * 0.002)
