"""How far a JointTrajectory's first point lies from the measured state, and what that asks for.

ros2_control's JointTrajectoryController (Jazzy default, ``interpolate_from_desired_state``
false) starts every new trajectory from the MEASURED state and reaches the first point at its
``time_from_start`` (counted from the header stamp, or from receipt when the stamp is 0). A first
point far from where the arm really is therefore asks for ``|first - measured| / lead`` rad/s on
that joint, whatever the sender believed it was commanding; a real Franka answers that with a
motion-generator velocity or discontinuity reflex.

Pure numpy, no ROS: the sim driver core records every trajectory it receives (accepted or not),
eval-bag records the bag's trajectories against the bag's joint states, and the evaluators pool
the per-episode summaries.

* ``first_point`` / ``trajectory_first_point``: one record (deviation, lead time, implied joint
  velocity in rad/s and as a fraction of the profile's velocity limit, max over joints);
* ``FirstPointStats``: an accumulator of records with exact p50 / p99 / max over its last
  ``keep`` records, the count over the limit, and a mergeable log histogram;
* ``pooled``: several summaries (e.g. the episodes of a task) into one; its p50 / p99 come from
  the merged histograms (upper bin edge, at most 12 % above the exact value), max and counts are
  exact.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

# A first point at or before its receipt (lead <= 0) asks for its jump within one controller
# cycle; the implied velocity is taken over this floor instead of dividing by zero.
LEAD_FLOOR_S = 1e-3
# Histogram: 20 log bins per decade from 1e-6 to 1e2 (values below fall in the first bin).
BINS_PER_DECADE = 20
BIN_LOW = -6 * BINS_PER_DECADE
BIN_HIGH = 2 * BINS_PER_DECADE
# Summaries keep exact percentiles over the newest records only (a driver may run for hours).
KEEP_RECORDS = 5000
METRICS = ("deviation_rad", "velocity_rad_s", "velocity_fraction")


@dataclass(frozen=True)
class FirstPoint:
    """One trajectory's first point against the measured arm (max over its joints)."""

    deviation_rad: float  # max_j |first_j - measured_j|
    lead_s: float  # time from receipt to the first point (>= LEAD_FLOOR_S)
    velocity_rad_s: float  # max_j |first_j - measured_j| / lead
    velocity_fraction: float  # max_j |first_j - measured_j| / lead / velocity_limit_j
    accepted: bool = True

    @property
    def over_limit(self) -> bool:
        return self.velocity_fraction > 1.0


def first_point(
    q_first: ArrayLike,
    q_measured: ArrayLike,
    lead_s: float,
    velocity_limits: ArrayLike,
    accepted: bool = True,
) -> FirstPoint:
    """The record for a first point ``q_first`` reached ``lead_s`` after receipt from
    ``q_measured`` (all arrays over the same joints)."""
    qf = np.asarray(q_first, dtype=np.float64).reshape(-1)
    qm = np.asarray(q_measured, dtype=np.float64).reshape(-1)
    lim = np.asarray(velocity_limits, dtype=np.float64).reshape(-1)
    if not (qf.size == qm.size == lim.size) or qf.size == 0:
        raise ValueError(
            "first point, measured position and limits differ in length (%d, %d, %d)"
            % (qf.size, qm.size, lim.size)
        )
    d = np.abs(qf - qm)
    lead = float(lead_s) if math.isfinite(float(lead_s)) else LEAD_FLOOR_S
    lead = max(lead, LEAD_FLOOR_S)
    v = d / lead
    return FirstPoint(float(d.max()), lead, float(v.max()), float(np.max(v / lim)), bool(accepted))


def lead_time(first_time_from_start: float, now_s: float, stamp_s: float = 0.0) -> float:
    """When the first point is due after receipt at ``now_s``: ``time_from_start`` counted from
    the header stamp, or from receipt when the stamp is 0 (as the JTC does)."""
    t = float(first_time_from_start)
    return t if not stamp_s else float(stamp_s) + t - float(now_s)


def trajectory_first_point(
    profile,
    joint_names: Sequence[str],
    points: Sequence,
    q_measured: Sequence[float],
    lead_s: Optional[float] = None,
    now_s: float = 0.0,
    stamp_s: float = 0.0,
    accepted: bool = True,
) -> Optional[FirstPoint]:
    """The record of a trajectory given as message joint names + point tuples
    ``(time_from_start, positions, ...)``; ``q_measured`` in profile order. The named joints
    are compared (a partial goal holds the others). None when the message cannot be read that
    far (no points, lengths that do not match, unknown names, non-finite values): such a message
    is refused for its structure, not for where its first point lies."""
    try:
        if not points:
            return None
        p0 = points[0]
        t0 = float(p0[0])
        pos = np.asarray(p0[1], dtype=np.float64).reshape(-1)
        names = [profile.canonical_name(str(n)) for n in joint_names]
        idx = [profile.joint_names.index(n) for n in names]
    except (TypeError, ValueError, IndexError):
        return None
    if pos.size != len(idx) or not idx or not np.all(np.isfinite(pos)) or not math.isfinite(t0):
        return None
    qm = np.asarray(q_measured, dtype=np.float64)[idx]
    lim = np.asarray(profile.limits.velocity, dtype=np.float64)[idx]
    lead = lead_time(t0, now_s, stamp_s) if lead_s is None else float(lead_s)
    return first_point(pos, qm, lead, lim, accepted)


