"""The action core's use of the safety filter (forward_position mode): every streamed position
passes ``SafetyFilter`` (position margin, velocity / acceleration / jerk limits scaled by the
parameters), so a bad reference is clamped, never sent; rejections are counted."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from clap_ros.control.safety import SafetyFilter
from clap_ros.runtime.params import ActionParams


class PositionStream:
    def __init__(self, profile, params: ActionParams):
        dt = params.tick_period_s
        self.filter = SafetyFilter(
            profile,
            margin=params.position_margin,
            dt=dt,
            velocity_scale=params.velocity_scale,
            acceleration_scale=params.acceleration_scale,
            jerk_scale=params.jerk_scale,
            tau=max(0.04, 2.0 * dt),
        )
        self.rejections = 0

    def reset(self, q: np.ndarray) -> None:
        self.filter.reset(q.tolist())

    def command(self, target: Any, count: bool = True) -> np.ndarray:
        """The filtered position to send for ``target`` (a view of the filter's state)."""
        res = self.filter.filter(target)
        if count and not res.ok:
            self.rejections += 1
        return res.q

    @property
    def q(self) -> np.ndarray:
        return self.filter.q

    @property
    def qd(self) -> np.ndarray:
        return self.filter.qd

    @property
    def qdd(self) -> np.ndarray:
        return self.filter.qdd

    def at_rest(self) -> bool:
        return self.filter.at_rest(1e-4, 1e-3)

    def diagnostics(self) -> Dict[str, int]:
        return {"safety_%s" % k: v for k, v in self.filter.counts.items()}
