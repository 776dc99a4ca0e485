"""Calibration files: camera_info_manager YAML (intrinsics), hand-eye transform YAML, robot poses.

camera_info YAML is the format ``camera_info_manager`` / ``camera_calibration`` write and read, so
the file works with ROS camera drivers as well as with ``Calibration.from_camera_info`` and the
encoder node's ``calibration_file`` parameter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import yaml

from clap_ros.calibration.board import CalibrationInputError

PathLike = Union[str, Path]


# --- small transform helpers ------------------------------------------------------------------
def quat_xyzw_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, from a 3x3 rotation matrix."""
    R = np.asarray(R, dtype=np.float64)[:3, :3]
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1e-300, 1.0 + R[i, i] - R[j, j] - R[k, k]))
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def matrix_from_quat_xyzw(q: Sequence[float]) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _mat(rows: int, cols: int, data: np.ndarray) -> Dict[str, Any]:
    return {
        "rows": int(rows),
        "cols": int(cols),
        "data": [float(x) for x in np.asarray(data, dtype=np.float64).reshape(-1)],
    }


# --- camera_info ------------------------------------------------------------------------------
def camera_info_dict(
    K: np.ndarray,
    D: np.ndarray,
    width: int,
    height: int,
    camera_name: str = "camera",
    distortion_model: Optional[str] = None,
    P: Optional[np.ndarray] = None,
    R: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """camera_info_manager YAML content. P defaults to [K | 0] for an undistorted camera and to
    OpenCV's optimal new camera matrix (alpha = 0, as ROS camera_calibration) otherwise."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if distortion_model is None:
        distortion_model = "rational_polynomial" if D.size == 8 else "plumb_bob"
    if P is None:
        P = np.zeros((3, 4))
        if D.size and np.any(D != 0):
            import cv2

            newK, _ = cv2.getOptimalNewCameraMatrix(K, D, (int(width), int(height)), 0.0)
            P[:, :3] = newK
        else:
            P[:, :3] = K
    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64).reshape(3, 3)
    return {
        "image_width": int(width),
        "image_height": int(height),
        "camera_name": str(camera_name),
        "camera_matrix": _mat(3, 3, K),
        "distortion_model": str(distortion_model),
        "distortion_coefficients": _mat(1, D.size, D),
        "rectification_matrix": _mat(3, 3, R),
        "projection_matrix": _mat(3, 4, np.asarray(P).reshape(3, 4)),
    }


def write_yaml(path: PathLike, data: Mapping[str, Any], header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=100)
    if header:
        text = "".join("# %s\n" % line for line in header.splitlines()) + text
    path.write_text(text)
    return path


def write_camera_info(
    path: PathLike,
    K,
    D,
    width: int,
    height: int,
    camera_name: str = "camera",
    distortion_model: Optional[str] = None,
    header: str = "",
) -> Path:
    return write_yaml(
        path, camera_info_dict(K, D, width, height, camera_name, distortion_model), header
    )


def read_camera_info(path: PathLike):
    """``Calibration`` (K, D, width, height) from a camera_info YAML, with a clear error."""
    from clap_ros.inference.preprocess import Calibration

    try:
        data = yaml.safe_load(Path(path).read_text())
        return Calibration.from_camera_info(data)
    except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError) as e:
        raise CalibrationInputError("camera info %s: %s" % (path, e)) from None


# --- hand-eye transform --------------------------------------------------------------------
def transform_dict(T: np.ndarray, parent: str, child: str) -> Dict[str, Any]:
    T = np.asarray(T, dtype=np.float64)
    t = T[:3, 3]
    q = quat_xyzw_from_matrix(T[:3, :3])
    return {
        "parent_frame": parent,
        "child_frame": child,
        "translation": {"x": float(t[0]), "y": float(t[1]), "z": float(t[2])},
        "rotation": {"x": float(q[0]), "y": float(q[1]), "z": float(q[2]), "w": float(q[3])},
        "matrix": _mat(4, 4, T),
    }


def read_transform(path_or_dict: Union[PathLike, Mapping[str, Any]]) -> np.ndarray:
    """4x4 matrix of a hand-eye result file (its ``transform`` section, or the top level)."""
    d = path_or_dict
    if not isinstance(d, Mapping):
        d = yaml.safe_load(Path(d).read_text())
    d = d.get("transform", d)
    if "matrix" in d:
        return np.asarray(d["matrix"]["data"], dtype=np.float64).reshape(4, 4)
    T = np.eye(4)
    T[:3, :3] = matrix_from_quat_xyzw([d["rotation"][k] for k in "xyzw"])
    T[:3, 3] = [d["translation"][k] for k in "xyz"]
    return T


# --- robot poses for hand-eye ----------------------------------------------------------------
def load_joint_poses(path: PathLike) -> List[Dict[str, Any]]:
    """Joint positions per image from a YAML or JSON file.

    Accepted shapes (a top-level mapping with a ``poses`` list works too)::

        - {image: img_000.png, joints: {fr3_joint1: 0.1, ...}}     # paired by file name
        - {image: img_001.png, name: [fr3_joint1, ...], position: [0.1, ...]}
        - {fr3_joint1: 0.1, fr3_joint2: ...}                        # paired by sorted image order

    Returns a list of {"image": str or None, "joints": {name: float}}.
    """
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as e:
        raise CalibrationInputError("poses file %s: %s" % (path, e.strerror or e)) from None
    except (ValueError, yaml.YAMLError) as e:
        raise CalibrationInputError(
            "poses file %s: not valid %s: %s"
            % (path, "JSON" if path.suffix.lower() == ".json" else "YAML", e)
        ) from None
    if isinstance(raw, Mapping) and "poses" in raw:
        raw = raw["poses"]
    if not isinstance(raw, list) or not raw:
        raise CalibrationInputError(
            "poses file %s: expected a non-empty list of poses (or a "
            "mapping with a 'poses' list)" % path
        )
    out = []
    for k, item in enumerate(raw):
        where = "poses file %s, entry %d" % (path, k)
        if not isinstance(item, Mapping):
            raise CalibrationInputError(
                "%s: expected a mapping, got %s" % (where, type(item).__name__)
            )
        image = item.get("image")
        if "joints" in item:
            joints = item["joints"]
            if not isinstance(joints, Mapping):
                raise CalibrationInputError("%s: 'joints' must map joint name -> position" % where)
        elif "name" in item and "position" in item:
            names, pos = list(item["name"]), list(item["position"])
            if len(names) != len(pos):
                raise CalibrationInputError(
                    "%s: %d names but %d positions" % (where, len(names), len(pos))
                )
            joints = dict(zip(names, pos))
        else:
            joints = {n: v for n, v in item.items() if n != "image"}
        try:
            joints = {str(n): float(v) for n, v in joints.items()}
        except (TypeError, ValueError):
            raise CalibrationInputError("%s: joint positions must be numbers" % where) from None
        if not joints:
            raise CalibrationInputError("%s: no joint positions" % where)
        out.append({"image": None if image is None else str(image), "joints": joints})
    return out
