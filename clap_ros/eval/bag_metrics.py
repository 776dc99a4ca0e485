"""Pure-numpy metrics of a replayed policy against a recorded reference (``clap-ros eval-bag``).

No ROS, no bag access: callers sample signals onto arrays and pass them in, so every function has
a known answer on synthetic signals (tests/unit/test_bag_metrics.py). Times are seconds, joint
arrays ``[..., J]``. Summaries are plain dicts of floats / lists (JSON-ready); a statistic of an
empty selection is ``None``, never NaN, so metrics.json stays valid JSON.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np


def _f(x) -> Optional[float]:
    x = float(x)
    return x if np.isfinite(x) else None


def _list(a) -> List[Optional[float]]:
    return [_f(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def chunk_errors(
    pred: np.ndarray,
    ref: np.ndarray,
    valid: Optional[np.ndarray] = None,
    names: Optional[Sequence[str]] = None,
) -> Dict[str, object]:
    """Errors of predicted chunks against the reference at the same future times.

    ``pred``, ``ref``: ``[K chunks, H steps, J joints]``; ``valid`` ``[K, H]`` marks steps whose
    time lies inside the reference (others are ignored). Returns per-joint MAE / RMSE over every
    valid step, the overall MAE / RMSE (over all joints), and the MAE per horizon step (how the
    error grows with look-ahead)."""
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(
            "pred and ref must both be [K, H, J], got %s and %s" % (pred.shape, ref.shape)
        )
    k, h, j = pred.shape
    valid = np.ones((k, h), bool) if valid is None else np.asarray(valid, bool)
    err = pred - ref
    e = err[valid]  # [n, J]
    n = int(e.shape[0])
    out: Dict[str, object] = {
        "chunks": int(k),
        "steps": n,
        "joint_names": list(names) if names is not None else None,
    }
    if n == 0:
        out.update(
            mae=None,
            rmse=None,
            mae_per_joint=[None] * j,
            rmse_per_joint=[None] * j,
            mae_per_step=[None] * h,
            max_abs=None,
        )
        return out
    out["mae_per_joint"] = _list(np.mean(np.abs(e), axis=0))
    out["rmse_per_joint"] = _list(np.sqrt(np.mean(e**2, axis=0)))
    out["mae"] = _f(np.mean(np.abs(e)))
    out["rmse"] = _f(np.sqrt(np.mean(e**2)))
    out["max_abs"] = _f(np.max(np.abs(e)))
    per_step = []
    for i in range(h):
        m = valid[:, i]
        per_step.append(_f(np.mean(np.abs(err[m, i]))) if m.any() else None)
    out["mae_per_step"] = per_step
    return out


def gripper_agreement(
    pred: np.ndarray, ref: np.ndarray, threshold: float = 0.5
) -> Dict[str, object]:
    """Open/close agreement of two opening signals (0 closed .. 1 open) sampled at the same
    times: the fraction of samples on the same side of ``threshold``, and how often each
    switched state (a policy that chatters shows many more switches than the operator)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1) >= threshold
    r = np.asarray(ref, dtype=np.float64).reshape(-1) >= threshold
    if p.shape != r.shape:
        raise ValueError("gripper signals differ in length: %d vs %d" % (p.size, r.size))
    if p.size == 0:
        return {"samples": 0, "agreement": None, "switches_pred": 0, "switches_ref": 0}
    return {
        "samples": int(p.size),
        "agreement": _f(np.mean(p == r)),
        "switches_pred": int(np.count_nonzero(np.diff(p.astype(int)))),
        "switches_ref": int(np.count_nonzero(np.diff(r.astype(int)))),
    }


