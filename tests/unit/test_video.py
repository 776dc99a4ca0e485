"""mp4 round trip with PyAV: H.264, yuv420p, constant fps; frames close after lossy coding."""

import numpy as np
import pytest

from clap_ros.data.video import (
    VideoError,
    VideoWriter,
    iter_video,
    read_video,
    video_info,
    write_video,
)


def _frames(n=24, h=64, w=96):
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = (xx * 2 + i * 5) % 256
        f[..., 1] = (yy * 3) % 256
        f[..., 2] = 40
        f[10:30, (i * 2) % (w - 20) : (i * 2) % (w - 20) + 20] = (250, 250, 0)  # a moving block
        out.append(f)
    return out


def test_round_trip_close_and_metadata(tmp_path):
    frames = _frames()
    p = tmp_path / "sub" / "v.mp4"
    assert write_video(p, frames, fps=15) == 24
    info = video_info(p)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"], info["frames"]) == (96, 64, 24)
    assert info["fps"] == pytest.approx(15.0)
    got = read_video(p)
    assert got.shape == (24, 64, 96, 3) and got.dtype == np.uint8
    err = np.abs(got.astype(int) - np.stack(frames).astype(int))
    assert err.mean() < 3.0
    # each decoded frame is nearest to its own source frame (order and count preserved)
    for i in (0, 11, 23):
        d = [np.abs(got[i].astype(int) - f).mean() for f in frames]
        assert int(np.argmin(d)) == i


def test_fractional_fps_and_iter(tmp_path):
    p = tmp_path / "v.mp4"
    write_video(p, _frames(6, 32, 32), fps=29.97)
    assert video_info(p)["fps"] == pytest.approx(29.97, abs=0.01)
    assert sum(1 for _ in iter_video(p)) == 6


def test_errors(tmp_path):
    with pytest.raises(VideoError, match="must be even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((33, 32, 3), np.uint8)], fps=10)
    with pytest.raises(VideoError, match="uint8 HxWx3"):
        write_video(tmp_path / "f.mp4", [np.zeros((32, 32), np.uint8)], fps=10)
    with VideoWriter(tmp_path / "s.mp4", fps=10) as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
        with pytest.raises(VideoError, match="frame 1 is 16x16"):
            w.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "e.mp4", [], fps=10)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match="bad.mp4"):
        read_video(bad)
    with pytest.raises(VideoError, match="no such"):
        read_video(tmp_path / "missing.mp4")
