"""Message contents the cores take and give, read through fields only (rclpy and rosbags
messages both work), with the checks every input gets.

- ``InputError``: an input the core cannot use; the message says why (it is refused, counted).
- ``LatestSlot``: a one-element mailbox for "keep only the latest input" worker threads.
- ``latent_to_bytes`` / ``latent_from_image``: the /clap/latent wire format (32FC1 Image,
  height = tokens, width = dim).
- ``check_joint_state`` / ``state_from_joint_state``: a JointState (by name) -> the bundle's
  state vector; duplicate names, mismatched lengths, missing joints, NaN/inf are refused.
- ``check_instruction``: an instruction to plan with, or the reason it is refused.
- ``plan_points``: a coarse chunk -> /clap/plan points (the exact timing rule is documented there).
- ``clip_text``: text for a log line (never a 100 kB instruction whole).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

LATENT_ENCODING = "32FC1"
GRIPPER_JOINT_NAME = "gripper"  # the last column of /clap/plan: opening, 0 closed .. 1 open
LOG_TEXT_CHARS = 80  # longest user text quoted in a log line
# A measured arm joint further than this outside its position limits is not a measurement (a
# driver cannot be there; 1e308 is garbage), and would trip the tracking check on nonsense.
OUTSIDE_LIMITS_RAD = 0.5


class InputError(ValueError):
    """An input message the node cannot use; the message says why."""


def clip_text(text: Any, limit: int = LOG_TEXT_CHARS, quote: bool = True) -> str:
    """``text`` for a log line: repr-quoted (``quote``), cut at ``limit`` characters with its
    length."""
    s = str(text)
    head = repr(s[:limit]) if quote else s[:limit]
    if len(head) > limit + 2:  # escapes (non-printable, astral) grow the repr
        head = head[:limit].rstrip("\\") + ("'" if quote else "")
    if len(s) <= limit and len(head) == len(repr(s) if quote else s):
        return head
    return "%s... (%d chars)" % (head, len(s))


class LatestSlot:
    """Holds only the newest item: ``put`` replaces (counting what it dropped), ``take`` waits.

    Inference that is slower than its input must work on the newest frame, never on a queue of old
    ones; the subscription callback only ever does ``put`` and so never blocks on inference."""

    def __init__(self) -> None:
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
        raise InputError(
            "latent encoding is %s, expected %s" % (clip_text(msg.encoding, 32), LATENT_ENCODING)
        )
    if (msg.height, msg.width) != (tokens, dim):
        raise InputError(
            "latent is %dx%d (height x width), the bundle needs %dx%d"
            % (msg.height, msg.width, tokens, dim)
        )
    if msg.step < dim * 4:
        raise InputError("latent step %d is smaller than width*4 = %d" % (msg.step, dim * 4))
    buf = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if len(buf) < msg.step * tokens:
        raise InputError("latent has %d bytes, expected %d" % (len(buf), msg.step * tokens))
    dtype = ">f4" if msg.is_bigendian else "<f4"
    rows = np.frombuffer(buf, dtype=np.uint8, count=msg.step * tokens).reshape(tokens, msg.step)
    lat = rows[:, : dim * 4].copy().view(dtype).reshape(tokens, dim).astype(np.float32)
    if not np.all(np.isfinite(lat)):
        raise InputError("latent contains non-finite values")
    return lat


def check_latent_array(latent: Any, tokens: int, dim: int, finite: bool = True) -> np.ndarray:
    """float32 ``[tokens, dim]`` from an array; InputError for another shape (or NaN/inf when
    ``finite``; the action core lets a NaN latent through to the model, whose non-finite
    output is then a fault that stops the arm until ~/enable)."""
    try:
        lat = np.asarray(latent, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError("latent is not numeric: %s" % e) from None
    if lat.shape != (tokens, dim):
        raise InputError(
            "latent must be %s (tokens x dim of the bundle), got %s"
            % ([tokens, dim], list(lat.shape))
        )
    if finite and not np.all(np.isfinite(lat)):
        raise InputError("latent contains non-finite values")
    return lat


# (profile, names) -> (profile, arm indices, gripper indices). A driver sends the same names in
# every message (500 Hz - 1 kHz), so their checks and lookup run once per layout.
_LAYOUTS: Dict[Tuple[int, tuple], Tuple[Any, np.ndarray, np.ndarray]] = {}
_MAX_LAYOUTS = 64


def _joint_layout(profile, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(arm indices in profile order, indices of the gripper joints present) into ``names``;
    InputError for a name listed twice, ProfileError for missing arm joints."""
    try:
        key: Optional[Tuple[int, tuple]] = (id(profile), tuple(names))
        hit = _LAYOUTS.get(key)  # type: ignore[arg-type]
    except TypeError:  # unhashable names: checked every time
        key, hit = None, None
    if hit is not None and hit[0] is profile:
        return hit[1], hit[2]
    canon = [profile.canonical_name(str(n)) for n in names]
    if len(set(canon)) != len(canon):
        seen, dup = set(), []
        for n in canon:
            if n in seen and n not in dup:
                dup.append(n)
            seen.add(n)
        raise InputError(
            "joint_states lists joint(s) %s more than once" % clip_text(", ".join(dup))
        )
    arm_idx = np.asarray(profile.index_map([str(n) for n in names]), dtype=np.intp)
    where = {n: i for i, n in enumerate(canon)}
    grip_idx = np.asarray(
        [where[n] for n in profile.gripper.joint_names if n in where], dtype=np.intp
    )
    if key is not None:
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        _LAYOUTS[key] = (profile, arm_idx, grip_idx)
    return arm_idx, grip_idx


