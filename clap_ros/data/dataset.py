"""The clap_ros episode dataset: parquet tables + H.264 videos + JSON metadata (docs/DATASET.md).

Laid out like a LeRobot dataset (one parquet file and one mp4 per camera per episode, chunks of 1000
episodes) so it converts to LeRobot v3 with a file-level script; ``Dataset(root).load_episode(i)``
is what training reads. ``DatasetWriter`` is what ``clap-ros bag2dataset`` writes with.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from clap_ros.data.jsonable import json_default
from clap_ros.data.video import VideoWriter, read_video

PathLike = Union[str, Path]

FORMAT = "clap_ros_dataset"
VERSION = 1
CHUNK_SIZE = 1000
DATA_PATH = "data/chunk-{chunk:03d}/episode_{episode:06d}.parquet"
VIDEO_PATH = "videos/{key}/chunk-{chunk:03d}/episode_{episode:06d}.mp4"
STATE = "observation.state"
ACTION = "action"
IMAGE_PREFIX = "observation.images."
QUANTILES = (0.01, 0.99)
# Image statistics use every Nth frame: per-channel histograms of a subsample are exact enough for
# normalisation and keep conversion cost dominated by video coding.
IMAGE_STATS_STRIDE = 5


class DatasetError(RuntimeError):
    """A dataset that is missing, malformed or inconsistent; the message names the file."""


def vector_names(joint_names: Sequence[str]) -> List[str]:
    """Names of the state/action vector entries: the arm joints, then the gripper opening."""
    return [str(n) for n in joint_names] + ["gripper"]


def video_relpath(key: str, episode_index: int) -> str:
    return VIDEO_PATH.format(key=key, chunk=episode_index // CHUNK_SIZE, episode=episode_index)


def data_relpath(episode_index: int) -> str:
    return DATA_PATH.format(chunk=episode_index // CHUNK_SIZE, episode=episode_index)


# --- statistics -------------------------------------------------------------------------------
def vector_stats(x: np.ndarray) -> Dict[str, Any]:
    """mean/std/min/max/q01/q99/count per dimension of [N, D] data."""
    x = np.asarray(x, dtype=np.float64)
    q = np.quantile(x, QUANTILES, axis=0)
    return {
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "q01": q[0].tolist(),
        "q99": q[1].tolist(),
        "count": [int(x.shape[0])],
    }


class ImageStats:
    """Per-channel statistics of uint8 RGB frames on the [0, 1] scale, from 256-bin histograms
    (exact for uint8 data)."""

    def __init__(self):
        self.hist = np.zeros((3, 256), dtype=np.int64)
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        for c in range(3):
            self.hist[c] += np.bincount(frame[..., c].reshape(-1), minlength=256)
        self.frames += 1

    def merge(self, other: "ImageStats") -> None:
        self.hist += other.hist
        self.frames += other.frames

    def to_dict(self) -> Dict[str, Any]:
        v = np.arange(256) / 255.0
        out: Dict[str, List[float]] = {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
        for c in range(3):
            h = self.hist[c]
            n = h.sum()
            mean = float((h * v).sum() / n)
            out["mean"].append(mean)
            out["std"].append(float(np.sqrt((h * (v - mean) ** 2).sum() / n)))
            nz = np.flatnonzero(h)
            out["min"].append(float(v[nz[0]]))
            out["max"].append(float(v[nz[-1]]))
            cdf = np.cumsum(h) / n
            out["q01"].append(float(v[np.searchsorted(cdf, QUANTILES[0])]))
            out["q99"].append(float(v[np.searchsorted(cdf, QUANTILES[1])]))
        return dict(out, count=[int(self.frames)])


# --- writing ----------------------------------------------------------------------------------
@dataclass
class EpisodeRecord:
    """One episode's aligned arrays and metadata, as DatasetWriter.add_episode takes it."""

    state: np.ndarray  # [T, D] float
    action: np.ndarray  # [T, D] float
    timestamp: np.ndarray  # [T] seconds from the episode's first frame
    instruction: str
    meta: Dict[str, Any] = field(
        default_factory=dict
    )  # task_name, success, seed, appearance, source, ...


