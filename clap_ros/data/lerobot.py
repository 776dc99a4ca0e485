"""LeRobot v3.0 datasets <-> clap_ros datasets, from and to local directories (no hub access).

``import_lerobot(src, out)`` reads a LeRobot v3.0 dataset directory (many episodes per parquet and
per mp4 file, episodes located through meta/episodes/*.parquet) and writes a clap_ros dataset
(docs/DATASET.md section 3) that ``clap_ros.data.dataset.Dataset`` and the trainer read.
``export_lerobot(src, out)`` does the reverse with the mapping of docs/DATASET.md section 4.
State/action vectors are copied bit for bit; video frames are decoded and re-encoded (H.264), so
they match within codec tolerance. The ``lerobot`` package is not needed: numpy, pyarrow and PyAV
only (cv2 for datasets that store frames as PNG/JPEG bytes in the parquet).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from clap_ros.data.dataset import (
    ACTION,
    CHUNK_SIZE,
    IMAGE_PREFIX,
    STATE,
    Dataset,
    DatasetError,
    DatasetWriter,
    EpisodeRecord,
    ImageStats,
    data_relpath,
    vector_stats,
)
from clap_ros.data.jsonable import json_default
from clap_ros.data.video import VideoError, VideoWriter

PathLike = Union[str, Path]

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
DATA_FILE_SIZE_MB = 100  # LeRobot's defaults for rolling over to the next file
VIDEO_FILE_SIZE_MB = 500
SCALAR_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# Columns of LeRobot's episodes table that locate data; everything else (but stats/) is metadata.
_EPISODE_LOCATORS = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index")
_EPISODE_PREFIXES = ("data/", "videos/", "meta/", "stats/")


class LeRobotError(RuntimeError):
    """A LeRobot dataset that cannot be imported (or written); the message names file and reason."""


def _progress(iterable, total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled)


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """A temporary directory next to ``out``; moved into place by _commit_out."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DatasetError("%s exists and is not empty (use --overwrite to replace it)" % out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".%s.partial-" % out.name, dir=out.parent))


def _commit_out(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)


def _dir_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


# ==============================================================================================
# reading LeRobot v3
# ==============================================================================================
def read_info(root: PathLike) -> Dict[str, Any]:
    """meta/info.json of a LeRobot v3.x dataset; any other version is a LeRobotError naming it."""
    root = Path(root)
    path = root / "meta" / "info.json"
    if not root.is_dir():
        raise LeRobotError("%s: no such directory" % root)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise LeRobotError("%s: missing (not a LeRobot dataset directory)" % path) from None
    except json.JSONDecodeError as e:
        raise LeRobotError("%s: not valid JSON (%s)" % (path, e)) from None
    if info.get("format") == "clap_ros_dataset":
        raise LeRobotError(
            "%s is already a clap_ros dataset (format clap_ros_dataset), not a LeRobot one" % root
        )
    version = info.get("codebase_version")
    if version is None:
        raise LeRobotError(
            "%s: no codebase_version: not a LeRobot dataset (this importer reads "
            "LeRobot v3.0)" % path
        )
    if not str(version).startswith("v3."):
        hint = ""
        if str(version).startswith("v2"):
            hint = (
                "; convert it first with lerobot's "
                "`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`"
            )
        raise LeRobotError(
            "%s is a LeRobot %s dataset; this importer reads LeRobot v3.0%s" % (root, version, hint)
        )
    for key in ("fps", "features"):
        if key not in info:
            raise LeRobotError("%s: no %r" % (path, key))
    return info


def _read_parquet(path: Path, columns: Optional[Sequence[str]] = None):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except FileNotFoundError:
        raise LeRobotError("%s: missing" % path) from None
    except Exception as e:
        raise LeRobotError("%s: unreadable parquet (%s)" % (path, e)) from None


def read_episodes(root: PathLike) -> List[Dict[str, Any]]:
    """Rows of meta/episodes/*/*.parquet (without the per-episode stats/ columns), by episode."""
    root = Path(root)
    paths = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not paths:
        raise LeRobotError(
            "%s: no meta/episodes/chunk-*/file-*.parquet (a LeRobot v3 dataset "
            "lists its episodes there)" % root
        )
    rows: List[Dict[str, Any]] = []
    for p in paths:
        t = _read_parquet(p)
        t = t.select([c for c in t.column_names if not c.startswith("stats/")])
        rows.extend(t.to_pylist())
    missing = [c for c in ("episode_index", "length") if rows and c not in rows[0]]
    if missing:
        raise LeRobotError("%s: episodes table lacks %s" % (paths[0], missing))
    rows.sort(key=lambda r: int(r["episode_index"]))
    return rows


