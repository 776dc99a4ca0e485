"""A folder of (human) video clips + an optional labels file -> the human-video dataset training
reads (DIR/labels.json + DIR/videos/*.mp4, the layout ``clap_ros.sim.human_video`` writes).

Each clip is decoded once, resampled to ``fps`` ("latest source frame at or before each output
time", as bag2dataset samples streams), resized to ``size`` (``crop``: scale to cover, centre crop;
``pad``: scale to fit, black borders; ``stretch``: ignore the aspect ratio) and re-encoded as H.264
yuv420p. A clip that cannot be read is skipped with a reason; the others continue.

Labels (optional):
  * JSON in the style of Something-Something v2: a list of {"id", "label", "template",
    "placeholders"} -> action_category = template without brackets ("Pushing [something] from
    left to right" -> "pushing something from left to right"), instruction = label. Entries may
    also give "file"/"video", "action_category"/"category", "instruction"; a {"clips": [...]}
    object or an {id: label} mapping work too.
  * CSV with columns file,label,instruction (header row optional; label = action category).
Entries match a video by relative path, file name or stem (SSv2 ids are the file stems). Without
a labels file the action category is the clip's folder name relative to SRC (e.g. UCF-style
class folders), or "unlabeled".
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from clap_ros.data.video import VideoError, VideoWriter

PathLike = Union[str, Path]

FORMAT = "clap_ros_human_videos"  # = clap_ros.sim.human_video.FORMAT
VERSION = 1
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
RESIZE_MODES = ("crop", "pad", "stretch")


class LabelsError(ValueError):
    """A labels file that cannot be read; the message names the file and the problem."""


# --- labels ------------------------------------------------------------------------------------
def _category_from_template(template: str) -> str:
    text = re.sub(r"[\[\]]", "", str(template)).strip()
    return re.sub(r"\s+", " ", text).lower()


def _entry(d: Dict[str, Any]) -> Tuple[Optional[str], Dict[str, Any]]:
    key = d.get("file") or d.get("video") or d.get("path") or d.get("id")
    if d.get("template") is not None:  # Something-Something: template = the category
        category = _category_from_template(d["template"])
        instruction = d.get("instruction") or d.get("label") or ""
    else:
        category = d.get("action_category") or d.get("category") or d.get("label") or "unlabeled"
        instruction = d.get("instruction") or ""
    extra = {k: d[k] for k in ("id", "template", "placeholders", "label") if d.get(k) is not None}
    return (
        str(key) if key is not None else None,
        {"action_category": str(category), "instruction": str(instruction), "label_fields": extra},
    )


def read_labels(path: PathLike) -> Dict[str, Dict[str, Any]]:
    """key (file path, name, or id) -> {"action_category", "instruction", "label_fields"}."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LabelsError("%s: labels file not found" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError("%s: unreadable (%s)" % (path, e)) from None
    out: Dict[str, Dict[str, Any]] = {}
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:1]] == ["file"]:
            header = [c.strip().lower() for c in rows[0]]
            rows = [dict(zip(header, r)) for r in rows[1:]]
        else:
            rows = [dict(zip(("file", "label", "instruction"), r)) for r in rows]
        for i, r in enumerate(rows):
            key = (r.get("file") or "").strip()
            if not key:
                raise LabelsError("%s: row %d has no file" % (path, i + 1))
            out[key] = {
                "action_category": (r.get("label") or "").strip() or "unlabeled",
                "instruction": (r.get("instruction") or "").strip(),
                "label_fields": {},
            }
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelsError(
            "%s: not valid JSON (%s); expected a JSON list of {id, label, template,"
            " placeholders} or a CSV file,label,instruction" % (path, e)
        ) from None
    if isinstance(data, dict) and isinstance(data.get("clips"), list):
        data = data["clips"]
    if isinstance(data, dict):
        data = [
            {"id": k, "label": v} if not isinstance(v, dict) else dict(v, id=k)
            for k, v in data.items()
        ]
    if not isinstance(data, list):
        raise LabelsError("%s: expected a list of label objects" % path)
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise LabelsError("%s: entry %d is not an object" % (path, i))
        key, lab = _entry(d)
        if key is None:
            raise LabelsError("%s: entry %d has no id/file" % (path, i))
        out[key] = lab
    return out