class DatasetWriter:
    """Write a dataset episode by episode; ``finalize()`` writes meta/ (info, stats, episodes,
    tasks). Videos are written first through ``video_writer`` so frames stream from the bag."""

    def __init__(
        self,
        root: PathLike,
        robot: str,
        joint_names: Sequence[str],
        fps: float,
        overwrite: bool = False,
        crf: int = 18,
    ):
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                raise DatasetError(
                    "%s exists and is not empty (use --overwrite to replace it)" % self.root
                )
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.robot = robot
        self.joint_names = [str(n) for n in joint_names]
        self.names = vector_names(self.joint_names)
        self.fps = float(fps)
        self.crf = int(crf)
        self.episodes: List[Dict[str, Any]] = []
        self.tasks: Dict[str, int] = {}
        self._states: List[np.ndarray] = []
        self._actions: List[np.ndarray] = []
        self._image_stats: Dict[str, ImageStats] = {}
        self._image_shapes: Dict[str, List[int]] = {}
        self._pending: Dict[str, VideoWriter] = {}
        self._pending_stats: Dict[str, ImageStats] = {}
        self._total_frames = 0

    @property
    def next_index(self) -> int:
        return len(self.episodes)

    @property
    def image_keys(self) -> Optional[List[str]]:
        """The camera keys every episode has (fixed by the first episode); None before it."""
        return sorted(self._image_shapes) if self.episodes else None

    def video_writer(self, key: str) -> "_StatsVideoWriter":
        """An mp4 writer for camera ``key`` of the next episode (collects image stats as it
        goes)."""
        if not key.startswith(IMAGE_PREFIX):
            key = IMAGE_PREFIX + key
        path = self.root / video_relpath(key, self.next_index)
        w = _StatsVideoWriter(path, self.fps, self.crf)
        self._pending[key] = w
        return w

    def discard_episode(self) -> None:
        """Drop the videos of a next episode that failed half-way."""
        for w in self._pending.values():
            w.close()
            if w.path.exists():
                w.path.unlink()
        self._pending.clear()

    def add_episode(self, ep: EpisodeRecord) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        state = np.asarray(ep.state, dtype=np.float32)
        action = np.asarray(ep.action, dtype=np.float32)
        n, d = state.shape
        if action.shape != (n, d) or d != len(self.names):
            self.discard_episode()
            raise DatasetError(
                "episode arrays: state %s, action %s, expected [T, %d]"
                % (state.shape, action.shape, len(self.names))
            )
        if n == 0:
            self.discard_episode()
            raise DatasetError("episode has no frames")
        if not (np.all(np.isfinite(state)) and np.all(np.isfinite(action))):
            self.discard_episode()
            raise DatasetError("episode has NaN/Inf in state or action")
        idx = self.next_index
        for key, w in self._pending.items():
            w.close()
            if w.frames_written != n:
                self.discard_episode()
                raise DatasetError(
                    "episode %d: video %s has %d frames, table has %d"
                    % (idx, key, w.frames_written, n)
                )
        task_index = self.tasks.setdefault(ep.instruction, len(self.tasks))
        index0 = self._total_frames
        table = pa.table(
            {
                "timestamp": pa.array(np.asarray(ep.timestamp, dtype=np.float32)),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, idx, dtype=np.int64)),
                "index": pa.array(np.arange(index0, index0 + n, dtype=np.int64)),
                "task_index": pa.array(np.full(n, task_index, dtype=np.int64)),
                STATE: pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), d),
                ACTION: pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), d),
            }
        )
        path = self.root / data_relpath(idx)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for key, w in self._pending.items():
            self._image_stats.setdefault(key, ImageStats()).merge(w.stats)
            self._image_shapes[key] = [w.height, w.width, 3]
        self._pending.clear()
        self._states.append(state)
        self._actions.append(action)
        self._total_frames += n
        meta = {
            "episode_index": idx,
            "length": int(n),
            "instruction": ep.instruction,
            "task_index": task_index,
        }
        meta.update({k: v for k, v in ep.meta.items() if k not in meta})
        self.episodes.append(meta)
        return idx

    def features(self) -> Dict[str, Any]:
        d = len(self.names)
        feats: Dict[str, Any] = {
            STATE: {"dtype": "float32", "shape": [d], "names": self.names},
            ACTION: {"dtype": "float32", "shape": [d], "names": self.names},
        }
        for key, shape in sorted(self._image_shapes.items()):
            feats[key] = {
                "dtype": "video",
                "shape": shape,
                "names": ["height", "width", "channels"],
                "info": {
                    "video.fps": self.fps,
                    "video.codec": "h264",
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "has_audio": False,
                },
            }
        for name, dtype in (
            ("timestamp", "float32"),
            ("frame_index", "int64"),
            ("episode_index", "int64"),
            ("index", "int64"),
            ("task_index", "int64"),
        ):
            feats[name] = {"dtype": dtype, "shape": [1], "names": None}
        return feats

    def finalize(self) -> Dict[str, Any]:
        if not self.episodes:
            raise DatasetError("%s: no episodes to write" % self.root)
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        info = {
            "format": FORMAT,
            "version": VERSION,
            "robot": self.robot,
            "fps": self.fps,
            "joint_names": self.joint_names,
            "features": self.features(),
            "total_episodes": len(self.episodes),
            "total_frames": self._total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNK_SIZE,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "image_keys": sorted(self._image_shapes),
        }
        stats: Dict[str, Any] = {
            STATE: vector_stats(np.concatenate(self._states)),
            ACTION: vector_stats(np.concatenate(self._actions)),
        }
        for key, st in sorted(self._image_stats.items()):
            stats[key] = st.to_dict()
        (meta / "info.json").write_text(json.dumps(info, indent=2))
        (meta / "stats.json").write_text(json.dumps(stats, indent=2))
        with open(meta / "episodes.jsonl", "w") as f:
            for ep in self.episodes:
                f.write(json.dumps(ep, sort_keys=True, default=json_default) + "\n")
        with open(meta / "tasks.jsonl", "w") as f:
            for task, i in sorted(self.tasks.items(), key=lambda kv: kv[1]):
                f.write(json.dumps({"task_index": i, "task": task}) + "\n")
        return info