def read_tasks(root: PathLike) -> Dict[int, str]:
    """task_index -> task string from meta/tasks.parquet (the task string is pandas' index, stored
    as a column named ``task`` or ``__index_level_0__``); {} if the file is absent."""
    path = Path(root) / TASKS_PATH
    if not path.is_file():
        return {}
    t = _read_parquet(path)
    if "task_index" not in t.column_names:
        raise LeRobotError("%s: no task_index column (has %s)" % (path, t.column_names))
    import pyarrow as pa

    text_cols = [
        c
        for c in t.column_names
        if c != "task_index"
        and (
            pa.types.is_string(t.schema.field(c).type)
            or pa.types.is_large_string(t.schema.field(c).type)
        )
    ]
    col = "task" if "task" in text_cols else (text_cols[0] if text_cols else None)
    if col is None:
        raise LeRobotError("%s: no task string column (has %s)" % (path, t.column_names))
    return {
        int(i): str(s)
        for i, s in zip(t.column("task_index").to_pylist(), t.column(col).to_pylist())
    }


def _vector(table, name: str) -> np.ndarray:
    """A list / fixed-size-list / scalar column as float [N, D], values unchanged."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    n = table.num_rows
    if (
        pa.types.is_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        if n and flat.size % n:
            raise LeRobotError("column %s has rows of different lengths" % name)
        return flat.reshape(n, -1)
    return col.to_numpy(zero_copy_only=False).reshape(n, 1)


def _feature_names(ft: Dict[str, Any]) -> Optional[List[str]]:
    names = ft.get("names")
    if isinstance(names, dict):  # older style: {"motors": [...]}
        vals = [v for v in names.values() if isinstance(v, list)]
        names = vals[0] if len(vals) == 1 else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _resolve_joints(
    info: Dict[str, Any],
    state_key: str,
    action_key: str,
    dim: int,
    robot: Optional[str],
    joint_names: Optional[Sequence[str]],
) -> Tuple[str, List[str], np.ndarray, np.ndarray, str]:
    """(robot, arm joint names, state column order, action column order, how) for vectors of
    ``dim`` entries whose last entry is the gripper."""
    feats = info["features"]
    s_names = _feature_names(feats[state_key])
    a_names = _feature_names(feats[action_key])
    ours = info.get("clap_ros") or {}
    how = "positional"
    if joint_names is None and robot:
        from clap_ros.robots import ProfileError, load_profile

        try:
            joint_names = load_profile(robot).joint_names
            how = "robot profile %s" % robot
        except ProfileError:
            joint_names = None  # a robot name without a profile: names from the dataset
    elif joint_names is not None:
        how = "--joint-names"
    if joint_names is None:
        if ours.get("joint_names") and len(ours["joint_names"]) == dim - 1:
            joint_names = list(ours["joint_names"])
            how = "clap_ros export"
        elif s_names and len(s_names) == dim:
            joint_names = s_names[:-1]
            how = "%s feature names" % state_key
        else:
            joint_names = ["joint_%d" % (k + 1) for k in range(dim - 1)]
            how = "generic names (the dataset names none)"
    joint_names = [str(n) for n in joint_names]
    if len(joint_names) != dim - 1:
        raise LeRobotError(
            "%s has %d entries, so %d arm joints + gripper, but %s gives %d joint "
            "names (%s)" % (state_key, dim, dim - 1, how, len(joint_names), ", ".join(joint_names))
        )

    def order(names: Optional[List[str]]) -> np.ndarray:
        if (
            names
            and len(names) == dim
            and set(names[:-1]) == set(joint_names)
            and len(set(names[:-1])) == dim - 1
        ):
            return np.array([names.index(n) for n in joint_names] + [dim - 1])
        return np.arange(dim)

    robot_name = robot or ours.get("robot") or info.get("robot_type") or "unknown"
    return str(robot_name), joint_names, order(s_names), order(a_names), how


class _DataFiles:
    """Rows of one episode from the data parquet files, caching the file last read."""

    def __init__(self, root: Path, info: Dict[str, Any], columns: Sequence[str]):
        self.root = root
        self.template = info.get("data_path") or DATA_PATH
        self.columns = list(columns)
        self._path: Optional[Path] = None
        self._table = None

    def rows(self, ep: Dict[str, Any]):
        import pyarrow.compute as pc

        path = self.root / self.template.format(
            chunk_index=int(ep.get("data/chunk_index") or 0),
            file_index=int(ep.get("data/file_index") or 0),
            episode_chunk=int(ep["episode_index"]) // CHUNK_SIZE,
            episode_index=int(ep["episode_index"]),
        )
        if path != self._path:
            self._table = None
            table = _read_parquet(path)
            missing = [c for c in self.columns if c not in table.column_names]
            if missing:
                raise LeRobotError(
                    "%s: missing column(s) %s (has %s)" % (path, missing, table.column_names)
                )
            self._table, self._path = table, path
        t = self._table.filter(
            pc.equal(self._table.column("episode_index"), int(ep["episode_index"]))
        )
        if "frame_index" in t.column_names:
            t = t.take(pc.sort_indices(t.column("frame_index")))
        return t, path


class _FrameCursor:
    """Frames of one camera by presentation time, decoding each LeRobot mp4 once, front to back
    (episodes are read in order, and an episode's frames follow the previous episode's)."""

    def __init__(self):
        self.path: Optional[Path] = None
        self._container = None
        self._frames: Optional[Iterator] = None
        self._cur = None  # (time, av.VideoFrame) at or before the last query
        self._peek = None  # the first frame after it
        self.decoded = 0

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = self._cur = self._peek = None
        self.path = None

    def _open(self, path: Path) -> None:
        import av

        self.close()
        if not path.is_file():
            raise VideoError("%s: no such video file" % path)
        try:
            self._container = av.open(str(path))
        except Exception as e:
            raise VideoError("%s: cannot open video (%s)" % (path, e)) from None
        if not self._container.streams.video:
            raise VideoError("%s: has no video stream" % path)
        stream = self._container.streams.video[0]
        rate = float(stream.average_rate or stream.base_rate or 0) or None
        self.path = path

        def gen():
            k = 0
            try:
                for f in self._container.decode(video=0):
                    t = f.time if f.time is not None else (k / rate if rate else float(k))
                    k += 1
                    yield float(t), f
            except Exception as e:
                raise VideoError("%s: corrupt video (%s)" % (path, e)) from None

        self._frames = gen()
        self._cur = None
        self._peek = self._next()

    def _next(self):
        f = next(self._frames, None)
        if f is not None:
            self.decoded += 1
        return f

    def frames_at(self, path: Path, times: np.ndarray, tol: float) -> np.ndarray:
        """uint8 [len(times), H, W, 3]: for each time, the decoded frame nearest to it (within
        ``tol`` seconds, else a VideoError)."""
        times = np.asarray(times, dtype=np.float64)
        if path != self.path or (self._cur is not None and times[0] < self._cur[0] - tol):
            self._open(path)
        out = []
        for t in times:
            while self._peek is not None and self._peek[0] <= t:
                self._cur, self._peek = self._peek, self._next()
            cands = [c for c in (self._cur, self._peek) if c is not None]
            if not cands:
                raise VideoError("%s: has no frames" % path)
            best = min(cands, key=lambda c: abs(c[0] - t))
            if abs(best[0] - t) > tol:
                raise VideoError(
                    "%s: no frame within %.4f s of t=%.4f s (nearest at %.4f s; the "
                    "video is shorter than the episodes table says?)" % (path, tol, t, best[0])
                )
            out.append(best[1].to_ndarray(format="rgb24"))
        return np.stack(out)


def _decode_image_cell(cell: Any, root: Path) -> np.ndarray:
    import cv2

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if data is None and isinstance(cell, dict) and cell.get("path"):
        data = (root / cell["path"]).read_bytes()
    if data is None:
        raise VideoError("image cell has neither bytes nor path")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoError("image bytes do not decode")
    return np.ascontiguousarray(img[..., ::-1])


def _camera_key(key: str) -> str:
    return key if key.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + key.split(".")[-1]


def _meta_value(v: Any, json_cols: Sequence[str], name: str) -> Any:
    if name in json_cols and isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def import_lerobot(
    src: PathLike,
    out: PathLike,
    robot: Optional[str] = None,
    joint_names: Optional[Sequence[str]] = None,
    state_key: str = STATE,
    action_key: str = ACTION,
    overwrite: bool = False,
    crf: int = 18,
    progress: bool = True,
    log=print,
) -> Dict[str, Any]:
    """Convert the LeRobot v3 dataset at ``src`` into a clap_ros dataset at ``out``.

    Episodes that fail (a corrupt or short video, a missing data file) are skipped with a reason;
    a dataset-level problem (wrong version, missing features, unequal state/action sizes) raises
    LeRobotError. Returns a summary dict (converted, skipped, frames, wall_s, ...).
    """
    src, out = Path(src), Path(out)
    t_start = time.perf_counter()
    info = read_info(src)
    feats = info["features"]
    missing = [k for k in (state_key, action_key) if k not in feats]
    if missing:
        raise LeRobotError(
            "%s: missing feature(s) %s in meta/info.json (has %s); a clap_ros "
            "dataset needs a state and an action vector (--state-key/--action-key "
            "pick others)" % (src, missing, sorted(feats))
        )
    dims = {k: int(np.prod(feats[k].get("shape") or [1])) for k in (state_key, action_key)}
    if dims[state_key] != dims[action_key]:
        raise LeRobotError(
            "%s: %s has %d entries but %s has %d; clap_ros datasets need state and "
            "action vectors of the same joints (+ gripper)"
            % (src, state_key, dims[state_key], action_key, dims[action_key])
        )
    dim = dims[state_key]
    if dim < 2:
        raise LeRobotError(
            "%s: %s has %d entries; need at least one joint and the gripper" % (src, state_key, dim)
        )
    robot_name, jnames, s_order, a_order, how = _resolve_joints(
        info, state_key, action_key, dim, robot, joint_names
    )
    video_keys = sorted(k for k, f in feats.items() if f.get("dtype") == "video")
    image_keys = sorted(k for k, f in feats.items() if f.get("dtype") == "image")
    cams = {k: _camera_key(k) for k in video_keys + image_keys}
    if len(set(cams.values())) != len(cams):
        raise LeRobotError(
            "%s: camera keys %s collide once named observation.images.*" % (src, sorted(cams))
        )
    fps = float(info["fps"])
    tol = 0.5 / fps
    ours = info.get("clap_ros") or {}
    json_cols = list(ours.get("json_columns") or [])
    episodes = read_episodes(src)
    tasks = read_tasks(src)
    data = _DataFiles(src, info, [state_key, action_key, "episode_index"] + image_keys)
    cursors = {k: _FrameCursor() for k in video_keys}
    vtemplate = info.get("video_path") or VIDEO_PATH

    tmp = _prepare_out(out, overwrite)
    converted: List[Dict[str, Any]] = []
    skipped: List[Dict[str, Any]] = []
    frames_total = 0
    info_out = None
    try:
        writer = DatasetWriter(tmp, robot_name, jnames, fps, crf=crf)
        for ep in _progress(episodes, len(episodes), "import-lerobot", "episode", progress):
            e = int(ep["episode_index"])
            try:
                table, dpath = data.rows(ep)
                n = table.num_rows
                if n == 0:
                    raise LeRobotError("%s has no rows for episode %d" % (dpath, e))
                if ep.get("length") is not None and int(ep["length"]) != n:
                    raise LeRobotError(
                        "%s has %d rows for episode %d, the episodes table says %d"
                        % (dpath, n, e, int(ep["length"]))
                    )
                state = _vector(table, state_key)
                action = _vector(table, action_key)
                if state.shape[1] != dim or action.shape[1] != dim:
                    raise LeRobotError(
                        "%s episode %d: vectors of %d/%d entries, info.json says %d"
                        % (dpath, e, state.shape[1], action.shape[1], dim)
                    )
                state, action = state[:, s_order], action[:, a_order]
                if "timestamp" in table.column_names:
                    ts = table.column("timestamp").to_numpy().astype(np.float64)
                else:
                    ts = np.arange(n) / fps
                for key in video_keys:
                    vpath = src / vtemplate.format(
                        video_key=key,
                        chunk_index=int(ep.get("videos/%s/chunk_index" % key) or 0),
                        file_index=int(ep.get("videos/%s/file_index" % key) or 0),
                        episode_chunk=e // CHUNK_SIZE,
                        episode_index=e,
                    )
                    t0 = float(ep.get("videos/%s/from_timestamp" % key) or 0.0)
                    frames = cursors[key].frames_at(vpath, t0 + ts, tol)
                    vw = writer.video_writer(cams[key])
                    for f in frames:
                        vw.write(f)
                for key in image_keys:
                    vw = writer.video_writer(cams[key])
                    for cell in table.column(key).to_pylist():
                        vw.write(_decode_image_cell(cell, src))
                instruction = ""
                if ep.get("tasks"):
                    instruction = str(ep["tasks"][0])
                elif "task_index" in table.column_names:
                    instruction = tasks.get(int(table.column("task_index")[0].as_py()), "")
                meta = {
                    k: _meta_value(v, json_cols, k)
                    for k, v in ep.items()
                    if k not in _EPISODE_LOCATORS
                    and not k.startswith(_EPISODE_PREFIXES)
                    and k not in ("instruction", "task_index")
                }
                meta.setdefault("source", "%s#episode_%d" % (src, e))
                meta["lerobot_episode_index"] = e
                writer.add_episode(
                    EpisodeRecord(
                        state=state, action=action, timestamp=ts, instruction=instruction, meta=meta
                    )
                )
            except (LeRobotError, VideoError, DatasetError) as err:
                writer.discard_episode()
                reason = "episode %d: %s" % (e, err)
                log("skipped: %s" % reason, file=sys.stderr)
                skipped.append({"episode_index": e, "reason": reason})
                continue
            converted.append({"episode_index": e, "frames": n})
            frames_total += n
        if converted:
            info_out = writer.finalize()
            size = _dir_bytes(tmp)
            _commit_out(tmp, out)
        else:
            size = 0
    finally:
        for c in cursors.values():
            c.close()
        if tmp.exists():
            shutil.rmtree(tmp)
    return {
        "converted": converted,
        "skipped": skipped,
        "frames": frames_total,
        "wall_s": time.perf_counter() - t_start,
        "robot": robot_name,
        "joint_names": jnames,
        "joint_names_from": how,
        "cameras": cams,
        "info": info_out,
        "dataset_bytes": size,
        "decoded_frames": sum(c.decoded for c in cursors.values()),
    }


# ==============================================================================================
# writing LeRobot v3
# ==============================================================================================
class _RollingFiles:
    """chunk/file indices of LeRobot's file sequence: file-000..file-(chunks_size-1), then the next
    chunk."""

    def __init__(self, limit_mb: float):
        self.limit = float(limit_mb) * 1024 * 1024
        self.chunk = 0
        self.file = 0

    def advance(self) -> None:
        if self.file == CHUNK_SIZE - 1:
            self.chunk, self.file = self.chunk + 1, 0
        else:
            self.file += 1


class _DataWriter(_RollingFiles):
    def __init__(self, root: Path, limit_mb: float):
        super().__init__(limit_mb)
        self.root = root
        self._writer = None
        self._bytes = 0

    def write(self, table) -> Tuple[int, int]:
        import pyarrow.parquet as pq

        if self._writer is not None and self._bytes >= self.limit:
            self.close()
            self.advance()
        if self._writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(str(path), table.schema)
            self._bytes = 0
        self._writer.write_table(table)
        self._bytes += table.nbytes  # LeRobot counts in-memory (uncompressed) size too
        return self.chunk, self.file

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _CountingMuxer:
    """Stands in for the PyAV container inside VideoWriter and counts the bytes muxed (the file on
    disk lags behind: the muxer buffers)."""

    def __init__(self, container):
        self.container = container
        self.bytes = 0

    def mux(self, packet) -> None:
        self.bytes += int(packet.size)
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


class _SizedVideoWriter(VideoWriter):
    def _open(self, h: int, w: int) -> None:
        super()._open(h, w)
        self._container = _CountingMuxer(self._container)

    @property
    def bytes_written(self) -> int:
        return self._container.bytes if self._container is not None else 0


class _VideoFileWriter(_RollingFiles):
    def __init__(self, root: Path, key: str, fps: float, limit_mb: float, crf: int, gop: int):
        super().__init__(limit_mb)
        self.root, self.key, self.fps, self.crf, self.gop = root, key, fps, crf, gop
        self._w: Optional[_SizedVideoWriter] = None
        self.shape: Optional[Tuple[int, int]] = None

    def write_episode(self, frames: np.ndarray) -> Tuple[int, int, float, float]:
        """Append an episode's frames; returns (chunk, file, from_timestamp, to_timestamp)."""
        if self._w is not None and self._w.bytes_written >= self.limit:
            self.close()
            self.advance()
        if self._w is None:
            path = self.root / VIDEO_PATH.format(
                video_key=self.key, chunk_index=self.chunk, file_index=self.file
            )
            self._w = _SizedVideoWriter(path, self.fps, crf=self.crf, gop=self.gop or None)
        start = self._w.frames_written
        for f in frames:
            self._w.write(f)
        self.shape = (int(frames.shape[1]), int(frames.shape[2]))
        return self.chunk, self.file, start / self.fps, self._w.frames_written / self.fps

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None


