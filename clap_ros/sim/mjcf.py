"""Small helpers for writing MJCF text: number formatting, poses, look-at cameras."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from clap_ros.robots import rotx, rotz, trans  # noqa: F401  (re-exported for the scene builders)


def fmt(values: Iterable[float]) -> str:
    return " ".join("%.9g" % float(v) for v in values)


def mat2quat(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix."""
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=np.float64).reshape(9))
    return q


def quat2mat(q: Sequence[float]) -> np.ndarray:
    import mujoco

    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, np.asarray(q, dtype=np.float64))
    return R.reshape(3, 3)


def pose_attrs(T: np.ndarray) -> str:
    """``pos=".." quat=".."`` attributes for a 4x4 parent-from-child transform."""
    return 'pos="%s" quat="%s"' % (fmt(T[:3, 3]), fmt(mat2quat(T[:3, :3])))


def lookat_quat(pos: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """Quaternion of a MuJoCo camera at ``pos`` looking at ``target`` with world z up.

    MuJoCo cameras look along their -z axis with +y up in the image.
    """
    f = np.asarray(target, dtype=np.float64) - np.asarray(pos, dtype=np.float64)
    f /= np.linalg.norm(f)
    x = np.cross(f, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    z = -f
    y = np.cross(z, x)
    return mat2quat(np.column_stack([x, y, z]))
