"""Shared pieces of the fuzz suite: one bounded, deterministic hypothesis profile and the strategies
that build malformed-but-typed messages (the shapes a ROS graph can really deliver: every field has
its declared type, the values are anything).

Determinism: ``derandomize=True`` and no example database, so ``make test`` runs the same examples
on every machine; ``CLAP_FUZZ_SCALE=10`` multiplies the example counts for a longer local hunt.
"""

from __future__ import annotations

import array
import math
import os
from types import SimpleNamespace
from typing import Dict, List, Tuple

import numpy as np
from hypothesis import HealthCheck, Phase, settings, strategies as st

from clap_ros.data.images import ENCODINGS
from clap_ros.robots import load_profile

SCALE = float(os.environ.get("CLAP_FUZZ_SCALE", "1"))
# The longest refusal reason or log line the suite accepts: bounded, whatever the input (the issue
# saw 200,000-character log lines); user text in them is clipped, repr-quoted (so up to ~10x).
MAX_TEXT = 2000


def fuzz_settings(max_examples: int, shrink: bool = True) -> settings:
    """The suite's settings: ``max_examples`` (times CLAP_FUZZ_SCALE), no deadline (CI machines are
    slow and shared), derandomized, no database. ``shrink=False`` for the tests whose examples take
    seconds: shrinking a failure there can take longer than the whole suite (the failing example
    is still reported, just not minimised)."""
    phases = [Phase.explicit, Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=max(1, int(max_examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


FR3 = load_profile("fr3")
UR5E = load_profile("ur5e")
PANDA = load_profile("panda")

# --- numbers ----------
HUGE = (1e300, -1e300, 1.7e308, -1.7e308, 1e19, -1e19)
ODD_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324) + HUGE


def any_float() -> st.SearchStrategy:
    return st.one_of(
        st.floats(-10.0, 10.0),
        st.sampled_from(ODD_FLOATS),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def joint_value(profile, j: int) -> st.SearchStrategy:
    lo, hi = float(profile.limits.lower[j]), float(profile.limits.upper[j])
    return st.floats(lo + 0.05, hi - 0.05)


# --- images ----------
GARBAGE_ENCODINGS = (
    "",
    "RGB8",
    "rgb8 ",
    " rgb8",
    "yuv422",
    "jpeg",
    "bayer_rggb8",
    "16SC1",
    "64FC1",
    "rgb16",
    "\x00",
    "rgb8\x00",
    "ümlaut",
    "x" * 300,
    "y" * 100_000,
)


def encodings() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(sorted(ENCODINGS)), st.sampled_from(GARBAGE_ENCODINGS), st.text(max_size=12)
    )


def _payload(kind: str, raw: bytes):
    if kind == "bytes":
        return raw
    if kind == "bytearray":
        return bytearray(raw)
    if kind == "array":  # what an rclpy message's data field holds
        return array.array("B", raw)
    return np.frombuffer(raw, dtype=np.uint8).copy()  # what a rosbags message holds


@st.composite
def image_fields(draw, max_side: int = 20, max_bytes: int = 60_000, encoding=None) -> Dict:
    """Fields of a sensor_msgs/Image: any encoding, size, step, data length and byte order.
    Roughly half the examples are well formed so acceptance is exercised, not only refusal."""
    enc = draw(encodings()) if encoding is None else draw(encoding)
    channels, dtype = ENCODINGS.get(enc, (draw(st.sampled_from([1, 3, 4])), np.dtype(np.uint8)))
    h = draw(st.one_of(st.integers(0, max_side), st.sampled_from([1, 2**16, 2**31, 2**32 - 1])))
    w = draw(st.one_of(st.integers(0, max_side), st.sampled_from([1, 2**16, 2**31, 2**32 - 1])))
    row = w * channels * dtype.itemsize
    step = draw(
        st.one_of(
            st.just(row),
            st.builds(lambda p: row + p, st.integers(1, 9)),
            st.integers(0, 2**32 - 1),
            st.just(max(row - 1, 0)),
        )
    )
    step = min(step, 2**32 - 1)
    natural = step * h
    if natural <= max_bytes:
        n = draw(st.one_of(st.just(natural), st.integers(0, natural + 40)))
    else:
        n = draw(st.integers(0, 4096))
    n = min(n, max_bytes)
    seed = draw(st.integers(0, 2**32 - 1))
    raw = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    if dtype == np.float32 and n and draw(st.booleans()):
        # mostly finite floats, so a 32FC1 payload is not all NaN bit patterns
        vals = np.random.default_rng(seed).standard_normal(n // 4).astype("<f4")
        raw = (vals.tobytes() + raw)[:n]
    return dict(
        height=h,
        width=w,
        encoding=enc,
        step=step,
        is_bigendian=draw(st.sampled_from([0, 1, 255])),
        data=_payload(draw(st.sampled_from(["bytes", "bytearray", "array", "ndarray"])), raw),
    )


def image_ns(fields: Dict) -> SimpleNamespace:
    """A rosbags-like message object (attributes only) with a header."""
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="camera"), **fields
    )


def well_formed(fields: Dict) -> bool:
    spec = ENCODINGS.get(fields["encoding"])
    if spec is None:
        return False
    channels, dtype = spec
    row = fields["width"] * channels * dtype.itemsize
    return fields["step"] >= row and len(bytes(fields["data"])) >= fields["step"] * fields["height"]


def reference_decode(fields: Dict) -> np.ndarray:
    """Row by row, the slow obvious way: what image_to_numpy must return for a well-formed image."""
    channels, dtype = ENCODINGS[fields["encoding"]]
    h, w, step = fields["height"], fields["width"], fields["step"]
    raw = bytes(fields["data"])
    dt = dtype.newbyteorder(">" if fields["is_bigendian"] else "<")
    row = w * channels * dtype.itemsize
    if row == 0 or h == 0:  # no pixels (h may be 2**31: no row loop)
        return np.zeros((h, w, channels) if channels > 1 else (h, w), dtype)
    rows = [np.frombuffer(raw[r * step : r * step + row], dtype=dt) for r in range(h)]
    out = (np.stack(rows) if rows else np.zeros((0, w * channels), dt)).astype(dtype)
    return out.reshape(h, w, channels) if channels > 1 else out.reshape(h, w)


# --- latents ----------
@st.composite
def latent_fields(draw, tokens: int, dim: int) -> Dict:
    """A /clap/latent Image: usually 32FC1 of the right or a nearby shape, values finite or not."""
    enc = draw(st.one_of(st.just("32FC1"), encodings()))
    h = draw(st.one_of(st.just(tokens), st.integers(0, tokens + 2), st.just(2**32 - 1)))
    w = draw(st.one_of(st.just(dim), st.integers(0, dim + 2), st.just(2**32 - 1)))
    step = draw(
        st.one_of(
            st.just(w * 4),
            st.builds(lambda p: w * 4 + p, st.integers(1, 7)),
            st.integers(0, 2**32 - 1),
        )
    )
    step = min(step, 2**32 - 1)
    natural = step * h if step * h < 200_000 else 0
    n = draw(st.one_of(st.just(natural), st.integers(0, natural + 16)))
    big = draw(st.sampled_from([0, 1]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n + 3) // 4).astype(">f4" if big else "<f4")
    poison = draw(st.sampled_from([None, math.nan, math.inf, -math.inf, 3e38]))
    if poison is not None and vals.size:
        vals[rng.integers(0, vals.size)] = poison
    raw = vals.tobytes()[:n]
    return dict(
        height=h,
        width=w,
        encoding=enc,
        step=step,
        is_bigendian=big,
        data=_payload(draw(st.sampled_from(["bytes", "array", "ndarray"])), raw),
    )


# --- joint states ----------
UNKNOWN_JOINTS = (
    "",
    "joint",
    "fr3_joint1 ",
    "FR3_JOINT1",
    "elbow_joint",
    "fr3_joint8",
    "gripper",
    "ü",
    "x" * 2000,
)


@st.composite
def joint_states(draw, profile=FR3) -> Tuple[List[str], List[float], Dict]:
    """(names, positions, what was done to them): a full, correct JointState mutated by dropping,
    adding, duplicating and renaming names, changing the positions' length and poisoning values."""
    names = list(profile.joint_names) + list(profile.gripper.joint_names)
    good = [draw(joint_value(profile, j)) for j in range(profile.dof)]
    grip = profile.gripper.position_from_command(draw(st.floats(0.0, 1.0)))
    values = good + [grip] * len(profile.gripper.joint_names)
    pairs = list(zip(names, values))
    pairs = draw(st.permutations(pairs))
    info = {"dropped": [], "added": [], "duplicated": [], "aliased": False}
    if draw(st.booleans()):
        k = draw(st.integers(1, len(pairs)))
        info["dropped"] = [p[0] for p in pairs[:k]]
        pairs = pairs[k:]
    if draw(st.booleans()):
        extra = draw(st.lists(st.tuples(st.sampled_from(UNKNOWN_JOINTS), any_float()), max_size=4))
        info["added"] = [e[0] for e in extra]
        pairs = pairs + extra
    if pairs and draw(st.booleans()):
        dup = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs)))
        if draw(st.booleans()):  # the second copy says something else
            dup = [(n, v + 0.5 if math.isfinite(v) else v) for n, v in dup]
        info["duplicated"] = [d[0] for d in dup]
        pairs = pairs + dup
    if profile.joint_name_aliases and draw(st.booleans()):
        inv = {v: k for k, v in profile.joint_name_aliases.items()}
        pairs = [(inv.get(n, n), v) for n, v in pairs]
        info["aliased"] = True
    names_out = [p[0] for p in pairs]
    pos = [float(p[1]) for p in pairs]
    if pos and draw(st.booleans()):
        i = draw(st.integers(0, len(pos) - 1))
        pos[i] = draw(st.sampled_from(ODD_FLOATS))
    delta = draw(st.sampled_from([0, 0, 0, -1, 1, -len(pos), 3]))
    if delta < 0:
        pos = pos[: len(pos) + delta]
    elif delta > 0:
        pos = pos + [0.0] * delta
    if draw(st.booleans()):
        pos = pos + []  # keep list
    return names_out, pos, info