def check_joint_state(
    profile, names: Sequence[str], positions: Sequence[float]
) -> Tuple[np.ndarray, bool]:
    """(state, gripper_measured): arm joint positions in profile order + gripper opening (0..1).

    Indexed by name. Refused (InputError, or ProfileError naming missing joints): a name listed
    twice, a different number of names and positions, a missing arm joint, a non-finite arm or
    gripper position (``check_plausible`` adds the position-limit check). The opening is the
    mean of the gripper's joints that are present, mapped
    as the dataset does (bag2dataset); a driver that publishes no gripper joint gives
    ``gripper_measured = False`` and an opening of 1.0 (open), which the caller should report.
    """
    try:
        if not isinstance(names, (list, tuple)):
            names = list(names)
        pos = np.asarray(
            positions if isinstance(positions, np.ndarray) else list(positions), dtype=np.float64
        ).reshape(-1)
    except (TypeError, ValueError) as e:
        raise InputError("joint_states positions are not numbers: %s" % e) from None
    if pos.shape[0] != len(names):
        raise InputError("joint_states has %d positions for %d names" % (pos.shape[0], len(names)))
    arm_idx, grip_idx = _joint_layout(profile, names)
    dof = arm_idx.shape[0]
    state = np.empty(dof + 1, dtype=np.float64)
    state[:dof] = pos[arm_idx]
    if grip_idx.shape[0]:
        g = pos[grip_idx].tolist()
        if not all(math.isfinite(v) for v in g):
            raise InputError("joint_states has non-finite gripper positions: %s" % g)
        state[dof] = profile.gripper.command_from_position(sum(g) / len(g))
    else:
        state[dof] = 1.0
    if not np.isfinite(state).all():
        raise InputError("joint_states has non-finite positions: %s" % state.tolist())
    return state, bool(grip_idx.shape[0])


_PLAUSIBLE: Dict[int, Tuple[Any, np.ndarray, np.ndarray]] = {}  # id(profile) -> bounds


def check_plausible(profile, state: np.ndarray) -> None:
    """InputError when an arm position of ``state`` is more than OUTSIDE_LIMITS_RAD outside the
    profile's limits: well-formed, but no arm is there (a 1e308 would trip the tracking check or
    be planned on). The cores apply it to every joint state they take as a measurement."""
    arm = np.asarray(state, dtype=np.float64)[: profile.dof]
    lim = profile.limits
    hit = _PLAUSIBLE.get(id(profile))
    if hit is None or hit[0] is not profile:
        hit = (profile, lim.lower - OUTSIDE_LIMITS_RAD, lim.upper + OUTSIDE_LIMITS_RAD)
        _PLAUSIBLE[id(profile)] = hit
    out = (arm < hit[1]) | (arm > hit[2])
    if out.any():
        j = int(np.nonzero(out)[0][0])
        raise InputError(
            "joint_states: %s = %.6g rad is more than %.1f rad outside its limits "
            "[%.4g, %.4g]"
            % (profile.joint_names[j], arm[j], OUTSIDE_LIMITS_RAD, lim.lower[j], lim.upper[j])
        )


# The name the nodes have always used.
state_from_joint_state = check_joint_state


def check_instruction(text: Any, max_chars: int) -> Tuple[Optional[str], str]:
    """(instruction to plan with, "") or (None, why it is refused): empty or whitespace only,
    longer than ``max_chars``, or without a word (punctuation only: the tokenizer's words).
    Surrounding whitespace is stripped."""
    s = str(text) if text is not None else ""
    if not s.strip():
        return None, "empty instruction %s" % clip_text(s, 20)
    s = s.strip()
    if len(s) > max_chars:
        return None, (
            "instruction of %d characters (more than max_instruction_chars %d): %s"
            % (len(s), max_chars, clip_text(s))
        )
    from clap_ros.inference.tokenizer import normalize

    if not normalize(s):
        # nothing the tokenizer reads as a word: the model would plan on padding alone
        return None, "instruction without a word: %s" % clip_text(s)
    return s, ""


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
