"""Plain-Python pieces of the CLAP nodes (encoder, planner, action), unit-tested without ROS.

No rclpy import: messages are read through their fields only, so rclpy and rosbags messages both
work.

- ``resolve_model_dir(path)``: the ``model`` parameter -> an existing bundle directory.
- ``LatestSlot``: a one-element mailbox for "keep only the latest input" worker threads.
- ``latent_to_bytes`` / ``latent_from_image``: the /clap/latent wire format (32FC1 Image,
  height = tokens, width = dim).
- ``state_from_joint_state``: /joint_states (by name) -> the bundle's state vector.
- ``plan_points``: a coarse chunk -> /clap/plan points (the exact timing rule is documented there).
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

LATENT_ENCODING = "32FC1"
GRIPPER_JOINT_NAME = "gripper"  # the last column of /clap/plan: opening, 0 closed .. 1 open


class InputError(ValueError):
    """An input message the node cannot use; the message says why."""


def resolve_model_dir(path: Union[str, Path]) -> Path:
    """The bundle directory for a ``model`` parameter.

    Absolute paths are taken as they are. A relative path is looked up in the working directory,
    then next to the clap_ros package (a source checkout: ``<repo>/models/default``), then in the
    install's ``share/clap_ros``. If none exists the working-directory path is returned, so the
    bundle loader's error names the path the user typed.
    """
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return p
    import clap_ros
    candidates = [Path.cwd() / p,
                  Path(clap_ros.__file__).resolve().parent.parent / p,
                  Path(sys.prefix) / "share" / "clap_ros" / p]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


class LatestSlot:
    """Holds only the newest item: ``put`` replaces (counting what it dropped), ``take`` waits.

    Inference that is slower than its input must work on the newest frame, never on a queue of old
    ones; the subscription callback only ever does ``put`` and so never blocks on inference."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._has:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()

    def take(self, timeout: Optional[float] = None) -> Tuple[bool, Any]:
        """(True, item) once one is there, (False, None) on timeout or after ``close``."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._has:
                return False, None
            item, self._item, self._has = self._item, None, False
            return True, item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def latent_to_bytes(latent: np.ndarray) -> Tuple[int, int, int, bytes]:
    """(height, width, step, little-endian float32 bytes) for a 32FC1 latent Image."""
    lat = np.asarray(latent, dtype="<f4")
    if lat.ndim != 2:
        raise InputError("latent must be 2-D [tokens, dim], got shape %s" % (list(lat.shape),))
    h, w = lat.shape
    return h, w, w * 4, np.ascontiguousarray(lat).tobytes()


def latent_from_image(msg: Any, tokens: int, dim: int) -> np.ndarray:
    """float32 ``[tokens, dim]`` from a /clap/latent Image; InputError names what is wrong."""
    if msg.encoding != LATENT_ENCODING:
        raise InputError("latent encoding is '%s', expected %s" % (msg.encoding, LATENT_ENCODING))
    if (msg.height, msg.width) != (tokens, dim):
        raise InputError("latent is %dx%d (height x width), the bundle needs %dx%d"
                         % (msg.height, msg.width, tokens, dim))
    if msg.step < dim * 4:
        raise InputError("latent step %d is smaller than width*4 = %d" % (msg.step, dim * 4))
    buf = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if len(buf) < msg.step * tokens:
        raise InputError("latent has %d bytes, expected %d" % (len(buf), msg.step * tokens))
    dtype = ">f4" if msg.is_bigendian else "<f4"
    rows = np.frombuffer(buf, dtype=np.uint8, count=msg.step * tokens).reshape(tokens, msg.step)
    lat = rows[:, :dim * 4].copy().view(dtype).reshape(tokens, dim).astype(np.float32)
    if not np.all(np.isfinite(lat)):
        raise InputError("latent contains non-finite values")
    return lat


def state_from_joint_state(profile, names: Sequence[str], positions: Sequence[float]
                           ) -> Tuple[np.ndarray, bool]:
    """(state, gripper_measured): arm joint positions in profile order + gripper opening (0..1).

    Indexed by name (ProfileError names missing joints). The opening is the mean of the gripper's
    joints that are present, mapped as the dataset does (bag2dataset); a driver that publishes no
    gripper joint gives ``gripper_measured = False`` and an opening of 1.0 (open), which the
    caller should report.
    """
    names = list(names)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.shape[0] < len(names):
        raise InputError("joint_states has %d positions for %d names" % (pos.shape[0], len(names)))
    arm = profile.reorder(names, pos)
    idx = {profile.canonical_name(n): i for i, n in enumerate(names)}
    g = [pos[idx[n]] for n in profile.gripper.joint_names if n in idx]
    opening = profile.gripper.command_from_position(float(np.mean(g))) if g else 1.0
    state = np.concatenate([arm, [opening]])
    if not np.all(np.isfinite(state)):
        raise InputError("joint_states has non-finite positions: %s" % state.tolist())
    return state, bool(g)


def plan_points(targets: np.ndarray, chunk_dt: float) -> List[Tuple[float, List[float]]]:
    """/clap/plan points from absolute joint targets + gripper ``[H, A]``.

    Timing rule: chunk step i belongs to ``header.stamp + i * chunk_dt`` (header.stamp = the
    source camera frame's stamp). Point i carries ``time_from_start = (i + 1) * chunk_dt`` so the
    first point is > 0, as a JointTrajectory requires; a reader gets step i's absolute time as
    ``header.stamp + time_from_start - chunk_dt``.
    """
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or not np.all(np.isfinite(t)):
        raise InputError("plan targets must be a finite [H, A] array")
    if not chunk_dt > 0:
        raise InputError("chunk_dt must be > 0, got %r" % chunk_dt)
    return [((i + 1) * chunk_dt, [float(v) for v in row]) for i, row in enumerate(t)]
