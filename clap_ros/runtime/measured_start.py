"""Trajectories that start where the arm is: the action core's side of the JTC's measured start.

ros2_control's JointTrajectoryController (``interpolate_from_desired_state`` false, the Jazzy
default) starts every new trajectory from the MEASURED position and velocity and reaches the
first point with a cubic spline (positions + velocities). With chunks replaced every 1/15 s the
arm spends its whole life in such first segments, so their velocity and acceleration are what
a Franka's motion generator checks. This module gives the action core what it needs to keep
them within the profile's limits:

* ``MeasuredMotion``: the newest measured position, its finite-difference velocity, extrapolated
  to the moment a trajectory is made (joint states carry positions the core trusts; the
  velocity field of a JointState is not read by the cores);
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

from typing import Optional, Tuple

import numpy as np

# Velocity by differences over at least this long (bursts of joint states closer than this
# would amplify noise), and not across gaps longer than MAX_DIFF_S (then: unknown, zero).
MIN_DIFF_S = 1e-3
MAX_DIFF_S = 0.1
# The newest measurement is extrapolated by its velocity for at most this long.
MAX_EXTRAPOLATION_S = 0.1


class MeasuredMotion:
    """Newest measured arm position (in arrival order, as the action core's inputs take it) and
    its finite-difference velocity (thread-safe by replacing one tuple: the joint-state callback
    writes, the command loop reads)."""

    def __init__(self, dof: int):
        self.dof = int(dof)
        self.reset()

    def reset(self) -> None:
        # (q, qd, stamp) of the newest sample, and the reference sample the velocity is from
        self._state: Optional[Tuple[np.ndarray, np.ndarray, float]] = None
        self._ref: Optional[Tuple[np.ndarray, float]] = None

    def update(self, q: np.ndarray, stamp: float) -> None:
        q = np.array(q, dtype=np.float64).reshape(-1)
        stamp = float(stamp)
        st = self._state
        qd = np.zeros(self.dof) if st is None else st[1]
        ref = self._ref
        if ref is None or not (0.0 <= stamp - ref[1] <= MAX_DIFF_S):
            # the first sample, a gap, or a stamp that runs backwards (a clock jump, a stamp
            # far ahead before): the newest arrival is the measurement, its velocity unknown
            qd = np.zeros(self.dof)
            self._ref = (q, stamp)
        elif stamp - ref[1] >= MIN_DIFF_S:
            qd = (q - ref[0]) / (stamp - ref[1])
            self._ref = (q, stamp)
        self._state = (q, qd, stamp)

    def at(self, now: float, max_age: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(position, velocity) expected at ``now``, or None without a sample newer than
        ``max_age``."""
        st = self._state
        if st is None:
            return None
        q, qd, stamp = st
        age = float(now) - stamp
        if not age <= max_age:
            return None
        return q + qd * min(max(age, 0.0), MAX_EXTRAPOLATION_S), qd.copy()


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
    (grid index 0 = the starts), positions kept inside [lo, hi]."""
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
        w_new = np.minimum(np.maximum(w_ + a * dt, -vcap), vcap)
        p_ = np.minimum(np.maximum(p_ + 0.5 * (w_ + w_new) * dt, lo), hi)
        w_ = w_new
        q[:, i] = p_
        v[:, i] = w_
    return q, v