class _StatsVideoWriter(VideoWriter):
    def __init__(self, path: Path, fps: float, crf: int):
        super().__init__(path, fps, crf=crf)
        self.stats = ImageStats()
        self.height = self.width = 0

    def write(self, frame: np.ndarray) -> None:
        if self.frames_written % IMAGE_STATS_STRIDE == 0:
            self.stats.add(np.asarray(frame))
        super().write(frame)
        self.height, self.width = int(frame.shape[0]), int(frame.shape[1])


# --- reading ----------------------------------------------------------------------------------
class Dataset:
    """Read a clap_ros dataset. ``load_episode(i)`` returns a dict of numpy arrays:
    ``state [T,D]``, ``action [T,D]``, ``timestamp [T]``, ``frame_index [T]``, ``task_index [T]``,
    ``images {key: uint8 [T,H,W,3]}``, plus ``instruction`` and ``meta`` (the episodes.jsonl row).
    """

    def __init__(self, root: PathLike):
        self.root = Path(root)
        meta = self.root / "meta"
        self.info = self._json(meta / "info.json")
        if self.info.get("format") != FORMAT:
            raise DatasetError(
                "%s: not a %s dataset (format %r)"
                % (meta / "info.json", FORMAT, self.info.get("format"))
            )
        if int(self.info.get("version", -1)) > VERSION:
            raise DatasetError(
                "%s: dataset version %s is newer than this reader (%d)"
                % (meta / "info.json", self.info.get("version"), VERSION)
            )
        self.stats = self._json(meta / "stats.json")
        self.episodes = self._jsonl(meta / "episodes.jsonl")
        self.tasks = {int(t["task_index"]): t["task"] for t in self._jsonl(meta / "tasks.jsonl")}
        if len(self.episodes) != int(self.info["total_episodes"]):
            raise DatasetError(
                "%s: info.json says %s episodes, episodes.jsonl lists %d"
                % (self.root, self.info["total_episodes"], len(self.episodes))
            )

    @staticmethod
    def _json(path: Path) -> Dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise DatasetError("%s: missing (not a dataset directory?)" % path) from None
        except json.JSONDecodeError as e:
            raise DatasetError("%s: not valid JSON (%s)" % (path, e)) from None

    @staticmethod
    def _jsonl(path: Path) -> List[Dict[str, Any]]:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise DatasetError("%s: missing" % path) from None
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as e:
            raise DatasetError("%s: not valid JSON lines (%s)" % (path, e)) from None

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def joint_names(self) -> List[str]:
        return list(self.info["joint_names"])

    @property
    def image_keys(self) -> List[str]:
        return list(self.info.get("image_keys", []))

    @property
    def robot(self) -> str:
        return str(self.info["robot"])

    def stats_array(self, feature: str, stat: str) -> np.ndarray:
        try:
            return np.asarray(self.stats[feature][stat], dtype=np.float64)
        except KeyError:
            raise DatasetError(
                "%s: no stat %r for feature %r" % (self.root, stat, feature)
            ) from None

    def load_episode(self, i: int, images: bool = True) -> Dict[str, Any]:
        import pyarrow.parquet as pq

        if not 0 <= i < len(self.episodes):
            raise IndexError("episode %d out of range (dataset has %d)" % (i, len(self.episodes)))
        path = self.root / data_relpath(i)
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise DatasetError("%s: missing" % path) from None
        except Exception as e:
            raise DatasetError("%s: unreadable parquet (%s)" % (path, e)) from None
        n = table.num_rows

        def vec(name: str) -> np.ndarray:
            col = table.column(name).combine_chunks()
            return np.asarray(
                col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32
            ).reshape(n, -1)

        out: Dict[str, Any] = {
            "state": vec(STATE),
            "action": vec(ACTION),
            "timestamp": table.column("timestamp").to_numpy().astype(np.float64),
            "frame_index": table.column("frame_index").to_numpy(),
            "task_index": table.column("task_index").to_numpy(),
            "instruction": self.episodes[i].get("instruction", ""),
            "meta": dict(self.episodes[i]),
            "images": {},
        }
        if images:
            for key in self.image_keys:
                vpath = self.root / video_relpath(key, i)
                frames = read_video(vpath)
                if len(frames) != n:
                    raise DatasetError(
                        "%s: %d frames, but the episode table has %d rows" % (vpath, len(frames), n)
                    )
                out["images"][key] = frames
        return out
