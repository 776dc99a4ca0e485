"""Input staleness watchdog and the action node's HOLD / RUN / STOPPING state machine.

Plain Python, no ROS: the node feeds it message stamps and the clock (``now``, in the same time
base as the stamps: ROS time, or sim time with ``use_sim_time``) and asks it every control tick
what to do.

States:

* ``HOLD``: command the current position (no motion). Left for RUN only when enabled, no stop
  request or model fault pending, and every watched input fresh (the ``plan`` input being fresh
  also means a plan exists).
* ``RUN``: follow the chunk queue through the safety filter.
* ``STOPPING``: a cause appeared while running (stale or missing input, model fault such as NaN,
  disable, stop request). The node plays a ``StopProfile`` and calls ``stop_finished`` when the
  arm is at rest; the watchdog then goes to HOLD. A stop always completes before a resume.

Every transition carries a human-readable reason (kept in ``transitions`` for diagnostics).
A stop request (``~/stop``) also disables, so the arm only moves again after ``~/enable``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple

# Default staleness thresholds (s). The camera streams at ~15-30 Hz and the planner at 5 Hz, so a
# few missed periods trip them; joint_states must be fresh enough to start from the true pose.
DEFAULT_THRESHOLDS: Dict[str, float] = {
    "camera": 0.5,
    "latent": 0.5,
    "plan": 1.0,
    "joint_states": 0.2,
}


class State(enum.Enum):
    HOLD = "hold"
    RUN = "run"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Transition:
    time: float
    source: State
    target: State
    reason: str

    def __str__(self) -> str:
        return "%.3f s: %s -> %s (%s)" % (
            self.time,
            self.source.value,
            self.target.value,
            self.reason,
        )


class Watchdog:
    """Named inputs with staleness thresholds, plus the enable/stop/fault state machine.

    ``thresholds`` maps input name -> maximum age in seconds (> 0). ``future_tolerance``: a stamp
    this far ahead of ``now`` is accepted (clock skew between machines); further ahead it counts
    as bad, since a future stamp would otherwise look fresh forever.
    """

    def __init__(
        self,
        thresholds: Optional[Mapping[str, float]] = None,
        future_tolerance: float = 0.05,
        history: int = 64,
    ):
        th = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        if not th:
            raise ValueError("the watchdog needs at least one input to watch")
        for name, v in th.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError("staleness threshold for '%s' must be > 0 s, got %r" % (name, v))
        self.thresholds: Dict[str, float] = {k: float(v) for k, v in th.items()}
        self.future_tolerance = float(future_tolerance)
        self._stamps: Dict[str, Optional[float]] = {k: None for k in th}
        self._received: Dict[str, int] = {k: 0 for k in th}
        self._last_rx: Dict[str, Optional[float]] = {k: None for k in th}
        self._interval: Dict[str, Optional[float]] = {k: None for k in th}
        # How far ahead of its receipt time the last refused future stamp was (None after a good
        # one), and how many were refused: one such message must not look fresh for hours.
        self._future: Dict[str, Optional[float]] = {k: None for k in th}
        self.future_refused: Dict[str, int] = {k: 0 for k in th}
        self.state = State.HOLD
        self.enabled = False
        self._stop_requested: Optional[str] = None
        self._fault: Optional[str] = None
        self.reason = "waiting to be enabled"
        self.transitions: Deque[Transition] = deque(maxlen=history)

    # --- inputs -------------------------------------------------------------------------------
    def feed(self, name: str, stamp: float, now: Optional[float] = None) -> None:
        """Record that input ``name`` produced data stamped ``stamp`` (s). Freshness is judged
        from the stamp (``check``); ``now``, the receipt time, feeds the input's rate estimate."""
        if name not in self._stamps:
            raise KeyError(
                "unknown watchdog input '%s' (watched: %s)"
                % (name, ", ".join(sorted(self._stamps)))
            )
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError("stamp for '%s' is not finite" % name)
        self._received[name] += 1
        if now is not None and stamp > float(now) + self.future_tolerance:
            # Kept as the newest stamp, it would outrank every good message after it.
            self._future[name] = stamp - float(now)
            self.future_refused[name] += 1
            return
        self._future[name] = None
        prev = self._stamps[name]
        # Out-of-order messages must not make an input look older than it is.
        if prev is None or stamp >= prev:
            self._stamps[name] = stamp
        if now is not None:
            now = float(now)
            last = self._last_rx[name]
            if last is not None and now > last:
                # Exponential average of the receive interval (about the last 10 messages).
                gap = now - last
                prev = self._interval[name]
                self._interval[name] = gap if prev is None else prev + 0.1 * (gap - prev)
            self._last_rx[name] = now

    def age(self, name: str, now: float) -> Optional[float]:
        """Seconds since the newest stamp of ``name`` (None if nothing was received)."""
        s = self._stamps[name]
        return None if s is None else float(now) - s

    def rate_hz(self, name: str) -> float:
        """Average receive rate of ``name`` (0 until two messages arrived with receipt times)."""
        iv = self._interval[name]
        return 0.0 if not iv else 1.0 / iv

    def ages(self, now: float) -> Dict[str, Optional[float]]:
        return {k: self.age(k, now) for k in self._stamps}

    def check(self, now: float) -> Tuple[bool, List[str]]:
        """(all inputs fresh, reasons for each that is not) at time ``now``."""
        reasons = []
        for name, limit in self.thresholds.items():
            s = self._stamps[name]
            ahead = self._future[name]
            if s is None or float(now) - s > limit:
                if ahead is not None:
                    reasons.append(
                        "%s stamp was %.3f s in the future (ignored): check the clocks "
                        "/ use_sim_time" % (name, ahead)
                    )
                    continue
            if s is None:
                reasons.append("no %s received yet" % name)
                continue
            age = float(now) - s
            if age > limit:
                reasons.append("%s is stale: last %.3f s ago (limit %.3f s)" % (name, age, limit))
            elif age < -self.future_tolerance:
                reasons.append(
                    "%s stamp is %.3f s in the future: check the clocks / use_sim_time"
                    % (name, -age)
                )
        return not reasons, reasons

    # --- commands -----------------------------------------------------------------------------
    def enable(self, now: float, reason: str = "enabled") -> None:
        self.enabled = True
        self._stop_requested = None
        self.update(now, cause=reason)

    def disable(self, now: float, reason: str = "disabled") -> None:
        self.enabled = False
        self.update(now, cause=reason)

    def request_stop(self, now: float, reason: str = "stop requested") -> None:
        """``~/stop``: controlled stop, then hold until enabled again."""
        self._stop_requested = reason
        self.enabled = False
        self.update(now, cause=reason)

    def report_fault(self, now: float, reason: str) -> None:
        """A bad model output (NaN/Inf, wrong shape) or similar: stop, hold until cleared."""
        self._fault = reason
        self.update(now, cause=reason)

    def clear_fault(self) -> None:
        """Called when the model produces a good output again."""
        self._fault = None

    @property
    def fault(self) -> Optional[str]:
        return self._fault

    def stop_finished(self, now: float) -> None:
        """The node's stop profile has brought the arm to rest."""
        if self.state is State.STOPPING:
            self._go(State.HOLD, now, "stopped: %s" % self.reason)

    # --- state machine ------------------------------------------------------------------------
    def blockers(self, now: float) -> List[str]:
        """Everything that keeps (or takes) the arm out of RUN right now."""
        out = []
        if self._stop_requested:
            out.append(self._stop_requested)
        if not self.enabled:
            out.append("not enabled (call ~/enable)")
        if self._fault:
            out.append(self._fault)
        out.extend(self.check(now)[1])
        return out

    def update(self, now: float, cause: Optional[str] = None) -> State:
        """Advance the state machine at time ``now``; returns the state to act on."""
        blockers = self.blockers(now)
        if self.state is State.RUN:
            if blockers:
                self._go(State.STOPPING, now, cause or "; ".join(blockers))
        elif self.state is State.HOLD:
            if not blockers:
                self._go(State.RUN, now, "enabled and all inputs fresh")
            else:
                self.reason = "holding: " + "; ".join(blockers)
        return self.state

    def _go(self, target: State, now: float, reason: str) -> None:
        self.transitions.append(Transition(float(now), self.state, target, reason))
        self.state = target
        self.reason = reason

    @property
    def last_transition(self) -> Optional[Transition]:
        return self.transitions[-1] if self.transitions else None

    def diagnostics(self, now: float) -> Dict[str, object]:
        """Flat dict for /clap/diagnostics: state, reason, and per input its age, receive count
        and rate."""
        d: Dict[str, object] = {
            "state": self.state.value,
            "reason": self.reason,
            "enabled": self.enabled,
            "fault": self._fault or "",
        }
        for k, a in self.ages(now).items():
            d["age_%s_s" % k] = -1.0 if a is None else round(a, 4)
            d["received_%s" % k] = self._received[k]
            d["rate_%s_hz" % k] = round(self.rate_hz(k), 2)
            if self.future_refused[k]:
                d["future_stamps_%s" % k] = self.future_refused[k]
        return d