def derivatives(times: np.ndarray, q: np.ndarray):
    """(velocity, acceleration, jerk) by successive finite differences on a uniform grid
    ``times`` [N]; each is one sample shorter than the one before."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    q = np.asarray(q, dtype=np.float64)
    if t.size < 2:
        z = np.zeros((0,) + q.shape[1:])
        return z, z, z
    dt = np.diff(t)
    if np.any(dt <= 0) or np.ptp(dt) > 1e-6 * max(np.mean(dt), 1e-12) + 1e-9:
        raise ValueError("derivatives need a strictly increasing uniform time grid")
    h = float(np.mean(dt))
    v = np.diff(q, axis=0) / h
    a = np.diff(v, axis=0) / h
    j = np.diff(a, axis=0) / h
    return v, a, j


def smoothness(times: np.ndarray, q: np.ndarray) -> Dict[str, object]:
    """Velocity, acceleration and jerk of a commanded trajectory sampled on a uniform grid:
    per joint the max |.| and the RMS, plus the max over joints."""
    v, a, j = derivatives(times, q)
    out: Dict[str, object] = {}
    for name, d in (("velocity", v), ("acceleration", a), ("jerk", j)):
        if d.shape[0] == 0:
            out[name] = {"max_per_joint": None, "rms_per_joint": None, "max": None, "rms": None}
            continue
        out[name] = {
            "max_per_joint": _list(np.max(np.abs(d), axis=0)),
            "rms_per_joint": _list(np.sqrt(np.mean(d**2, axis=0))),
            "max": _f(np.max(np.abs(d))),
            "rms": _f(np.sqrt(np.mean(d**2))),
        }
    return out


def discontinuities(before: np.ndarray, after: np.ndarray) -> Dict[str, object]:
    """Jumps at chunk boundaries: ``before`` / ``after`` ``[K, J]`` are the command just before
    and just after each hand-over (positions, or velocities). Max / mean of the per-boundary
    largest joint jump."""
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.shape != a.shape:
        raise ValueError("before/after shapes differ: %s vs %s" % (b.shape, a.shape))
    if b.size == 0:
        return {"boundaries": 0, "max": None, "mean": None}
    jump = np.max(np.abs(a - b).reshape(b.shape[0], -1), axis=1)
    return {"boundaries": int(b.shape[0]), "max": _f(np.max(jump)), "mean": _f(np.mean(jump))}


def distribution(values: Sequence[float], scale: float = 1.0) -> Dict[str, object]:
    """count, mean, p50, p90, p99, max of ``values * scale`` (e.g. scale 1e3 for ms)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    v = v * scale
    return {
        "count": int(v.size),
        "mean": _f(np.mean(v)),
        "p50": _f(np.percentile(v, 50)),
        "p90": _f(np.percentile(v, 90)),
        "p99": _f(np.percentile(v, 99)),
        "max": _f(np.max(v)),
    }


def achieved_rate(times: Sequence[float]) -> Optional[float]:
    """Events per second between the first and the last event ((n - 1) / span); None for < 2."""
    t = np.sort(np.asarray(times, dtype=np.float64).reshape(-1))
    if t.size < 2 or t[-1] <= t[0]:
        return None
    return _f((t.size - 1) / (t[-1] - t[0]))


def tracking_errors(pred: np.ndarray, ref: np.ndarray) -> Dict[str, object]:
    """Commanded vs reference trajectory sampled at the same times ``[N, J]``: per-joint MAE /
    RMSE and the error over time (max over joints, per sample) for plots."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError("pred/ref shapes differ: %s vs %s" % (p.shape, r.shape))
    if p.shape[0] == 0:
        return {
            "samples": 0,
            "mae": None,
            "rmse": None,
            "mae_per_joint": None,
            "rmse_per_joint": None,
        }
    e = p - r
    return {
        "samples": int(p.shape[0]),
        "mae": _f(np.mean(np.abs(e))),
        "rmse": _f(np.sqrt(np.mean(e**2))),
        "mae_per_joint": _list(np.mean(np.abs(e), axis=0)),
        "rmse_per_joint": _list(np.sqrt(np.mean(e**2, axis=0))),
    }


# Keys of a bag's metrics that the summary table shows, as (label, path into the dict, unit).
SUMMARY_FIELDS = (
    ("chunk MAE", ("chunk", "mae"), "rad"),
    ("chunk RMSE", ("chunk", "rmse"), "rad"),
    ("command MAE", ("command", "mae"), "rad"),
    ("gripper agreement", ("gripper", "agreement"), ""),
    ("max jerk", ("smoothness", "jerk", "max"), "rad/s³"),
    ("boundary jump", ("boundaries", "position", "max"), "rad"),
    ("latency p50", ("latency_ms", "p50"), "ms"),
    ("latency p99", ("latency_ms", "p99"), "ms"),
    ("command rate", ("rates", "command_hz"), "Hz"),
    ("chunks", ("counts", "chunks_accepted"), ""),
    ("safety interventions", ("counts", "safety_interventions"), ""),
    ("watchdog stops", ("counts", "watchdog_stops"), ""),
    # the bag's own JointTrajectories vs its joint_states (clap_ros.control.first_point)
    ("first point |Δ| p99", ("first_point", "recorded", "deviation_rad", "p99"), "rad"),
    (
        "first point velocity p99",
        ("first_point", "recorded", "velocity_fraction", "p99"),
        "x limit",
    ),
)


def lookup(d: Mapping, path: Sequence[str]):
    for k in path:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def aggregate(per_bag: Sequence[Mapping]) -> Dict[str, object]:
    """The aggregate row over several bags: for each summary field the mean over the bags that
    have it (counts are summed), weighted equally per bag, plus how many bags contributed."""
    out: Dict[str, object] = {"bags": len(per_bag)}
    for label, path, _ in SUMMARY_FIELDS:
        vals = [lookup(m, path) for m in per_bag]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and np.isfinite(v)]
        if path[0] == "counts":
            out[label] = int(sum(vals)) if vals else None
        else:
            out[label] = _f(np.mean(vals)) if vals else None
    return out
