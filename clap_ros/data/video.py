"""MP4 (H.264, yuv420p, constant frame rate) writing and reading with PyAV.

The one video module: datasets write their camera streams with it and the human-video renderer
writes its clips with it, so every mp4 in the project decodes the same way (LeRobot-compatible).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Union

import numpy as np

PathLike = Union[str, Path]


class VideoError(RuntimeError):
    """A video that cannot be written or read; the message names the file."""


class VideoWriter:
    """Append uint8 HxWx3 RGB frames to an mp4 at a constant ``fps``.

    ``crf`` trades size for fidelity (x264: 0 lossless .. 51 worst; 23 is x264's default, 18 is
    visually near-lossless). Frame size is fixed by the first frame and must be even (yuv420p).
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        crf: int = 18,
        preset: str = "veryfast",
        gop: Optional[int] = None,
    ):
        if not fps or fps <= 0:
            raise VideoError("%s: fps must be positive, got %r" % (path, fps))
        self.path = Path(path)
        self.fps = fps
        self.crf = int(crf)
        self.preset = preset
        self.gop = gop
        self._container = None
        self._stream = None
        self.frames_written = 0
        self._size = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _open(self, h: int, w: int) -> None:
        import av

        if h % 2 or w % 2:
            raise VideoError(
                "%s: frame size %dx%d must be even for H.264 yuv420p" % (self.path, w, h)
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        opts = {"crf": str(self.crf), "preset": self.preset}
        if self.gop:
            opts["g"] = str(int(self.gop))
        stream.options = opts
        self._stream = stream
        self._size = (h, w)

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(
                "%s: frames must be uint8 HxWx3 RGB, got %s %s"
                % (self.path, frame.dtype, frame.shape)
            )
        if self._container is None:
            self._open(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise VideoError(
                "%s: frame %d is %dx%d, the video is %dx%d"
                % (
                    self.path,
                    self.frames_written,
                    frame.shape[1],
                    frame.shape[0],
                    self._size[1],
                    self._size[0],
                )
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames_written
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 18,
    preset: str = "veryfast",
) -> int:
    """Write all ``frames`` (uint8 HxWx3 RGB); returns the number of frames written."""
    with VideoWriter(path, fps, crf=crf, preset=preset) as w:
        for f in frames:
            w.write(f)
        n = w.frames_written
    if n == 0:
        raise VideoError("%s: no frames to write" % path)
    return n


def iter_video(path: PathLike) -> Iterator[np.ndarray]:
    """Decode an mp4 frame by frame as uint8 HxWx3 RGB."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError("%s: no such video file" % path)
    try:
        container = av.open(str(path))
    except Exception as e:
        raise VideoError("%s: cannot open video (%s)" % (path, e)) from None
    try:
        if not container.streams.video:
            raise VideoError("%s: has no video stream" % path)
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except VideoError:
            raise
        except Exception as e:
            raise VideoError("%s: corrupt video (%s)" % (path, e)) from None
    finally:
        container.close()


def read_video(path: PathLike) -> np.ndarray:
    """All frames of an mp4 as uint8 [T, H, W, 3] RGB."""
    frames = list(iter_video(path))
    if not frames:
        raise VideoError("%s: video has no frames" % path)
    return np.stack(frames)


def video_info(path: PathLike) -> Dict[str, Any]:
    """codec, pix_fmt, width, height, fps and frame count of an mp4 (frames counted by decoding
    when the container does not say)."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except Exception as e:
        raise VideoError("%s: cannot open video (%s)" % (path, e)) from None
    try:
        s = container.streams.video[0]
        n = int(s.frames or 0)
        if n == 0:
            n = sum(1 for _ in container.decode(video=0))
        return {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "fps": float(s.average_rate or s.base_rate or 0),
            "frames": n,
        }
    finally:
        container.close()