def _match(labels: Dict[str, Dict[str, Any]], rel: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    p = Path(rel)
    for key in (rel, p.name, p.stem, str(p.with_suffix(""))):
        if key in labels:
            return key, labels[key]
    return None


# --- frames ------------------------------------------------------------------------------------
def fit_frame(frame: np.ndarray, size: Tuple[int, int], mode: str = "crop") -> np.ndarray:
    """uint8 HxWx3 -> uint8 size[0] x size[1] x 3 (crop: cover + centre crop; pad: fit + black
    borders; stretch: plain resize)."""
    import cv2

    th, tw = size
    h, w = frame.shape[:2]
    if (h, w) == (th, tw):
        return frame

    def rs(img, nh, nw):
        interp = cv2.INTER_AREA if nh < img.shape[0] or nw < img.shape[1] else cv2.INTER_LINEAR
        return cv2.resize(img, (nw, nh), interpolation=interp)

    if mode == "stretch":
        return rs(frame, th, tw)
    if mode == "crop":
        s = max(th / h, tw / w)
        nh, nw = max(th, int(round(h * s))), max(tw, int(round(w * s)))
        img = rs(frame, nh, nw)
        y, x = (nh - th) // 2, (nw - tw) // 2
        return np.ascontiguousarray(img[y : y + th, x : x + tw])
    if mode == "pad":
        s = min(th / h, tw / w)
        nh, nw = min(th, max(1, int(round(h * s)))), min(tw, max(1, int(round(w * s))))
        img = rs(frame, nh, nw)
        out = np.zeros((th, tw, 3), np.uint8)
        y, x = (th - nh) // 2, (tw - nw) // 2
        out[y : y + nh, x : x + nw] = img
        return out
    raise ValueError("resize mode must be one of %s, got %r" % (RESIZE_MODES, mode))


def sampled_frames(
    path: PathLike, fps: float, counter: Optional[Dict[str, int]] = None
) -> Iterator[Tuple[int, Any]]:
    """(output index k, av.VideoFrame) at output times k/fps, k = 0, 1, ...: the latest decoded
    frame at or before each time (times from the first frame's; the last frame lasts one source
    frame period). ``counter["decoded"]`` counts the source frames decoded. Raises VideoError."""
    counter = counter if counter is not None else {}
    counter["decoded"] = 0
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except Exception as e:
        raise VideoError("%s: cannot open video (%s)" % (path, e)) from None
    try:
        if not container.streams.video:
            raise VideoError("%s: has no video stream" % path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.base_rate or 0) or 30.0
        k = 0  # next output frame
        n = 0  # decoded frames
        t0 = None
        prev = None
        try:
            for f in container.decode(video=0):
                t = f.time if f.time is not None else n / rate
                n += 1
                counter["decoded"] = n
                if t0 is None:
                    t0 = t
                t -= t0
                # frames whose output time lies before this frame's time take the previous frame
                while prev is not None and k / fps < t - 1e-6:
                    yield k, prev
                    k += 1
                prev = f
            if prev is not None:
                # the last frame covers its own display period
                end = (t + 1.0 / rate) if n else 0.0
                while k / fps < end - 1e-6:
                    yield k, prev
                    k += 1
        except VideoError:
            raise
        except Exception as e:
            raise VideoError("%s: corrupt video (%s)" % (path, e)) from None
        if n == 0:
            raise VideoError("%s: no decodable frames" % path)
    finally:
        container.close()


# --- import ------------------------------------------------------------------------------------
def find_videos(src: PathLike) -> List[Path]:
    src = Path(src)
    if src.is_file():
        return [src]
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )


def import_videos(
    src: PathLike,
    out: PathLike,
    labels: Optional[PathLike] = None,
    fps: float = 15.0,
    size: Tuple[int, int] = (128, 128),
    mode: str = "crop",
    crf: int = 20,
    min_frames: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> Dict[str, Any]:
    """Convert every video under ``src`` into ``out`` (labels.json + videos/NNNNNN.mp4); returns
    a summary (clips, skipped, frames_in, frames_out, wall_s, ...)."""
    from tqdm import tqdm

    src, out = Path(src), Path(out)
    t_start = time.perf_counter()
    h, w = int(size[0]), int(size[1])
    if h % 2 or w % 2 or h <= 0 or w <= 0:
        raise ValueError(
            "--size must be positive and even in both dimensions for yuv420p video, "
            "got %dx%d" % (h, w)
        )
    if not fps or fps <= 0:
        raise ValueError("--fps must be positive, got %r" % fps)
    if mode not in RESIZE_MODES:
        raise ValueError("resize mode must be one of %s, got %r" % (RESIZE_MODES, mode))
    if not src.exists():
        raise FileNotFoundError("%s: no such file or directory" % src)
    videos = find_videos(src)
    if not videos:
        raise FileNotFoundError("%s: no video files (%s)" % (src, ", ".join(VIDEO_EXTENSIONS)))
    table = read_labels(labels) if labels else None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(
                "%s exists and is not empty (use --overwrite to replace it)" % out
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / (".%s.partial-%d" % (out.name, os.getpid()))
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "videos").mkdir(parents=True)
    clips: List[Dict[str, Any]] = []
    skipped: List[Dict[str, Any]] = []
    used_keys = set()
    frames_in = frames_out = 0
    fps_out: Union[int, float] = int(fps) if float(fps).is_integer() else float(fps)
    root = src if src.is_dir() else src.parent
    try:
        for path in tqdm(videos, desc="import-videos", unit="clip", disable=not progress):
            rel = path.relative_to(root).as_posix()
            if table is not None:
                m = _match(table, rel)
                if m is None:
                    reason = "%s: no entry in %s" % (path, labels)
                    log("skipped: %s" % reason, file=sys.stderr)
                    skipped.append({"file": str(path), "reason": reason})
                    continue
                key, lab = m
                used_keys.add(key)
            else:
                parent = Path(rel).parent.as_posix()
                lab = {
                    "action_category": parent if parent not in ("", ".") else "unlabeled",
                    "instruction": "",
                    "label_fields": {},
                }
            name = "videos/%06d.mp4" % len(clips)
            dst = tmp / name
            writer = VideoWriter(dst, fps, crf=crf)
            count = {"decoded": 0}
            try:
                for _, frame in sampled_frames(path, fps, count):
                    writer.write(fit_frame(frame.to_ndarray(format="rgb24"), (h, w), mode))
                writer.close()
                if writer.frames_written < min_frames:
                    raise VideoError(
                        "%s: only %d frame(s) at %g fps (need %d)"
                        % (path, writer.frames_written, fps, min_frames)
                    )
            except VideoError as e:
                writer.close()
                dst.unlink(missing_ok=True)
                log("skipped: %s" % e, file=sys.stderr)
                skipped.append({"file": str(path), "reason": str(e)})
                continue
            clip = {
                "file": name,
                "action_category": lab["action_category"],
                "instruction": lab["instruction"],
                "scene_id": len(clips),
                "appearance": {},
                "num_frames": int(writer.frames_written),
                "source": rel,
            }
            if lab.get("label_fields"):
                clip["label_fields"] = lab["label_fields"]
            clips.append(clip)
            frames_in += count["decoded"]
            frames_out += writer.frames_written
        if clips:
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "fps": fps_out,
                "clips": clips,
                "source": str(src),
                "size": [h, w],
                "resize": mode,
            }
            (tmp / "labels.json").write_text(json.dumps(meta, indent=1))
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    unused = sorted(set(table) - used_keys) if table is not None else []
    return {
        "clips": clips,
        "skipped": skipped,
        "frames_in": frames_in,
        "frames_out": frames_out,
        "wall_s": time.perf_counter() - t_start,
        "labels_without_video": unused,
        "categories": sorted({c["action_category"] for c in clips}),
    }
