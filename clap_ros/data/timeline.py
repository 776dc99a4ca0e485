"""Dropped frames and clock jumps in a bag's streams, and what they do to the dataset grid.

Plain numpy on log times and header stamps (no ROS, no bag I/O), used by bag2dataset:

* **camera gap**: consecutive camera log times further apart than ``gap_factor`` x the median
  period (frames dropped by the driver, USB bandwidth, a busy recorder).
* **clock jump**: on a stream, a header stamp that goes backwards, or a log-time or header-stamp
  step forward of more than ``max_jump_s`` (a paused recording, an NTP step, a sim clock reset).

Grid rows sampled across either would show stale data (the latest message is old), so rows whose
latest message is older than ``gap_factor`` x max(median period, grid period) are dropped and the
episode is split there; a clock jump always splits, as the two sides' times do not line up.
A camera gap that leaves every row fresh enough only repeats a frame, and is reported as held.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class Event:
    """One detected discontinuity on a stream, between its messages at log times ``before_ns`` and
    ``after_ns``."""

    kind: str  # "camera_gap" | "backwards" | "forward"
    topic: str
    before_ns: int
    after_ns: int
    jump_s: float  # size of the gap / jump (negative for backwards)
    detail: str  # human-readable reason
    rows_dropped: int = 0
    action: str = ""  # "held" | "split" | "dropped rows, split" | "outside the grid"

    def to_dict(self, t0_ns: int) -> Dict[str, Any]:
        d = asdict(self)
        d["at_s"] = round((self.after_ns - t0_ns) * 1e-9, 6)
        d["jump_s"] = round(self.jump_s, 6)
        d.pop("before_ns")
        d.pop("after_ns")
        return d


def median_period_ns(times: Sequence[int]) -> float:
    """Median positive step between consecutive times (0 with fewer than two distinct times)."""
    d = np.diff(np.asarray(times, dtype=np.int64))
    d = d[d > 0]
    return float(np.median(d)) if d.size else 0.0


def clock_jumps(
    topic: str, log_ns: Sequence[int], stamp_ns: Sequence[int], max_jump_s: float
) -> List[Event]:
    """Backwards header stamps and forward jumps (> max_jump_s) of log time or header stamp.

    Messages with a zero stamp (publishers that leave the header empty) are not checked on
    stamps. Log times come sorted from the bag, so only stamps can show time going backwards."""
    log = np.asarray(log_ns, dtype=np.int64)
    st = np.asarray(stamp_ns, dtype=np.int64)
    lim = int(max_jump_s * 1e9)
    out: List[Event] = []
    if log.size < 2:
        return out
    dlog = np.diff(log)
    stamped = (st[1:] != 0) & (st[:-1] != 0)
    dst = np.where(stamped, np.diff(st), 0)
    for i in np.flatnonzero((dlog > lim) | (dst > lim) | (dst < 0)):
        a, b = int(log[i]), int(log[i + 1])
        if dst[i] < 0:
            out.append(
                Event(
                    "backwards",
                    topic,
                    a,
                    b,
                    dst[i] * 1e-9,
                    "time went backwards by %.3f s on %s (header stamp)" % (-dst[i] * 1e-9, topic),
                )
            )
        else:
            which, step = ("log time", dlog[i]) if dlog[i] >= dst[i] else ("header stamp", dst[i])
            out.append(
                Event(
                    "forward",
                    topic,
                    a,
                    b,
                    step * 1e-9,
                    "time jumped forward %.3f s on %s (%s; limit %g s)"
                    % (step * 1e-9, topic, which, max_jump_s),
                )
            )
    return out


def camera_gaps(
    topic: str, log_ns: Sequence[int], gap_factor: float, max_jump_s: float
) -> Tuple[List[Event], float]:
    """Steps longer than gap_factor x the median period (but not clock jumps, which
    ``clock_jumps`` reports). Returns (events, median period in ns)."""
    log = np.asarray(log_ns, dtype=np.int64)
    med = median_period_ns(log)
    out: List[Event] = []
    if med <= 0:
        return out, med
    d = np.diff(log)
    lim = int(max_jump_s * 1e9)
    for i in np.flatnonzero((d > gap_factor * med) & (d <= lim)):
        gap = d[i] * 1e-9
        out.append(
            Event(
                "camera_gap",
                topic,
                int(log[i]),
                int(log[i + 1]),
                gap,
                "camera gap %.3f s on %s (> %g x median period %.3f s, ~%d frames "
                "dropped)"
                % (gap, topic, gap_factor, med * 1e-9, max(1, int(round(d[i] / med)) - 1)),
            )
        )
    return out, med


def apply_events(
    grid: np.ndarray, events: Sequence[Event], stale_ns: Dict[str, float]
) -> Tuple[np.ndarray, np.ndarray]:
    """(keep, cut) over the grid rows: ``keep`` False for rows whose latest message on the event's
    topic is older than stale_ns[topic]; ``cut`` True where a row starts a new episode. Sets each
    event's rows_dropped and action."""
    keep = np.ones(len(grid), dtype=bool)
    cut = np.zeros(len(grid), dtype=bool)
    for ev in events:
        if len(grid) == 0 or ev.after_ns <= grid[0] or ev.before_ns >= grid[-1]:
            ev.action = "outside the grid"
            continue
        stale = (grid > ev.before_ns + stale_ns.get(ev.topic, 0.0)) & (grid < ev.after_ns)
        ev.rows_dropped = int(stale.sum())
        keep &= ~stale
        first_after = int(np.searchsorted(grid, ev.after_ns, side="left"))
        split = ev.kind != "camera_gap" or ev.rows_dropped > 0
        if split and first_after < len(grid):
            cut[first_after] = True
        if ev.rows_dropped:
            ev.action = "dropped rows, split"
        else:
            ev.action = "split" if split else "held"
    return keep, cut


def segments(
    keep: np.ndarray, cut: np.ndarray, labels: Optional[Sequence[Any]] = None
) -> List[Tuple[int, int]]:
    """[start, end) runs of kept rows, broken at dropped rows, at ``cut`` rows and where
    ``labels`` (e.g. the instruction in force) changes."""
    out: List[Tuple[int, int]] = []
    start = None
    for r in range(len(keep)):
        brk = cut[r] or (labels is not None and r > 0 and labels[r] != labels[r - 1])
        if start is not None and (not keep[r] or brk):
            out.append((start, r))
            start = None
        if keep[r] and start is None:
            start = r
    if start is not None:
        out.append((start, len(keep)))
    return out


__all__ = ["Event", "apply_events", "camera_gaps", "clock_jumps", "median_period_ns", "segments"]
