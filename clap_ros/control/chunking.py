"""Real-time chunking: a queue of predicted action chunks sampled as one continuous trajectory.

The policy predicts a chunk ``[H, A]`` from a camera frame stamped ``t0``; step ``i`` is meant for
``t0 + i * dt``. Inference takes time, so the chunk only becomes available at ``t_available``
(measured by the node, never assumed). ``ChunkQueue.push``:

* rejects bad chunks (shape, NaN/Inf, older than the running one, entirely in the past, or later
  than ``max_delay``) with a reason and changes nothing;
* keeps the chunk on its own time axis (steps are not shifted by the delay: a late chunk is
  aligned to the time it becomes available by dropping the steps already in the past);
* cross-fades from the trajectory being executed to the new one over ``blend_window`` seconds
  starting at ``t_available``, with the quintic smoothstep s(u) = 10u^3 - 15u^4 + 6u^5. Each
  chunk is a natural cubic spline (C2), and s', s'' vanish at both ends of the window, so
  position, velocity and acceleration stay continuous however much the chunks disagree.

After its last step every chunk continues with a jerk-limited stop (``StopProfile`` from the
end state): a queue that runs dry decelerates to rest and holds instead of jumping or
extrapolating.

``sample(t)`` (forward_position streaming, 500-1000 Hz) writes into preallocated arrays and
returns views of them; ``trajectory_points`` gives JTC-valid point tuples for the
joint_trajectory mode. Columns beyond the profile's joints (the gripper opening) are carried
along with the same interpolation and blending; their stop tail uses the arm's stop duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from clap_ros.control.pacing import sleep_until
from clap_ros.control.safety import StopProfile, eval_quintic, quintic_coeffs
from clap_ros.robots import RobotProfile


class ChunkRejected(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PushResult:
    accepted: bool
    reason: str  # why it was rejected; empty when accepted
    delay: float  # t_available - t0: the measured inference (+ transport) delay, s
    dropped_steps: int  # steps already in the past when the chunk became available


def _smoothstep(u: float) -> Tuple[float, float, float]:
    """Quintic smoothstep and its first two derivatives with respect to u (clamped to [0, 1])."""
    if u <= 0.0:
        return 0.0, 0.0, 0.0
    if u >= 1.0:
        return 1.0, 0.0, 0.0
    u2 = u * u
    return (
        u2 * u * (10.0 + u * (-15.0 + 6.0 * u)),
        30.0 * u2 * (1.0 - u) * (1.0 - u),
        60.0 * u * (1.0 - u) * (1.0 - 2.0 * u),
    )


@dataclass(frozen=True)
class PreparedChunk:
    """A validated, pre-built chunk from ``ChunkQueue.prepare`` (``reason`` set if rejected)."""

    chunk: Optional["_Chunk"]
    t0: float
    t_available: float
    dropped_steps: int
    reason: str


class _Chunk:
    """One chunk: a natural cubic spline on [t_start, t_end], then a stop tail; sampled in place."""

    def __init__(
        self,
        values: np.ndarray,
        t_first: float,
        dt: float,
        profile: RobotProfile,
        margin: float,
        extra_bounds: Tuple[float, float],
    ):
        n, dim = values.shape
        self.dim = dim
        self.t_start = float(t_first)
        self.dt = float(dt)
        self.n = n
        self.t_end = self.t_start + (n - 1) * self.dt
        h = self.dt
        y = values
        M = np.zeros_like(y)
        if n > 2:
            # Natural spline: M_{i-1} + 4 M_i + M_{i+1} = 6 (y_{i+1} - 2 y_i + y_{i-1}) / h^2.
            A = 4.0 * np.eye(n - 2) + np.eye(n - 2, k=1) + np.eye(n - 2, k=-1)
            rhs = 6.0 * (y[2:] - 2.0 * y[1:-1] + y[:-2]) / (h * h)
            M[1:-1] = np.linalg.solve(A, rhs)
        if n > 1:
            # Segment i: y_i + b s + c s^2 + d s^3 for s in [0, h].
            self.c0 = y[:-1].copy()
            self.c1 = (y[1:] - y[:-1]) / h - h * (2.0 * M[:-1] + M[1:]) / 6.0
            self.c2 = M[:-1] / 2.0
            self.c3 = (M[1:] - M[:-1]) / (6.0 * h)
            q_end = y[-1]
            v_end = self.c1[-1] + h * (2.0 * self.c2[-1] + 3.0 * h * self.c3[-1])
            a_end = M[-1]
        else:
            q_end, v_end, a_end = y[0], np.zeros(dim), np.zeros(dim)
        dof = profile.dof
        stop = StopProfile(profile, q_end[:dof], v_end[:dof], a_end[:dof], self.t_end, margin)
        self.tail_T = stop.duration
        tail = np.empty((6, dim))
        tail[:, :dof] = stop.coeffs
        if dim > dof:
            T = stop.duration
            qf = np.clip(
                q_end[dof:] + v_end[dof:] * T / 2.0 + a_end[dof:] * T * T / 12.0,
                extra_bounds[0],
                extra_bounds[1],
            )
            tail[:, dof:] = quintic_coeffs(q_end[dof:], v_end[dof:], a_end[dof:], qf, 0.0, 0.0, T)
        self.tail = tail
        # Each joint's stop has its own duration; past it that joint's quintic is at rest.
        self.tail_durations = np.full(dim, stop.duration)
        self.tail_durations[:dof] = stop.joint_durations
        self._tau = np.zeros(dim)
        self.q_final = np.empty(dim)
        self.q_final[:dof] = stop.q_final
        if dim > dof:
            self.q_final[dof:] = tail[0, dof:] + T * (
                tail[1, dof:]
                + T
                * (tail[2, dof:] + T * (tail[3, dof:] + T * (tail[4, dof:] + T * tail[5, dof:])))
            )
        self.q = np.zeros(dim)
        self.qd = np.zeros(dim)
        self.qdd = np.zeros(dim)

    @property
    def rest_time(self) -> float:
        return self.t_end + self.tail_T

    def eval(self, t: float) -> None:
        """Fill self.q/qd/qdd at absolute time t."""
        if self.n > 1 and t <= self.t_end:
            # Before the first step the first segment is extended (only ever by a sliver).
            i = min(max(int((t - self.t_start) / self.dt), 0), self.n - 2)
            s = t - self.t_start - i * self.dt
            c1, c2, c3 = self.c1[i], self.c2[i], self.c3[i]
            np.multiply(c3, s, out=self.q)
            self.q += c2
            self.q *= s
            self.q += c1
            self.q *= s
            self.q += self.c0[i]
            np.multiply(c3, 3.0 * s, out=self.qd)
            self.qd += 2.0 * c2
            self.qd *= s
            self.qd += c1
            np.multiply(c3, 6.0 * s, out=self.qdd)
            self.qdd += 2.0 * c2
            return
        tau = t - self.t_end
        if tau >= self.tail_T:
            self.q[:] = self.q_final
            self.qd[:] = 0.0
            self.qdd[:] = 0.0
            return
        np.minimum(self.tail_durations, max(tau, 0.0), out=self._tau)
        eval_quintic(self.tail, self._tau, self.q, self.qd, self.qdd)

    def eval_many(self, ts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(q, qd) at each time of ``ts`` ([T, dim] each): ``eval`` for many times at once, the
        same arithmetic in the same order, so the values are bit-identical to ``eval``'s."""
        T = ts.shape[0]
        Q = np.empty((T, self.dim))
        QD = np.empty((T, self.dim))
        on_spline = ts <= self.t_end if self.n > 1 else np.zeros(T, dtype=bool)
        if on_spline.any():
            tt = ts[on_spline]
            i = np.minimum(
                np.maximum(((tt - self.t_start) / self.dt).astype(np.intp), 0), self.n - 2
            )
            sv = (tt - self.t_start - i * self.dt)[:, None]
            c1, c2, c3 = self.c1[i], self.c2[i], self.c3[i]
            Q[on_spline] = ((c3 * sv + c2) * sv + c1) * sv + self.c0[i]
            QD[on_spline] = (c3 * (3.0 * sv) + 2.0 * c2) * sv + c1
        for k in np.nonzero(~on_spline)[0]:  # the stop tail: a few points at most
            self.eval(float(ts[k]))
            Q[k] = self.q
            QD[k] = self.qd
        return Q, QD