def profile_joints_measured(profile, names, positions):
    """(arm values in profile order, gripper values) if the message names every arm joint exactly
    once, with one finite position per name; None when a careful reader must refuse it."""
    if len(positions) != len(names):
        return None
    canon = [profile.canonical_name(n) for n in names]
    mine = [c for c in canon if c in profile.joint_names or c in profile.gripper.joint_names]
    if len(mine) != len(set(mine)):
        return None
    pos = dict(zip(canon, positions))
    if any(j not in pos for j in profile.joint_names):
        return None
    arm = np.array([pos[j] for j in profile.joint_names])
    grip = [pos[j] for j in profile.gripper.joint_names if j in pos]
    if not (np.all(np.isfinite(arm)) and np.all(np.isfinite(grip))):
        return None
    return arm, grip


def joint_state_verdict(profile, names, positions, plausible=True):
    """The verdict a careful reader gives a JointState: "refuse", "accept", or None when either
    is defensible (a name outside the profile listed twice). ``plausible``: the cores'
    measurement check, which also refuses an arm position far outside the limits."""
    from clap_ros.runtime.messages import OUTSIDE_LIMITS_RAD

    measured = profile_joints_measured(profile, names, positions)
    if measured is None:
        return "refuse"
    lim = profile.limits
    arm = measured[0]
    far = (arm < lim.lower - OUTSIDE_LIMITS_RAD) | (arm > lim.upper + OUTSIDE_LIMITS_RAD)
    if plausible and far.any():
        return "refuse"
    canon = [profile.canonical_name(n) for n in names]
    return "accept" if len(set(canon)) == len(canon) else None


