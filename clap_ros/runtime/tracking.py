"""The action core's tracking check: is the driver following the commands?

Every tick records its command in a preallocated ring (no allocation in the 500 Hz stream); the
comparison runs at most every ``TRACKING_CHECK_PERIOD_S`` and only on a new joint-state sample.
A fault is a measured joint further than ``tracking_tolerance_rad`` from every command of the
window [joint_states stamp - tracking_lag_s, now] for longer than ``tracking_persist_s``.
Comparing with the recent commands rather than the newest one lets a moving arm trail its
command by the driver's lag and be seen through a slightly old sample; a driver that rejects or
ignores the commands (the arm stays put while the command moves on), or a collision, trips it.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from clap_ros.runtime.params import ActionParams

# The comparison runs at most at 100 Hz: a fault needs tracking_persist_s anyway.
TRACKING_CHECK_PERIOD_S = 0.01


class TrackingMonitor:
    def __init__(self, joint_names: Sequence[str], params: ActionParams):
        self.names = list(joint_names)
        self.p = params
        n = (
            int(
                math.ceil(
                    (params.tracking_lag_s + params.watchdog_joint_states_s + 0.1)
                    / params.tick_period_s
                )
            )
            + 8
        )
        self._t = np.full(n, -math.inf)
        self._q = np.zeros((n, len(self.names)))
        self._i = 0
        self.since: Optional[float] = None
        self.checked_stamp = -math.inf
        self.checked_at = -math.inf
        self.error = 0.0  # max |commanded - measured| at the last check, rad
        self.faults = 0

    def reset(self) -> None:
        self.since = None
        self.checked_stamp = self.checked_at = -math.inf
        self._t[:] = -math.inf

    def record(self, now: float, q_cmd: np.ndarray) -> None:
        self._q[self._i] = q_cmd
        self._t[self._i] = now
        self._i = (self._i + 1) % self._t.size

    def due(self, stamp: float, now: float) -> bool:
        """Whether a sample stamped ``stamp`` is to be compared at ``now``."""
        return stamp != self.checked_stamp and now - self.checked_at >= TRACKING_CHECK_PERIOD_S

    def deviation(self, now: float, q_meas: np.ndarray, stamp: float) -> np.ndarray:
        """Per joint: the distance of the measured ``q_meas`` (stamped ``stamp``) from the
        nearest command of the lag window (no state changes; zeros before any command)."""
        recent = self._q[self._t >= min(stamp, now) - self.p.tracking_lag_s - 1e-9]
        if recent.shape[0] == 0:
            return np.zeros(len(self.names))
        return np.min(np.abs(recent - q_meas), axis=0)

    def check(self, now: float, q_meas: np.ndarray, stamp: float) -> Optional[str]:
        """The fault's reason (counted) when tracking is lost, else None."""
        p = self.p
        self.checked_stamp, self.checked_at = stamp, now
        err = self.deviation(now, q_meas, stamp)
        self.error = float(err.max())
        over = err > p.tracking_tolerance_rad
        if not over.any():
            self.since = None
            return None
        if self.since is None:
            self.since = now
        if now - self.since < p.tracking_persist_s:
            return None
        j = int(np.argmax(err))
        self.faults += 1
        return (
            "tracking lost: %s is %.3f rad from its commands of the last %.2f s "
            "(tolerance %.3f rad) for %.2f s; the driver is not following (rejected "
            "commands, a controller switch, a collision?). Holding where the arm is until "
            "~/enable"
            % (
                self.names[j],
                err[j],
                max(now - stamp, 0.0) + p.tracking_lag_s,
                p.tracking_tolerance_rad,
                now - self.since,
            )
        )
