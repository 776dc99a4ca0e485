"""Trajectories that start where the arm is: the action core's side of the JTC's measured start.

ros2_control's JointTrajectoryController (``interpolate_from_desired_state`` false, the Jazzy
default) starts every new trajectory from the MEASURED position and velocity and reaches the
first point with a cubic spline (positions + velocities). With chunks replaced every 1/15 s the
arm spends its whole life in such first segments, so their velocity and acceleration are what
a Franka's motion generator checks. This module gives the action core what it needs to keep
them within the profile's limits:

* ``MeasuredMotion``: the newest measured position, its velocity (and, from >= 100 Hz streams,
  acceleration), extrapolated to when a trajectory arrives; jumps and clock jumps restart it
  (joint states carry positions the core trusts; their velocity field is not read by the
  cores);
* ``segment_peaks``: peak |velocity| and |acceleration| per joint of the cubic Hermite segment
  the JTC interpolates from (q0, v0) to (q1, v1) in T;
* ``spline_peaks``: the peak velocity / acceleration of the JTC's interpolation of a whole
  trajectory over its first segments;
* ``hermite_grid``: the JTC-style cubic interpolation of points onto a grid;
* ``track``: a path from a given state that follows a reference within velocity and
  acceleration limits (saturated feed-forward + critically damped correction), lagging where
  the reference asks for more instead of slowing the whole trajectory down.

Pure numpy; the ChunkStream applies it (chunk_stream.py).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np

# Velocity and acceleration from three samples at least SPAN_S apart (closer ones would amplify
# encoder noise: 1e-5 rad over 10 ms is 1 mrad/s), none older than MAX_DIFF_S (else: unknown,
# zero). At 1 kHz the samples are 10 ms apart; a 50 Hz stream uses its own spacing.
SPAN_S = 0.01
MAX_DIFF_S = 0.1
# The acceleration is estimated only from samples spanning at most this long (>= ~100 Hz).
ACC_SPAN_MAX_S = 0.03
# A sample further from the previous one than this many times the velocity limits allow is a
# jump, not motion.
JUMP_FACTOR = 1.5
# The newest measurement is extrapolated for at most this long.
MAX_EXTRAPOLATION_S = 0.1
_HISTORY = 256


class MeasuredMotion:
    """Newest measured arm position (in arrival order, as the action core's inputs take it),
    and its velocity and acceleration from a quadratic through the newest sample and two older
    ones (each at least SPAN_S before the next), so that the state expected at ``now`` does not
    lag an accelerating arm. The joint-state callback appends (a deque append is atomic: no
    lock); the command loop computes in ``at`` when it needs a state."""

    def __init__(self, dof: int, vmax=None, amax=None):
        self.dof = int(dof)
        # estimates beyond what the arm can do (a jump in the measurement) are clipped to these
        self.vmax = np.full(self.dof, np.inf) if vmax is None else np.asarray(vmax, dtype=float)
        self.amax = np.full(self.dof, np.inf) if amax is None else np.asarray(amax, dtype=float)
        self.reset()

    def reset(self) -> None:
        self._hist: Deque[Tuple[float, np.ndarray]] = deque(maxlen=_HISTORY)

    def update(self, q: np.ndarray, stamp: float) -> None:
        stamp = float(stamp)
        h = self._hist
        q = np.array(q, dtype=np.float64).reshape(-1)
        if h and not (0.0 <= stamp - h[-1][0] <= MAX_DIFF_S):
            # a gap, or a stamp that runs backwards (a clock jump, a stamp far ahead before):
            # the newest arrival is the measurement, its motion unknown
            h.clear()
        elif h and np.any(np.abs(q - h[-1][1]) > JUMP_FACTOR * self.vmax * (stamp - h[-1][0])):
            # faster than the arm can move: a jump in the measurement (a knock, a re-zeroed
            # encoder), not motion to carry on: from here, motion unknown
            h.clear()
        h.append((stamp, q))

    def _motion(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = list(self._hist)
        t2, q2 = h[-1]
        picks = [(t2, q2)]
        for t, q in reversed(h[:-1]):
            if picks[-1][0] - t >= SPAN_S:
                picks.append((t, q))
                if len(picks) == 3:
                    break
        zero = np.zeros(self.dof)
        if len(picks) == 1:
            return q2, zero, zero
        t1, q1 = picks[1]
        v21 = (q2 - q1) / (t2 - t1)
        if len(picks) == 2:
            return q2, v21, zero
        t0, q0 = picks[2]
        if t2 - t0 > ACC_SPAN_MAX_S:
            # a slow stream (50 Hz): its second differences are too coarse and too sensitive
            # to stamp jitter to extrapolate with
            return q2, v21, zero
        acc = (v21 - (q1 - q0) / (t1 - t0)) / (0.5 * (t2 - t0))
        return q2, v21 + 0.5 * acc * (t2 - t1), acc

    def at(self, now: float, max_age: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(position, velocity) expected at ``now``, or None without a sample newer than
        ``max_age``."""
        h = self._hist
        if not h:
            return None
        age = float(now) - h[-1][0]
        if not age <= max_age:
            return None
        q, v, a = self._motion()
        v = np.clip(v, -self.vmax, self.vmax)
        a = np.clip(a, -self.amax, self.amax)
        dt = min(max(age, 0.0), MAX_EXTRAPOLATION_S)
        return q + v * dt + 0.5 * a * dt * dt, np.clip(v + a * dt, -self.vmax, self.vmax)


def segment_peaks(
    q0: np.ndarray, v0: np.ndarray, q1: np.ndarray, v1: np.ndarray, T: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Per joint: peak |velocity| and |acceleration| of the cubic Hermite segment from
    (q0, v0) at 0 to (q1, v1) at ``T`` (the JTC's spline between two points with velocities)."""
    T = float(T)
    d = np.asarray(q1, dtype=np.float64) - np.asarray(q0, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    v1 = np.asarray(v1, dtype=np.float64)
    a2 = (3.0 * d - T * (2.0 * v0 + v1)) / T**2
    a3 = (-2.0 * d + T * (v0 + v1)) / T**3
    acc = np.maximum(np.abs(2.0 * a2), np.abs(2.0 * a2 + 6.0 * a3 * T))
    vel = np.maximum(np.abs(v0), np.abs(v1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(a3 != 0.0, -a2 / (3.0 * a3), -1.0)
    inside = (ts > 0.0) & (ts < T)
    v_in = np.abs(v0 + 2.0 * a2 * ts + 3.0 * a3 * ts**2)
    vel = np.where(inside, np.maximum(vel, v_in), vel)
    return vel, acc


def spline_peaks(
    times: np.ndarray, positions: np.ndarray, velocities: np.ndarray, upto: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Per joint: peak |velocity| and |acceleration| of the JTC's cubic Hermite interpolation
    of (times [N] from 0, positions, velocities) over the segments that start before ``upto``."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    k = max(1, int(np.searchsorted(t, upto, side="left")))
    vel = np.zeros(positions.shape[1])
    acc = np.zeros(positions.shape[1])
    for i in range(min(k, t.size - 1)):
        v, a = segment_peaks(
            positions[i], velocities[i], positions[i + 1], velocities[i + 1], t[i + 1] - t[i]
        )
        vel = np.maximum(vel, v)
        acc = np.maximum(acc, a)
    return vel, acc


def hermite_grid(times: np.ndarray, pos: np.ndarray, vel: np.ndarray, grid: np.ndarray):
    """Positions and velocities [len(grid), J] of the cubic Hermite interpolation of points
    (times [N] increasing, positions, velocities [N, J]) at ``grid`` (clamped to the points)."""
    t = np.clip(np.asarray(grid, dtype=np.float64), times[0], times[-1])
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    h = (times[k + 1] - times[k])[:, None]
    u = ((t - times[k])[:, None]) / h
    q0, q1 = pos[k], pos[k + 1]
    m0, m1 = vel[k] * h, vel[k + 1] * h
    u2, u3 = u * u, u * u * u
    q = (2 * u3 - 3 * u2 + 1) * q0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * q1
    q += (u3 - u2) * m1
    qd = (6 * u2 - 6 * u) * q0 + (3 * u2 - 4 * u + 1) * m0 + (-6 * u2 + 6 * u) * q1
    qd = (qd + (3 * u2 - 2 * u) * m1) / h
    return q, qd


def track(
    dt: float,
    ref_q: np.ndarray,
    ref_qd: np.ndarray,
    starts: np.ndarray,
    vmax: np.ndarray,
    amax: np.ndarray,
    omega: float,
    lo: np.ndarray,
    hi: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray]:
    """Paths on a grid of step ``dt`` from 0 that follow the reference (positions, velocities
    [N, J]) from each of ``starts`` [P, 2, J] ((q, v) each), path p within ``vmax[p]`` /
    ``amax[p]`` [P, J]: each step the reference's acceleration plus a critically damped
    correction (natural frequency ``omega``), saturated (a start faster than vmax is braked,
    not cut). Where the reference asks for more than the limits a path lags it and catches up,
    instead of the whole trajectory slowing down. Returns positions, velocities [P, N, J]
    (grid index 0 = the starts), positions kept inside [lo, hi], braked for them in time.
    """
    starts = np.asarray(starts, dtype=np.float64)
    n_p = starts.shape[0]
    n, dof = ref_q.shape
    q = np.empty((n_p, n, dof))
    v = np.empty((n_p, n, dof))
    q[:, 0] = starts[:, 0]
    v[:, 0] = starts[:, 1]
    kp, kd = omega * omega, 2.0 * omega
    amax = np.asarray(amax, dtype=np.float64)
    vmax = np.asarray(vmax, dtype=np.float64)
    adt = amax * dt
    ref_a = np.zeros_like(ref_qd)
    ref_a[1:] = np.diff(ref_qd, axis=0) / dt
    p_ = q[:, 0].copy()
    w_ = v[:, 0].copy()
    for i in range(1, n):
        a = ref_a[i] + kp * (ref_q[i - 1] - p_) + kd * (ref_qd[i - 1] - w_)
        a = np.minimum(np.maximum(a, -amax), amax)
        vcap = np.maximum(vmax, np.abs(w_) - adt)
        # and never faster towards a position limit than braking at amax allows
        up = np.minimum(vcap, np.sqrt(2.0 * amax * np.maximum(hi - p_, 0.0)))
        down = np.minimum(vcap, np.sqrt(2.0 * amax * np.maximum(p_ - lo, 0.0)))
        w_new = np.minimum(np.maximum(w_ + a * dt, -down), up)
        p_ = np.minimum(np.maximum(p_ + 0.5 * (w_ + w_new) * dt, lo), hi)
        w_ = w_new
        q[:, i] = p_
        v[:, i] = w_
    return q, v