def _parquet_with_pandas_index(columns: Dict[str, Any], index: str):
    """A pyarrow table whose ``index`` column pandas reads back as the DataFrame index (what
    LeRobot's ``pd.read_parquet(meta/tasks.parquet)`` expects), written without pandas."""
    import pyarrow as pa

    table = pa.table(columns)
    cols = []
    for f in table.schema:
        is_str = pa.types.is_string(f.type)
        ptype = "unicode" if is_str else str(f.type)
        cols.append(
            {
                "name": f.name,
                "field_name": f.name,
                "pandas_type": ptype,
                "numpy_type": "object" if is_str else str(f.type),
                "metadata": None,
            }
        )
    meta = {
        "index_columns": [index],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": cols,
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})


def _episode_stats(table, frames: Dict[str, np.ndarray]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name in (STATE, ACTION) + SCALAR_COLUMNS:
        if name in table.column_names:
            out[name] = vector_stats(_vector(table, name).astype(np.float64))
    for key, fr in frames.items():
        st = ImageStats()
        for f in fr[::5]:
            st.add(f)
        out[key] = _image_stats_v3(st.to_dict())
    return out


def _image_stats_v3(st: Dict[str, Any]) -> Dict[str, Any]:
    """Our per-channel lists [3] -> LeRobot's [3, 1, 1]."""
    return {k: (v if k == "count" else [[[float(x)]] for x in v]) for k, v in st.items()}


def _column(values: List[Any]) -> Tuple[Any, bool]:
    """A pyarrow array for an extra episodes column; dicts/lists/mixed types go as JSON strings
    (returns (array, stored_as_json))."""
    import pyarrow as pa

    if any(isinstance(v, (dict, list, tuple)) for v in values):
        return pa.array(
            [
                None if v is None else json.dumps(v, sort_keys=True, default=json_default)
                for v in values
            ],
            pa.string(),
        ), True
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [None if v is None else json.dumps(v, default=json_default) for v in values],
            pa.string(),
        ), True


