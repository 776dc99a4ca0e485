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
* ``blend_into``: the commanded path's points with the error between the measured state and the
  command decaying to zero (a cubic from (e0, ė0) to (0, 0) over ``blend_s``), so the planned
  motion starts exactly at the measured position and velocity (the JTC's spline has an
  acceleration step at every point anyway; a smoother decay would correct too slowly for
  trajectories that are replaced every chunk);
* ``blend_time``: the decay time that keeps the correction's acceleration within a budget.

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
# Cubic decay: its acceleration is at most 6 |e0| / T^2 + 4 |ė0| / T (at its start).
_E_ACC = 6.0
_ED_ACC = 4.0


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


def blend_time(
    e0: np.ndarray, ed0: np.ndarray, acc_budget: np.ndarray, t_min: float, t_max: float
) -> float:
    """The shortest decay time in [t_min, t_max] whose correction acceleration (position part
    plus velocity part) stays within ``acc_budget`` on every joint."""
    half = 0.5 * np.asarray(acc_budget, dtype=np.float64)
    t_pos = np.sqrt(_E_ACC * np.abs(e0) / half)
    t_vel = _ED_ACC * np.abs(ed0) / half
    t = float(max(np.max(t_pos), np.max(t_vel), t_min))
    return min(t, t_max)


def blend_into(
    times: np.ndarray,
    positions: np.ndarray,
    velocities: np.ndarray,
    e0: np.ndarray,
    ed0: np.ndarray,
    blend_s: float,
) -> Tuple[np.ndarray, np.ndarray]:
    """Command points plus the error (measured - command at 0: ``e0``, its rate ``ed0``)
    decaying over ``blend_s``: the cubic with value e0 and slope ed0 at 0, both zero at
    ``blend_s``."""
    t = np.asarray(times, dtype=np.float64).reshape(-1, 1)
    Tb = float(blend_s)
    u = np.clip(t / Tb, 0.0, 1.0)
    h0 = 1.0 - 3.0 * u**2 + 2.0 * u**3
    h1 = u - 2.0 * u**2 + u**3
    dh0 = (-6.0 * u + 6.0 * u**2) / Tb
    dh1 = 1.0 - 4.0 * u + 3.0 * u**2
    e0 = np.asarray(e0, dtype=np.float64).reshape(1, -1)
    ed0 = np.asarray(ed0, dtype=np.float64).reshape(1, -1)
    pos = np.asarray(positions, dtype=np.float64) + e0 * h0 + ed0 * Tb * h1
    vel = np.asarray(velocities, dtype=np.float64) + e0 * dh0 + ed0 * dh1
    return pos, vel


def spline_slopes(times: np.ndarray, positions: np.ndarray, v_start: np.ndarray) -> np.ndarray:
    """Velocities at the knots of the clamped cubic spline through ``positions`` [N, J] at
    ``times`` [N] (from 0) that starts with ``v_start`` and ends at rest: with them, the JTC's
    cubic Hermite interpolation is that C2 spline (no acceleration step at the points), which
    the chunk queue's own velocities do not guarantee at the trajectory's point spacing."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    y = np.asarray(positions, dtype=np.float64)
    n = t.size - 1
    m = np.zeros_like(y)
    m[0] = v_start
    if n < 2:
        return m
    h = np.diff(t)
    delta = np.diff(y, axis=0) / h[:, None]
    # interior knots i = 1..n-1: m[i-1]/h[i-1] + 2 (1/h[i-1] + 1/h[i]) m[i] + m[i+1]/h[i]
    #   = 3 (delta[i-1]/h[i-1] + delta[i]/h[i]), with m[0] = v_start, m[n] = 0 known
    a = 1.0 / h[:-1]  # sub-diagonal (coefficient of m[i-1])
    c = 1.0 / h[1:]  # super-diagonal (coefficient of m[i+1])
    b = 2.0 * (a + c)
    d = 3.0 * (delta[:-1] * a[:, None] + delta[1:] * c[:, None])
    d[0] -= a[0] * m[0]
    # Thomas algorithm over the n - 1 unknowns, every joint at once
    cp = np.zeros(n - 1)
    dp = np.zeros((n - 1, y.shape[1]))
    cp[0] = c[0] / b[0]
    dp[0] = d[0] / b[0]
    for i in range(1, n - 1):
        den = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / den
        dp[i] = (d[i] - a[i] * dp[i - 1]) / den
    x = np.zeros_like(dp)
    x[-1] = dp[-1]
    for i in range(n - 3, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]
    m[1:n] = x
    return m


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
