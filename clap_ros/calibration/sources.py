"""Where calibration views come from: an image folder (+ a poses file) or a rosbag2 bag."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from clap_ros.calibration.board import CalibrationInputError
from clap_ros.rostime import stamp_to_ns

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def image_paths(folder) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationInputError("image folder %s does not exist" % folder)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CalibrationInputError("no images (%s) in %s" % (", ".join(IMAGE_SUFFIXES), folder))
    return paths


def read_image(path) -> np.ndarray:
    """uint8 RGB (or gray) image; a clear error when it does not decode."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CalibrationInputError("cannot read image %s" % path)
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def images_from_folder(folder) -> List[Tuple[str, np.ndarray]]:
    return [(p.name, read_image(p)) for p in image_paths(folder)]


def _stamp_ns(msg, log_ns: int) -> int:
    try:
        t = stamp_to_ns(msg.header.stamp)
    except AttributeError:
        return int(log_ns)
    return t if t > 0 else int(log_ns)


def images_from_bag(bag, topic: str, every: int = 1) -> List[Tuple[str, np.ndarray, int]]:
    """(name, rgb, stamp_ns) of every ``every``-th image on ``topic`` (Image or CompressedImage)."""
    from clap_ros.data.bags import BagReader
    from clap_ros.data.images import message_to_rgb

    out = []
    with BagReader(bag) as reader:
        reader.require([topic])
        for k, (_, _, ts, msg) in enumerate(reader.messages([topic])):
            if k % max(1, int(every)):
                continue
            t = _stamp_ns(msg, ts)
            out.append(("%s@%d" % (topic, t), message_to_rgb(msg), t))
    return out


def joint_states_from_bag(bag, topic: str = "/joint_states"):
    """(stamps_ns [N], names per message, positions per message)."""
    from clap_ros.data.bags import BagReader

    stamps, names, positions = [], [], []
    with BagReader(bag) as reader:
        reader.require([topic])
        for _, _, ts, msg in reader.messages([topic]):
            stamps.append(_stamp_ns(msg, ts))
            names.append(list(msg.name))
            positions.append(np.asarray(msg.position, dtype=np.float64))
    return np.asarray(stamps, dtype=np.int64), names, positions


def pair_with_joint_states(
    image_stamps: Sequence[int],
    js_stamps: np.ndarray,
    js_q: np.ndarray,
    max_dt: float = 0.05,
    max_speed: float = 0.02,
    min_change: float = 0.02,
) -> List[Tuple[int, int]]:
    """(image index, joint-state index) pairs: the joint state nearest in time, at most ``max_dt``
    seconds away, with the arm still (joint speed from the neighbouring states <= ``max_speed``
    rad/s), and a pose at least ``min_change`` rad (max over joints) from the last one kept, so a
    long still phase yields one view."""
    order = np.argsort(js_stamps, kind="stable")
    js_stamps, js_q = js_stamps[order], js_q[order]
    pairs: List[Tuple[int, int]] = []
    last_q = None
    for i, t in enumerate(image_stamps):
        k = int(np.searchsorted(js_stamps, t))
        cands = [c for c in (k - 1, k) if 0 <= c < len(js_stamps)]
        if not cands:
            continue
        j = min(cands, key=lambda c: abs(int(js_stamps[c]) - int(t)))
        if abs(int(js_stamps[j]) - int(t)) > max_dt * 1e9:
            continue
        lo, hi = max(0, j - 1), min(len(js_stamps) - 1, j + 1)
        if hi > lo and max_speed > 0:
            dt = (js_stamps[hi] - js_stamps[lo]) * 1e-9
            if dt > 0 and np.max(np.abs(js_q[hi] - js_q[lo])) / dt > max_speed:
                continue
        if last_q is not None and np.max(np.abs(js_q[j] - last_q)) < min_change:
            continue
        last_q = js_q[j]
        pairs.append((i, int(order[j])))
    return pairs


def joint_vector(profile, joints: dict, where: str, allow_unknown: bool = False) -> np.ndarray:
    """The profile's joint order from a {name: position} mapping; missing names (and unknown ones,
    unless ``allow_unknown``, e.g. a joint_states message of several devices) are an error."""
    canon = {profile.canonical_name(n): v for n, v in joints.items()}
    known = set(profile.joint_names) | set(profile.gripper.joint_names)
    unknown = [] if allow_unknown else sorted(n for n in canon if n not in known)
    missing = [n for n in profile.joint_names if n not in canon]
    if unknown or missing:
        raise CalibrationInputError(
            "%s: joint names do not match robot profile '%s'%s%s (expected %s)"
            % (
                where,
                profile.name,
                ("; unknown %s" % unknown) if unknown else "",
                ("; missing %s" % missing) if missing else "",
                ", ".join(profile.joint_names),
            )
        )
    return np.array([canon[n] for n in profile.joint_names], dtype=np.float64)