def export_lerobot(
    src: PathLike,
    out: PathLike,
    overwrite: bool = False,
    crf: int = 18,
    gop: int = 2,
    data_file_size_mb: float = DATA_FILE_SIZE_MB,
    video_file_size_mb: float = VIDEO_FILE_SIZE_MB,
    progress: bool = True,
    log=print,
) -> Dict[str, Any]:
    """Write the clap_ros dataset at ``src`` as a LeRobot v3.0 dataset at ``out``.

    Data rows are appended in episode order to data/chunk-C/file-F.parquet (a new file once one
    holds ``data_file_size_mb``); each camera's episodes are re-encoded back to back into
    videos/<key>/chunk-C/file-F.mp4 (H.264, keyframe every ``gop`` frames: LeRobot's decoders seek
    per frame), each episode a [from_timestamp, to_timestamp) span.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    src, out = Path(src), Path(out)
    t_start = time.perf_counter()
    ds = Dataset(src)
    if len(ds) == 0:
        raise DatasetError("%s: no episodes" % src)
    fps = ds.fps
    keys = ds.image_keys
    tmp = _prepare_out(out, overwrite)
    ep_rows: List[Dict[str, Any]] = []
    frames_total = 0
    try:
        data = _DataWriter(tmp, data_file_size_mb)
        videos = {k: _VideoFileWriter(tmp, k, fps, video_file_size_mb, crf, gop) for k in keys}
        index0 = 0
        for i in _progress(range(len(ds)), len(ds), "export-lerobot", "episode", progress):
            ep = ds.load_episode(i, images=bool(keys))
            table = pq.read_table(src / data_relpath(i))
            n = table.num_rows
            table = table.set_column(
                table.column_names.index("episode_index"),
                "episode_index",
                pa.array(np.full(n, i, np.int64)),
            )
            table = table.set_column(
                table.column_names.index("index"),
                "index",
                pa.array(np.arange(index0, index0 + n, dtype=np.int64)),
            )
            chunk, file = data.write(table)
            meta = ds.episodes[i]
            row: Dict[str, Any] = {
                "episode_index": i,
                "tasks": [
                    meta.get("instruction") or ds.tasks.get(int(meta.get("task_index", 0)), "")
                ],
                "length": n,
                "data/chunk_index": chunk,
                "data/file_index": file,
                "dataset_from_index": index0,
                "dataset_to_index": index0 + n,
            }
            for key in keys:
                c, f, t0, t1 = videos[key].write_episode(ep["images"][key])
                row.update(
                    {
                        "videos/%s/chunk_index" % key: c,
                        "videos/%s/file_index" % key: f,
                        "videos/%s/from_timestamp" % key: t0,
                        "videos/%s/to_timestamp" % key: t1,
                    }
                )
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            stats = _episode_stats(table, ep["images"])
            for feat, st in stats.items():
                for stat, v in st.items():
                    row["stats/%s/%s" % (feat, stat)] = v
            row["_extra"] = {
                k: v
                for k, v in meta.items()
                if k not in ("episode_index", "length", "instruction", "task_index")
            }
            ep_rows.append(row)
            index0 += n
            frames_total += n
        data.close()
        for v in videos.values():
            v.close()

        # meta/episodes
        extra_keys = sorted({k for r in ep_rows for k in r["_extra"]})
        fixed_keys = [k for k in ep_rows[0] if k != "_extra"]
        cols: Dict[str, Any] = {}
        for k in fixed_keys:
            vals = [r[k] for r in ep_rows]
            if k == "tasks":
                cols[k] = pa.array(vals, pa.list_(pa.string()))
            elif k.startswith("stats/"):
                cols[k] = pa.array(vals, pa.list_(pa.int64()) if k.endswith("/count") else None)
            else:
                cols[k] = pa.array(vals)
        json_cols = []
        for k in extra_keys:
            if k in cols:
                continue
            arr, as_json = _column([r["_extra"].get(k) for r in ep_rows])
            cols[k] = arr
            if as_json:
                json_cols.append(k)
        epath = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        epath.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), epath)

        # meta/tasks.parquet
        tasks = sorted(ds.tasks.items())
        pq.write_table(
            _parquet_with_pandas_index(
                {
                    "task_index": pa.array([i for i, _ in tasks], pa.int64()),
                    "task": pa.array([t for _, t in tasks], pa.string()),
                },
                "task",
            ),
            tmp / TASKS_PATH,
        )

        # meta/stats.json: ours, image stats reshaped; scalar columns from the episode stats
        stats = {}
        for feat, st in ds.stats.items():
            stats[feat] = _image_stats_v3(st) if feat.startswith(IMAGE_PREFIX) else st
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))

        # meta/info.json
        feats = json.loads(json.dumps(ds.info["features"]))
        for key in keys:
            ft = feats[key]
            h, w = videos[key].shape or tuple(ft["shape"][:2])
            ft["shape"] = [h, w, 3]
            ft["info"] = {
                "video.height": h,
                "video.width": w,
                "video.codec": "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": _fps_value(fps),
                "video.channels": 3,
                "has_audio": False,
            }
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": ds.robot,
            "total_episodes": len(ds),
            "total_frames": frames_total,
            "total_tasks": len(ds.tasks),
            "chunks_size": CHUNK_SIZE,
            "data_files_size_in_mb": data_file_size_mb,
            "video_files_size_in_mb": video_file_size_mb,
            "fps": _fps_value(fps),
            "splits": {"train": "0:%d" % len(ds)},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if keys else None,
            "features": feats,
            "clap_ros": {
                "format": ds.info.get("format"),
                "version": ds.info.get("version"),
                "robot": ds.robot,
                "joint_names": ds.joint_names,
                "json_columns": json_cols,
                "source": str(src),
            },
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
        size = _dir_bytes(tmp)
        _commit_out(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {
        "episodes": len(ds),
        "frames": frames_total,
        "wall_s": time.perf_counter() - t_start,
        "dataset_bytes": size,
        "info": info,
        "data_files": len(list((out / "data").rglob("*.parquet"))),
        "video_files": len(list((out / "videos").rglob("*.mp4"))) if keys else 0,
    }


def _fps_value(fps: float) -> Union[int, float]:
    """LeRobot writes fps as an int; keep fractional rates as they are."""
    return int(fps) if float(fps).is_integer() else float(fps)
