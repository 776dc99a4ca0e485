"""One diagnostics helper for every clap_ros node: rates, latencies, staleness and free-form values,
summarised once per period into a diagnostic_msgs/DiagnosticArray on /clap/diagnostics.

Two layers so the bookkeeping is unit-tested without ROS:

- ``DiagnosticsState`` (plain Python, injectable clock): ``set``, ``tick`` (rate), ``latency``,
  ``touch``/``watch`` (staleness), ``problem`` (level override) and ``summary()`` -> (level,
  message, ordered key/value strings).
- ``DiagnosticsPublisher(node, period_s=1.0)``: the same API on a node, plus a timer that publishes
  the summary as one DiagnosticStatus named after the node (``hardware_id`` optional).

Rates, latencies and ages are measured on the monotonic wall clock (what the machine really spends),
not on ROS time, so they stay meaningful under ``use_sim_time``; the array's header uses the node's
clock so a bag of a sim run lines up with /clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class DiagnosticsState:
    """Thread-safe counters behind a node's diagnostics; callbacks and workers may all call in.

    ``rate_window_s`` bounds both the rate estimate and the latency sample window, so a summary
    describes the recent past, not the whole run.
    """

    def __init__(
        self, rate_window_s: float = 5.0, clock: Callable[[], float] = None, max_samples: int = 2000
    ):
        self._clock = clock or time.monotonic
        self._window = float(rate_window_s)
        self._max = int(max_samples)
        self._lock = threading.Lock()
        self._values: Dict[str, str] = {}
        self._ticks: Dict[str, Deque[float]] = {}
        self._counts: Dict[str, int] = {}
        self._lat: Dict[str, Deque[Tuple[float, float]]] = {}
        self._last_seen: Dict[str, Optional[float]] = {}
        self._max_age: Dict[str, float] = {}
        self._problems: Dict[str, Tuple[int, str]] = {}
        self._pooled: Dict[str, "PooledSamples"] = {}

    # ---- recording -------------------------------------------------------------------------
    def set(self, key: str, value) -> None:
        """A free-form fact shown as-is (floats with 4 significant digits)."""
        text = "%.4g" % value if isinstance(value, float) else str(value)
        with self._lock:
            self._values[key] = text

    def tick(self, key: str, n: int = 1) -> None:
        """Count ``n`` events of ``key`` now; the summary reports ``<key>_rate_hz`` and the total
        ``<key>_count``."""
        now = self._clock()
        with self._lock:
            q = self._ticks.setdefault(key, deque(maxlen=self._max))
            for _ in range(n):
                q.append(now)
            self._counts[key] = self._counts.get(key, 0) + n

    def latency(self, key: str, seconds: float, pooled: bool = False) -> None:
        """One latency sample; the summary reports p50/p99/max in milliseconds over the window.
        ``pooled``: the sample is also kept for the whole run, and the summary adds
        ``<key>_run_p50_ms``, ``<key>_run_p99_ms`` and ``<key>_run_n`` (samples so far), so a
        figure is reported even when no sample fell into the last window."""
        now = self._clock()
        with self._lock:
            self._lat.setdefault(key, deque(maxlen=self._max)).append((now, float(seconds)))
            if pooled:
                self._pooled.setdefault(key, PooledSamples()).add(float(seconds))

    def watch(self, key: str, max_age_s: float) -> None:
        """Declare an input that must arrive at least every ``max_age_s`` seconds; until its first
        ``touch`` it counts as never received (stale)."""
        with self._lock:
            self._max_age[key] = float(max_age_s)
            self._last_seen.setdefault(key, None)

    def touch(self, key: str) -> None:
        """The watched input ``key`` arrived now."""
        now = self._clock()
        with self._lock:
            self._last_seen[key] = now

    def problem(self, key: str, level: int, message: str) -> None:
        """Raise the status to ``level`` with ``message`` until ``clear(key)``."""
        with self._lock:
            self._problems[key] = (int(level), str(message))

    def clear(self, key: str) -> None:
        with self._lock:
            self._problems.pop(key, None)

    # ---- reading ---------------------------------------------------------------------------
    def rate(self, key: str) -> float:
        """Events per second of ``key`` over the last window (0 if fewer than 2 events)."""
        now = self._clock()
        with self._lock:
            return self._rate_locked(key, now)

    def _rate_locked(self, key: str, now: float) -> float:
        q = self._ticks.get(key)
        if not q:
            return 0.0
        while q and now - q[0] > self._window:
            q.popleft()
        if len(q) < 2:
            return 0.0
        # Events in the window divided by the window actually covered: (n-1) intervals span
        # first..last; dividing by that keeps a steady 5 Hz stream at 5.0, not 4.0.
        span = q[-1] - q[0]
        return (len(q) - 1) / span if span > 0 else 0.0

    def age(self, key: str) -> Optional[float]:
        """Seconds since ``key`` was last touched, None if never."""
        now = self._clock()
        with self._lock:
            last = self._last_seen.get(key)
        return None if last is None else now - last

    def latency_stats(self, key: str) -> Optional[Dict[str, float]]:
        now = self._clock()
        with self._lock:
            return self._lat_locked(key, now)

    def _lat_locked(self, key: str, now: float) -> Optional[Dict[str, float]]:
        q = self._lat.get(key)
        if not q:
            return None
        while q and now - q[0][0] > self._window:
            q.popleft()
        if not q:
            return None
        v = np.fromiter((s for _, s in q), dtype=float)
        return {
            "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99)),
            "max": float(v.max()),
            "n": int(v.size),
        }

    def stale_inputs(self) -> List[str]:
        now = self._clock()
        with self._lock:
            return [
                k
                for k, m in self._max_age.items()
                if self._last_seen.get(k) is None or now - self._last_seen[k] > m
            ]

    def summary(self) -> Tuple[int, str, List[Tuple[str, str]]]:
        """(level, message, [(key, value), ...]): the worst of the raised problems and stale
        inputs decides the level; the message names every cause."""
        now = self._clock()
        with self._lock:
            items: List[Tuple[str, str]] = list(self._values.items())
            for key in self._ticks:
                items.append((key + "_rate_hz", "%.3g" % self._rate_locked(key, now)))
                items.append((key + "_count", str(self._counts.get(key, 0))))
            for key in list(self._lat):
                st = self._lat_locked(key, now)
                if st is not None:
                    items += [
                        (key + "_p50_ms", "%.3g" % (st["p50"] * 1e3)),
                        (key + "_p99_ms", "%.3g" % (st["p99"] * 1e3)),
                        (key + "_max_ms", "%.3g" % (st["max"] * 1e3)),
                    ]
            for key, pool in self._pooled.items():
                p50, p99 = pool.percentiles()
                items += [
                    (key + "_run_p50_ms", "%.3g" % (p50 * 1e3)),
                    (key + "_run_p99_ms", "%.3g" % (p99 * 1e3)),
                    (key + "_run_n", str(pool.n)),
                ]
            level, causes = OK, []
            for key, max_age in self._max_age.items():
                last = self._last_seen.get(key)
                if last is None:
                    items.append((key + "_age_s", "never"))
                    causes.append("%s never received" % key)
                    level = max(level, WARN)
                else:
                    age = now - last
                    items.append((key + "_age_s", "%.3g" % age))
                    if age > max_age:
                        causes.append("%s stale (%.2f s > %.2f s)" % (key, age, max_age))
                        level = max(level, WARN)
            for key, (lv, msg) in self._problems.items():
                causes.append(msg)
                level = max(level, lv)
        return level, ("; ".join(causes) if causes else "ok"), items


class PooledSamples:
    """Every sample of a run for run-long percentiles. Past ``capacity`` it keeps a uniform random
    subset (reservoir sampling), so memory and the publish-time percentile cost stay bounded while
    the percentiles still describe the whole run; ``n`` counts every sample seen."""

    def __init__(self, capacity: int = 20000, seed: int = 0):
        self.capacity = int(capacity)
        self.n = 0
        self._v = np.empty(self.capacity)
        self._rng = np.random.default_rng(seed)
        self._cached: Optional[Tuple[int, float, float]] = None

    def add(self, x: float) -> None:
        if self.n < self.capacity:
            self._v[self.n] = x
        else:
            j = int(self._rng.integers(0, self.n + 1))
            if j < self.capacity:
                self._v[j] = x
        self.n += 1

    def percentiles(self) -> Tuple[float, float]:
        """(p50, p99) of the samples so far; recomputed only when a sample came in."""
        if self._cached is None or self._cached[0] != self.n:
            v = self._v[: min(self.n, self.capacity)]
            p50, p99 = np.percentile(v, [50, 99]) if v.size else (np.nan, np.nan)
            self._cached = (self.n, float(p50), float(p99))
        return self._cached[1], self._cached[2]


class DiagnosticsPublisher(DiagnosticsState):
    """A node's diagnostics on /clap/diagnostics, published every ``period_s`` seconds.

    All nodes share the one topic; each status is named ``<node name>`` (fully qualified), so a
    monitor tells them apart. ``extra`` is an optional callable returning more (key, value) pairs
    (e.g. a watchdog's own ``diagnostics()``) evaluated at publish time.
    """

    def __init__(
        self,
        node,
        period_s: float = 1.0,
        topic: Optional[str] = None,
        hardware_id: str = "",
        rate_window_s: float = 5.0,
        extra: Optional[Callable[[], Dict]] = None,
    ):
        super().__init__(rate_window_s=rate_window_s)
        from diagnostic_msgs.msg import DiagnosticArray

        from clap_ros import topics
        from clap_ros.nodes.common import STATE_QOS

        self._node = node
        self._hardware_id = hardware_id
        self._extra = extra
        self.name = node.get_fully_qualified_name().lstrip("/") or node.get_name()
        self._pub = node.create_publisher(DiagnosticArray, topic or topics.DIAGNOSTICS, STATE_QOS)
        self._timer = node.create_timer(float(period_s), self.publish)

    def make_message(self):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        level, message, items = self.summary()
        if self._extra is not None:
            items = items + [
                (str(k), "%.4g" % v if isinstance(v, float) else str(v))
                for k, v in dict(self._extra()).items()
            ]
        status = DiagnosticStatus(
            level=bytes([level]),
            name=self.name,
            message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in items],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        return msg

    def publish(self) -> None:
        self._pub.publish(self.make_message())

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)


def status_values(status) -> Dict[str, str]:
    """A received DiagnosticStatus's key/values as a dict (test and monitor convenience)."""
    return {kv.key: kv.value for kv in status.values}