# --- trajectories ----------
def duration(t: float) -> SimpleNamespace:
    if not math.isfinite(t):
        return SimpleNamespace(sec=2**31 - 1, nanosec=999_999_999)
    sec = int(math.floor(t))
    sec = max(min(sec, 2**31 - 1), -(2**31))
    return SimpleNamespace(
        sec=sec, nanosec=int(min(max((t - math.floor(t)) * 1e9, 0), 999_999_999))
    )


@st.composite
def trajectory_msgs(draw, profile=FR3) -> SimpleNamespace:
    """A trajectory_msgs/JointTrajectory: names permuted/partial/duplicated/unknown, points with
    any number of values per field, non-increasing or huge times, NaN/Inf, efforts."""
    names = list(profile.joint_names)
    names = draw(st.permutations(names))
    mode = draw(st.sampled_from(["full", "full", "partial", "dup", "unknown", "empty"]))
    if mode == "partial":
        names = names[: draw(st.integers(1, len(names)))]
    elif mode == "dup":
        names = names + [names[0]]
    elif mode == "unknown":
        names = names[:-1] + [draw(st.sampled_from(UNKNOWN_JOINTS))]
    elif mode == "empty":
        names = []
    n_pts = draw(st.integers(0, 6))
    t = 0.0
    points = []
    for _ in range(n_pts):
        t += draw(
            st.one_of(
                st.floats(0.01, 1.0), st.sampled_from([0.0, -0.5, 1e9, 1e18]), st.floats(-1.0, 1.0)
            )
        )
        n = len(names) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        n = max(n, 0)
        pos = [draw(st.one_of(st.floats(-1.0, 1.0), any_float())) for _ in range(n)]
        vel = (
            draw(st.lists(st.one_of(st.floats(-2.0, 2.0), any_float()), min_size=n, max_size=n))
            if draw(st.booleans())
            else []
        )
        acc = (
            draw(st.lists(st.one_of(st.floats(-5.0, 5.0), any_float()), min_size=n, max_size=n))
            if draw(st.booleans())
            else []
        )
        eff = [1.0] * n if draw(st.integers(0, 9)) == 0 else []
        points.append(
            SimpleNamespace(
                positions=pos,
                velocities=vel,
                accelerations=acc,
                effort=eff,
                time_from_start=duration(t),
            )
        )
    stamp = draw(st.sampled_from([0.0, 0.0, 99.5, 100.0, 1e9]))
    return SimpleNamespace(
        header=SimpleNamespace(stamp=duration(stamp)), joint_names=names, points=points
    )


# --- instructions ----------
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\u200b\u202e\ufeff"


def instructions() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(
            [
                "",
                " ",
                "\n\t  ",
                "\x00",
                "?!.,;",
                "\u3000",
                "put the red cube in the bowl",
                "PUT THE RED CUBE",
                "put\x00the\x1bcube",
                "cube " * 20_000,
                "x" * 100_000,
                "\ud7ff" * 10,
                "é" * 1000 + " cube",
                "İstanbul cube",
            ]
        ),
        st.text(max_size=200),
        st.text(alphabet=st.sampled_from(CONTROL), max_size=50),
        st.builds(lambda c, n: c * n, st.text(min_size=1, max_size=3), st.integers(1000, 30_000)),
    )


def has_words(text: str) -> bool:
    from clap_ros.inference.tokenizer import normalize

    return bool(normalize(text))