class ChunkQueue:
    """Continuous trajectory from a stream of predicted chunks; see the module docstring.

    ``profile``: robot profile (limits for the stop tails; the first ``profile.dof`` columns of
    every chunk are its joints in profile order). ``dim``: columns per chunk (dof, or dof + 1 with
    a gripper opening). ``blend_window``: cross-fade duration, s; a disagreement of d rad
    between chunks peaks at 5.77 d / W^2 extra acceleration, so 0.2 s absorbs ~7 cm-scale
    (0.07 rad) jumps within 10 rad/s^2 and leaves the safety filter nothing to clip.
    ``max_delay``: a chunk whose
    ``t_available - t0`` exceeds this is stale and rejected. ``margin``: rad inside the position
    limits for the stop tails. ``max_blends``: cross-fades that may be in progress at once.
    """

    def __init__(
        self,
        profile: RobotProfile,
        dim: Optional[int] = None,
        blend_window: float = 0.2,
        max_delay: float = 0.5,
        margin: float = 0.02,
        max_blends: int = 4,
        extra_bounds: Tuple[float, float] = (0.0, 1.0),
    ):
        self.profile = profile
        self.dof = profile.dof
        self.dim = self.dof if dim is None else int(dim)
        if self.dim < self.dof:
            raise ValueError("dim %d is less than the robot's %d joints" % (self.dim, self.dof))
        if not blend_window > 0.0:
            raise ValueError("blend_window must be > 0 s, got %r" % blend_window)
        if not max_delay > 0.0:
            raise ValueError("max_delay must be > 0 s, got %r" % max_delay)
        if max_blends < 1:
            raise ValueError("max_blends must be >= 1")
        self.blend_window = float(blend_window)
        self.max_delay = float(max_delay)
        self.margin = float(margin)
        self.max_blends = int(max_blends)
        self.extra_bounds = extra_bounds
        # A value more than one range beyond its limits is not a target for this robot: its
        # spline and stop tail (quintic coefficients ~ value / T^5) would overflow to inf.
        lo = np.concatenate([profile.limits.lower, np.full(self.dim - self.dof, extra_bounds[0])])
        hi = np.concatenate([profile.limits.upper, np.full(self.dim - self.dof, extra_bounds[1])])
        self._lim = (lo, hi)
        self._far_lo, self._far_hi = lo - (hi - lo), hi + (hi - lo)
        # (chunk, blend start time); the first entry's blend start is ignored.
        self._entries: List[Tuple[_Chunk, float]] = []
        self._last_t0 = -math.inf
        self.q = np.zeros(self.dim)
        self.qd = np.zeros(self.dim)
        self.qdd = np.zeros(self.dim)
        self._d = np.zeros(self.dim)
        self._dd = np.zeros(self.dim)
        self._ddd = np.zeros(self.dim)
        self._tmp = np.zeros(self.dim)
        self.accepted = 0
        self.rejected = 0
        self.dropped_steps = 0
        self.last_delay = math.nan
        self.last_reason = ""

    # --- feeding --------------------------------------------------------------------------------
    def reset(self, t: float, q: ArrayLike) -> None:
        """Hold ``q`` (e.g. the measured pose, plus the gripper opening) from time ``t`` on."""
        qa = np.asarray(q, dtype=np.float64).reshape(-1)
        if qa.shape != (self.dim,) or not np.all(np.isfinite(qa)):
            raise ValueError("reset needs %d finite values, got %r" % (self.dim, qa))
        self._entries = [
            (_Chunk(qa[None, :], t, 1.0, self.profile, self.margin, self.extra_bounds), -math.inf)
        ]
        self._last_t0 = -math.inf

    @property
    def ready(self) -> bool:
        return bool(self._entries)

    def push(self, chunk, t0: float, dt: float, t_available: float) -> PushResult:
        """Add a chunk predicted from the frame stamped ``t0`` that became available at
        ``t_available``. Never raises on bad data: a rejected chunk changes nothing.
        Same as ``commit(prepare(...))``."""
        return self.commit(self.prepare(chunk, t0, dt, t_available))

    def prepare(self, chunk, t0: float, dt: float, t_available: float) -> "PreparedChunk":
        """Validate a chunk and build its spline and stop tail without touching the queue, so
        a worker thread can do the expensive part outside the lock the command loop takes."""
        t0, dt, t_av = float(t0), float(dt), float(t_available)
        try:
            c, past = self._build(chunk, t0, dt, t_av)
            return PreparedChunk(c, t0, t_av, past, "")
        except ChunkRejected as e:
            return PreparedChunk(None, t0, t_av, 0, e.reason)

    def commit(self, prepared: "PreparedChunk", t_now: Optional[float] = None) -> PushResult:
        """Start blending a prepared chunk in (cheap; call under the lock). With ``t_now`` (the
        command loop's clock) the cross-fade starts no earlier than that, so it never begins in
        the part of the trajectory that was already streamed while the chunk was being built."""
        p = prepared
        delay = p.t_available - p.t0
        reason = p.reason
        if not reason and not self._entries:
            reason = "queue not started: reset(t, measured pose) first"
        if not reason and p.t0 < self._last_t0:
            reason = "chunk from frame %.3f s is older than the running one (%.3f s)" % (
                p.t0,
                self._last_t0,
            )
        if not reason:
            self._prune(p.t_available)
            if len(self._entries) > self.max_blends:
                reason = "chunks arrive faster than %d cross-fades of %.3f s allow" % (
                    self.max_blends,
                    self.blend_window,
                )
        if reason or p.chunk is None:
            self.rejected += 1
            self.last_reason = reason = reason or "no chunk was built"
            return PushResult(False, reason, delay, 0)
        start = p.t_available if t_now is None else max(p.t_available, float(t_now))
        self._entries.append((p.chunk, start))
        self._last_t0 = p.t0
        self.accepted += 1
        self.dropped_steps += p.dropped_steps
        self.last_delay = delay
        return PushResult(True, "", delay, p.dropped_steps)

    def _build(self, chunk, t0: float, dt: float, t_av: float) -> Tuple[_Chunk, int]:
        try:
            values = np.asarray(chunk, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ChunkRejected("chunk is not numeric (%s)" % e) from e
        if values.ndim != 2 or values.shape[1] != self.dim or values.shape[0] < 1:
            raise ChunkRejected("chunk must be [H, %d], got shape %s" % (self.dim, values.shape))
        if not np.all(np.isfinite(values)):
            raise ChunkRejected("chunk contains NaN/Inf")
        far = (values < self._far_lo) | (values > self._far_hi)
        if far.any():
            i, j = (int(k[0]) for k in np.nonzero(far))
            raise ChunkRejected(
                "chunk step %d column %d = %.4g is far outside its limits "
                "[%.4f, %.4f]" % (i, j, values[i, j], self._lim[0][j], self._lim[1][j])
            )
        if not (math.isfinite(t0) and math.isfinite(dt) and math.isfinite(t_av)) or dt <= 0.0:
            raise ChunkRejected(
                "chunk timing is invalid (t0=%r, dt=%r, available=%r)" % (t0, dt, t_av)
            )
        delay = t_av - t0
        if delay > self.max_delay:
            raise ChunkRejected(
                "chunk is stale: available %.3f s after its frame (max %.3f s)"
                % (delay, self.max_delay)
            )
        H = values.shape[0]
        t_last = t0 + (H - 1) * dt
        if t_last < t_av:
            raise ChunkRejected(
                "every step of the chunk is already in the past (last step "
                "%.3f s, available %.3f s)" % (t_last, t_av)
            )
        # Steps before t_available are never executed; keep the one just before it so the
        # spline covers the hand-over instant.
        past = int(np.count_nonzero(t0 + np.arange(H) * dt < t_av))
        first = max(past - 1, 0)
        c = _Chunk(
            values[first:], t0 + first * dt, dt, self.profile, self.margin, self.extra_bounds
        )
        return c, past

    def _prune(self, t: float) -> None:
        """Forget entries hidden behind a cross-fade that has completed by time t."""
        last_done = 0
        for k in range(1, len(self._entries)):
            if t >= self._entries[k][1] + self.blend_window:
                last_done = k
        if last_done:
            del self._entries[:last_done]

    # --- sampling -------------------------------------------------------------------------------
    def _eval(self, t: float) -> None:
        first = self._entries[0][0]
        first.eval(t)
        q, qd, qdd = self.q, self.qd, self.qdd
        q[:] = first.q
        qd[:] = first.qd
        qdd[:] = first.qdd
        W = self.blend_window
        d, dd, ddd, tmp = self._d, self._dd, self._ddd, self._tmp
        for c, start in self._entries[1:]:
            if t <= start:
                continue
            s, s1, s2 = _smoothstep((t - start) / W)
            c.eval(t)
            np.subtract(c.q, q, out=d)
            np.subtract(c.qd, qd, out=dd)
            np.subtract(c.qdd, qdd, out=ddd)
            # (1-s) old + s new, differentiated twice (s depends on t through (t - start) / W).
            ds, dds = s1 / W, s2 / (W * W)
            np.multiply(ddd, s, out=tmp)
            qdd += tmp
            np.multiply(dd, 2.0 * ds, out=tmp)
            qdd += tmp
            np.multiply(d, dds, out=tmp)
            qdd += tmp
            np.multiply(dd, s, out=tmp)
            qd += tmp
            np.multiply(d, ds, out=tmp)
            qd += tmp
            np.multiply(d, s, out=tmp)
            q += tmp

    def _eval_many(self, ts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(q, qd) at each of ``ts`` ([T, dim]): ``_eval``'s blend, vectorised over time."""
        Q, QD = self._entries[0][0].eval_many(ts)
        W = self.blend_window
        for c, start in self._entries[1:]:
            on = ts > start
            if not on.any():
                continue
            tt = ts[on]
            s = np.empty(tt.shape[0])
            ds = np.empty(tt.shape[0])
            for k, u in enumerate((tt - start) / W):
                sk, s1, _ = _smoothstep(float(u))
                s[k], ds[k] = sk, s1 / W
            CQ, CQD = c.eval_many(tt)
            q, qd = Q[on], QD[on]
            d = CQ - q
            QD[on] = (qd + (CQD - qd) * s[:, None]) + d * ds[:, None]
            Q[on] = q + d * s[:, None]
        return Q, QD

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q, qd, qdd) at time ``t`` (non-decreasing between calls). The arrays are reused by the
        next call: copy them to keep them."""
        if not self._entries:
            raise RuntimeError("ChunkQueue.reset(t, measured pose) must be called first")
        self._prune(t)
        self._eval(t)
        return self.q, self.qd, self.qdd

    def peek(self, t: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (q, qd, qdd) at ``t`` without forgetting anything (for look-ahead)."""
        if not self._entries:
            raise RuntimeError("ChunkQueue.reset(t, measured pose) must be called first")
        self._eval(t)
        return self.q.copy(), self.qd.copy(), self.qdd.copy()

    def rest_time(self) -> float:
        """When the newest chunk (and so the queue, if nothing more arrives) comes to rest."""
        return self._entries[-1][0].rest_time if self._entries else math.inf

    def running_dry(self, t: float) -> bool:
        """True once ``t`` is past the newest chunk's last step (its stop tail is playing)."""
        return not self._entries or t > self._entries[-1][0].t_end

    def trajectory_points(self, t_now: float, horizon: float, period: float):
        """Point tuples ``(time_from_start, positions, velocities)`` for a JointTrajectory.

        Arm joints only (profile order). Points every ``period`` from ``t_now + period`` up to
        ``horizon`` (or until the queue has come to rest); the first point's time is > 0 and the
        last point's velocity is zero, as the JTC requires. Look-ahead only: nothing is pruned.
        """
        if not (period > 0.0 and horizon >= period):
            raise ValueError(
                "need period > 0 and horizon >= period, got %r, %r" % (period, horizon)
            )
        n = self.dof
        rest = self.rest_time()
        tfs = []
        k = 1
        while True:
            tf = k * period
            if tf > horizon + 1e-9:
                break
            tfs.append(tf)
            if t_now + tf >= rest:
                break
            k += 1
        Q, QD = self._eval_many(t_now + np.asarray(tfs))
        points = [(tf, Q[j, :n].copy(), QD[j, :n].copy()) for j, tf in enumerate(tfs)]
        tf, q, _ = points[-1]
        points[-1] = (tf, q, np.zeros(n))
        return points

    def diagnostics(self) -> dict:
        return {
            "chunks_accepted": self.accepted,
            "chunks_rejected": self.rejected,
            "steps_dropped": self.dropped_steps,
            "last_delay_s": -1.0 if math.isnan(self.last_delay) else round(self.last_delay, 4),
            "blends_active": max(len(self._entries) - 1, 0),
            "last_rejection": self.last_reason,
        }


# --- streaming micro-benchmark -------------------------------------------------------------------
def bench_stream(
    rate_hz: float = 500.0,
    seconds: float = 5.0,
    robot: str = "fr3",
    chunk_rate_hz: float = 10.0,
    inference_delay_s: float = 0.05,
    spin_s: float = 0.001,
    worker: bool = True,
    switch_interval_s: Optional[float] = 0.0005,
    realtime_priority: Optional[int] = None,
) -> dict:
    """Pace a loop of ``ChunkQueue.sample`` + ``SafetyFilter.filter`` at ``rate_hz``.

    Absolute-deadline pacing (deadline k = start + k / rate, so errors never accumulate): sleep
    until ``spin_s`` before the deadline, then spin on ``time.perf_counter``. With ``worker`` a
    background thread plays the inference worker: every 1 / ``chunk_rate_hz`` it builds a chunk
    stamped ``inference_delay_s`` in the past and pushes it under the lock the node will use, so
    blending and GIL contention are part of the measurement. ``switch_interval_s`` sets
    ``sys.setswitchinterval`` for the run (restored after): with CPython's default 5 ms a busy
    worker thread can hold the GIL for a whole interval, a deadline miss of up to 5 ms.
    ``realtime_priority`` (1-99) asks for
    SCHED_FIFO for the paced thread (Linux, needs CAP_SYS_NICE or root), as a real-time control
    process would run; whether it was granted is in the result. Returns medians / p99 / max of the
    achieved period, its error against the nominal period, and the compute time per tick (s).
    """
    import os
    import sys
    import threading
    import time

    from clap_ros.control.safety import SafetyFilter
    from clap_ros.robots import load_profile

    if not (rate_hz > 0 and seconds > 0):
        raise ValueError("rate_hz and seconds must be > 0")
    profile = load_profile(robot)
    period = 1.0 / rate_hz
    queue = ChunkQueue(profile)
    filt = SafetyFilter(profile, dt=period)
    lock = threading.Lock()
    clock = time.perf_counter
    t_origin = clock()
    home = profile.home
    queue.reset(0.0, home)
    filt.reset(home)
    stop = threading.Event()
    pushes = [0]

    def produce():
        rng = np.random.default_rng(0)
        H, cdt = 16, 1.0 / 15.0
        while not stop.wait(1.0 / chunk_rate_hz):
            now = clock() - t_origin
            t0 = now - inference_delay_s
            ts = t0 + np.arange(H) * cdt
            c = home + 0.2 * np.sin(0.8 * ts)[:, None] + 0.01 * rng.standard_normal(profile.dof)
            prepared = queue.prepare(c, t0, cdt, clock() - t_origin)
            with lock:
                queue.commit(prepared, clock() - t_origin)
            pushes[0] += 1

    old_switch = sys.getswitchinterval()
    if switch_interval_s is not None:
        sys.setswitchinterval(switch_interval_s)
    th = threading.Thread(target=produce, daemon=True) if worker else None
    if th is not None:
        th.start()
    rt_granted = False
    old_policy = None
    if realtime_priority is not None and hasattr(os, "sched_setscheduler"):
        try:
            old_policy = (os.sched_getscheduler(0), os.sched_getparam(0))
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(realtime_priority)))
            rt_granted = True
        except (OSError, PermissionError):
            old_policy = None
    n = int(round(seconds * rate_hz))
    wake = np.empty(n)
    work = np.empty(n)
    start = clock() + 0.01
    try:
        for k in range(n):
            deadline = start + k * period
            t = sleep_until(deadline, spin_s, clock)
            wake[k] = t
            with lock:
                q, _, _ = queue.sample(t - t_origin)
                filt.filter(q)
            work[k] = clock() - t
    finally:
        if rt_granted and old_policy is not None:
            os.sched_setscheduler(0, old_policy[0], old_policy[1])
        stop.set()
        if th is not None:
            th.join(timeout=1.0)
        sys.setswitchinterval(old_switch)
    periods = np.diff(wake)
    err = np.abs(periods - period)
    late = wake - (start + np.arange(n) * period)
    return {
        "rate_hz": rate_hz,
        "seconds": seconds,
        "ticks": n,
        "achieved_rate_hz": float((n - 1) / (wake[-1] - wake[0])),
        "period_median_s": float(np.median(periods)),
        "period_error_median_s": float(np.median(err)),
        "period_error_p99_s": float(np.percentile(err, 99)),
        "period_error_max_s": float(np.max(err)),
        "deadline_late_p99_s": float(np.percentile(late, 99)),
        "compute_median_s": float(np.median(work)),
        "compute_p99_s": float(np.percentile(work, 99)),
        "switch_interval_s": sys.getswitchinterval()
        if switch_interval_s is None
        else switch_interval_s,
        "realtime_priority": (
            int(realtime_priority) if rt_granted and realtime_priority is not None else None
        ),
        "chunks_pushed": pushes[0],
        "chunks_accepted": queue.accepted,
    }