def _bin(x: float) -> int:
    if not (x > 0.0) or not math.isfinite(x):
        return BIN_LOW if not (x > 0.0) else BIN_HIGH
    return int(min(max(math.floor(BINS_PER_DECADE * math.log10(x)), BIN_LOW), BIN_HIGH))


def _edge(k: int) -> float:
    """Upper edge of bin ``k``."""
    return 10.0 ** ((k + 1) / BINS_PER_DECADE)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else float("%.4g" % x)


class FirstPointStats:
    """Accumulates ``FirstPoint`` records; ``summary()`` is JSON-ready (see the module doc)."""

    def __init__(self, keep: int = KEEP_RECORDS):
        self._keep = int(keep)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.rejected = 0
        self.over_limit = 0
        self.max: Dict[str, float] = {m: 0.0 for m in METRICS}
        self.min_lead_s = math.inf
        self._recent: Dict[str, Deque[float]] = {m: deque(maxlen=self._keep) for m in METRICS}
        self._hist: Dict[str, Dict[int, int]] = {m: {} for m in METRICS}

    def add(self, fp: Optional[FirstPoint]) -> None:
        if fp is None:
            return
        self.count += 1
        self.rejected += 0 if fp.accepted else 1
        self.over_limit += 1 if fp.over_limit else 0
        self.min_lead_s = min(self.min_lead_s, fp.lead_s)
        for m in METRICS:
            x = float(getattr(fp, m))
            self.max[m] = max(self.max[m], x)
            self._recent[m].append(x)
            h = self._hist[m]
            k = _bin(x)
            h[k] = h.get(k, 0) + 1

    def summary(self) -> dict:
        """count, rejected (of the count), over_limit (implied velocity above a joint's limit),
        min_lead_s, and per metric p50 / p99 / max, plus the histograms for ``pooled``."""
        out: dict = {
            "count": int(self.count),
            "rejected": int(self.rejected),
            "over_limit": int(self.over_limit),
            "min_lead_s": _round(self.min_lead_s) if self.count else None,
        }
        for m in METRICS:
            v = np.asarray(self._recent[m], dtype=np.float64)
            out[m] = {
                "p50": _round(float(np.percentile(v, 50))) if v.size else None,
                "p99": _round(float(np.percentile(v, 99))) if v.size else None,
                "max": _round(self.max[m]) if self.count else None,
            }
        out["hist"] = {m: {str(k): n for k, n in sorted(self._hist[m].items())} for m in METRICS}
        return out


def _hist_percentile(hist: Mapping[int, int], q: float, top: float) -> Optional[float]:
    n = sum(hist.values())
    if n == 0:
        return None
    need = q * n
    cum = 0
    for k in sorted(hist):
        cum += hist[k]
        if cum >= need:
            return min(_edge(k), top)
    return top


def pooled(summaries: Iterable[Optional[Mapping]]) -> Optional[dict]:
    """One summary from several (None entries skipped; None when none has a record)."""
    subs = [s for s in summaries if s and s.get("count")]
    if not subs:
        return None
    out: dict = {
        "count": sum(int(s["count"]) for s in subs),
        "rejected": sum(int(s.get("rejected", 0)) for s in subs),
        "over_limit": sum(int(s.get("over_limit", 0)) for s in subs),
        "min_lead_s": min(
            (float(s["min_lead_s"]) for s in subs if s.get("min_lead_s") is not None),
            default=None,
        ),
        "episodes": len(subs),
        "percentiles": "from merged log histograms (upper bin edge, <= 12 % above exact)",
    }
    hists: Dict[str, Dict[int, int]] = {}
    for m in METRICS:
        h: Dict[int, int] = {}
        for s in subs:
            for k, n in ((s.get("hist") or {}).get(m) or {}).items():
                h[int(k)] = h.get(int(k), 0) + int(n)
        top = max(float((s.get(m) or {}).get("max") or 0.0) for s in subs)
        out[m] = {
            "p50": _round(_hist_percentile(h, 0.5, top)),
            "p99": _round(_hist_percentile(h, 0.99, top)),
            "max": _round(top),
        }
        hists[m] = h
    out["hist"] = {m: {str(k): n for k, n in sorted(h.items())} for m, h in hists.items()}
    return out


def describe(s: Optional[Mapping]) -> str:
    """One line for logs and reports."""
    if not s or not s.get("count"):
        return "no trajectories"
    d, f = s["deviation_rad"], s["velocity_fraction"]
    return (
        "%d trajectories (%d rejected): |first - measured| p50 %.3g / p99 %.3g / max %.3g rad; "
        "implied velocity p50 %.3g / p99 %.3g / max %.3g of the limit, %d over it"
        % (
            s["count"],
            s.get("rejected", 0),
            d["p50"],
            d["p99"],
            d["max"],
            f["p50"],
            f["p99"],
            f["max"],
            s.get("over_limit", 0),
        )
    )
