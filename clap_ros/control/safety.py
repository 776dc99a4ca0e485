"""Safety filter and smooth stop for every command the action node sends (DESIGN.md section 4).

Plain numpy, no ROS. Two pieces:

* ``SafetyFilter`` turns a stream of position references (one per control period ``dt``) into a
  stream that respects the robot profile: joint position limits with a margin, velocity,
  acceleration and jerk limits, a maximum step per command, NaN/Inf rejection (-> controlled
  braking to rest, with a reason) and a first command equal to the measured position. Each call
  says which limits intervened, and the filter keeps counts per kind for diagnostics.
* ``StopProfile`` is a jerk-limited deceleration from a state (q, qd, qdd) to rest, then hold: a
  quintic per joint whose velocity decays like ``v0 * (1 - smoothstep)``, with its duration
  stretched until the profile's acceleration and jerk limits hold. It never plans past the
  position limits. ``ChunkQueue`` uses it as the tail of every chunk (the queue running dry
  decelerates instead of jumping) and the watchdog's STOPPING state samples it.

``make_feasible`` time-scales a whole trajectory (positions + velocities at given times) so it
respects the velocity/acceleration/jerk limits, for the joint_trajectory mode where the
controller, not this filter, interpolates between points.

Why the filter tracks with feed-forward plus a critically damped correction instead of simply
clamping finite differences: clamping a position stream step by step either lags forever or
overshoots after a saturated catch-up; here a consistent reference passes through exactly, and a
reference that is infeasible (a jump, a too-fast ramp) is approached along a braking curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from clap_ros.robots import RobotProfile

# Kinds of intervention, in the order they are reported.
LIMIT_KINDS = ("nonfinite", "first_command", "position", "velocity", "acceleration", "jerk", "step")


@dataclass
class SafetyResult:
    """One filtered command. ``q``/``qd``/``qdd`` are the filter's own arrays: copy to keep them."""

    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    ok: bool  # False when the input was rejected (NaN/Inf): the filter brakes
    reason: str  # empty when ok
    intervened: Tuple[str, ...]  # kinds from LIMIT_KINDS that changed this command


def _accel_bound(v: np.ndarray, vcap: np.ndarray, jerk: np.ndarray, dt: float) -> np.ndarray:
    """Largest next acceleration a' such that velocity stays <= vcap even after ramping a' down.

    Ramping a positive acceleration a' to zero at the jerk limit adds about a'^2 / (2 J) (plus a
    step's worth for the discretisation) to the velocity; without this term a jerk-limited stream
    overshoots the velocity (or braking) curve.
    """
    b = 2.0 * dt
    room = vcap - v
    disc = b * b + 2.0 * np.maximum(room, 0.0) / jerk
    pos = jerk * (-b + np.sqrt(disc))
    return np.where(room >= 0.0, pos, room / dt)


class SafetyFilter:
    """Stateful per-command filter; see the module docstring.

    ``profile``: the robot profile (limits). ``margin``: rad kept inside the position limits.
    ``max_step``: largest position change per command, rad (a guard independent of the velocity
    limit; defaults to 1.5 x the largest per-step motion the velocity limit allows, so on its own
    it binds only when the limits are scaled). ``dt``: command period, s. ``velocity_scale`` /
    ``acceleration_scale``: fractions (0, 1] of the profile limits actually used. ``tau``: time
    constant (s) of the correction towards a reference the filter could not follow exactly.
    """

    def __init__(
        self,
        profile: RobotProfile,
        margin: float = 0.02,
        max_step: Optional[float] = None,
        dt: float = 0.002,
        velocity_scale: float = 1.0,
        acceleration_scale: float = 1.0,
        jerk_scale: float = 1.0,
        tau: float = 0.04,
    ):
        if not dt > 0.0:
            raise ValueError("dt must be > 0 s, got %r" % dt)
        if not 0.0 <= margin < 0.5 * float(np.min(profile.limits.upper - profile.limits.lower)):
            raise ValueError("margin %r rad leaves no room between the joint limits" % margin)
        for name, s in (
            ("velocity_scale", velocity_scale),
            ("acceleration_scale", acceleration_scale),
            ("jerk_scale", jerk_scale),
        ):
            if not 0.0 < s <= 1.0:
                raise ValueError("%s must be in (0, 1], got %r" % (name, s))
        if not tau >= 2.0 * dt:
            raise ValueError(
                "tau (%r s) must be at least two command periods (%r s)" % (tau, 2 * dt)
            )
        self.profile = profile
        self.dof = profile.dof
        self.dt = float(dt)
        self.margin = float(margin)
        lim = profile.limits
        self.lo = lim.lower + margin
        self.hi = lim.upper - margin
        # References are clipped to one joint range beyond the limits: that far out the command
        # is at the limit either way, and a huge finite reference (1e308) would overflow the
        # finite-difference velocity to inf and the next step to NaN.
        self._ref_lo = lim.lower - (lim.upper - lim.lower)
        self._ref_hi = lim.upper + (lim.upper - lim.lower)
        self.vmax = lim.velocity * velocity_scale
        self.amax = lim.acceleration * acceleration_scale
        self.jmax = lim.jerk * jerk_scale
        self.max_step = 1.5 * float(np.max(self.vmax)) * dt if max_step is None else float(max_step)
        if not self.max_step > 0.0:
            raise ValueError("max_step must be > 0 rad, got %r" % max_step)
        self.tau = float(tau)
        # Braking deceleration assumed near position limits and when catching up with a jump:
        # half the limit leaves the other half for the jerk-limited ramp into it.
        self._abrake = 0.5 * self.amax
        n = self.dof
        self.q = np.zeros(n)
        self.qd = np.zeros(n)
        self.qdd = np.zeros(n)
        self._r = np.zeros(n)
        self._rd = np.zeros(n)
        self._first = True
        self._started = False
        self._caps = np.zeros((6, n))
        self._vs = np.zeros((6, n))
        self._jmax6 = np.tile(self.jmax, (6, 1))
        self._H = np.zeros((5, n))
        self._L = np.zeros((5, n))
        self.counts: Dict[str, int] = {k: 0 for k in LIMIT_KINDS}

    # --- state --------------------------------------------------------------------------------
    def reset(self, q_measured: ArrayLike, qd_measured: Optional[ArrayLike] = None) -> None:
        """Start from the measured state (at enable): the next command equals ``q_measured``."""
        q = np.asarray(q_measured, dtype=np.float64).reshape(-1)
        if q.shape != (self.dof,) or not np.all(np.isfinite(q)):
            raise ValueError("measured position must be %d finite values, got %r" % (self.dof, q))
        self.q[:] = q
        self.qd[:] = (
            0.0 if qd_measured is None else np.nan_to_num(np.asarray(qd_measured, dtype=np.float64))
        )
        self.qdd[:] = 0.0
        self._r[:] = q
        self._rd[:] = self.qd
        self._first = True
        self._started = True

    @property
    def started(self) -> bool:
        return self._started

    def reset_counts(self) -> None:
        for k in self.counts:
            self.counts[k] = 0

    def at_rest(self, vel_tol: float = 1e-3, acc_tol: float = 1e-2) -> bool:
        return bool(np.all(np.abs(self.qd) <= vel_tol) and np.all(np.abs(self.qdd) <= acc_tol))

    # --- filtering ----------------------------------------------------------------------------
    def filter(self, q_ref: ArrayLike) -> SafetyResult:
        """The next command towards ``q_ref`` (profile order), within every limit."""
        if not self._started:
            raise RuntimeError("SafetyFilter.reset(measured positions) must be called first")
        r = np.asarray(q_ref, dtype=np.float64).reshape(-1)
        if r.shape != (self.dof,):
            raise ValueError(
                "command must have %d values (profile %s), got %d"
                % (self.dof, self.profile.name, r.size)
            )
        if not np.all(np.isfinite(r)):
            bad = [self.profile.joint_names[i] for i in np.nonzero(~np.isfinite(r))[0]]
            self.counts["nonfinite"] += 1
            self._brake()
            return SafetyResult(
                self.q,
                self.qd,
                self.qdd,
                False,
                "command contains NaN/Inf for %s; braking to a hold" % bad,
                ("nonfinite",),
            )
        r = np.clip(r, self._ref_lo, self._ref_hi)
        if self._first:
            # The first command is the measured position, whatever was asked: no jump at enable.
            self._first = False
            kinds: Tuple[str, ...] = ("first_command",) if np.any(np.abs(r - self.q) > 1e-9) else ()
            if kinds:
                self.counts["first_command"] += 1
            self._r[:] = r
            self._rd[:] = 0.0
            self.qd[:] = 0.0
            self.qdd[:] = 0.0
            return SafetyResult(self.q, self.qd, self.qdd, True, "", kinds)
        dt = self.dt
        rd = (r - self._r) / dt
        rdd = np.clip((rd - self._rd) / dt, -self.amax, self.amax)
        e = self._r - self.q  # current position error
        # A jumping reference has an absurd finite-difference velocity: follow at most the limit.
        w = self.qd - np.clip(self._rd, -self.vmax, self.vmax)
        # Velocity the correction asks for: e / tau near the reference, a braking curve far away.
        w_star = np.sign(e) * np.minimum(
            np.abs(e) / (0.5 * self.tau), np.sqrt(2.0 * self._abrake * np.abs(e))
        )
        a_des = rdd + (w_star - w) / (0.25 * self.tau)
        self._r[:] = r
        self._rd[:] = rd
        kinds = self._limited_step(a_des)
        return SafetyResult(self.q, self.qd, self.qdd, True, "", kinds)

    def hold(self) -> SafetyResult:
        """Brake to rest where the command is now (used by HOLD/STOPPING without a stop profile)."""
        if not self._started:
            raise RuntimeError("SafetyFilter.reset(measured positions) must be called first")
        self._brake()
        return SafetyResult(self.q, self.qd, self.qdd, True, "", ())

    def _brake(self) -> None:
        self._limited_step(-self.qd / (0.25 * self.tau), vcap=0.0)
        self._r[:] = self.q
        self._rd[:] = self.qd
        self._first = False

    def _limited_step(self, a_des: np.ndarray, vcap: Optional[float] = None) -> Tuple[str, ...]:
        dt = self.dt
        q, v, a = self.q, self.qd, self.qdd
        # Each kind bounds the next acceleration from above (row of H) and below (row of L).
        # Position, velocity and step are velocity caps, turned into acceleration bounds with
        # the jerk-aware _accel_bound; acceleration and jerk bound it directly.
        step_v = self.max_step / dt
        # One vectorised call for the three velocity-type caps, both directions (rows 0-2: up,
        # rows 3-5: down, evaluated on -v).
        caps, vs = self._caps, self._vs
        np.maximum(self.hi - q, 0.0, out=caps[0])
        np.maximum(q - self.lo, 0.0, out=caps[3])
        caps[0] *= 2.0 * self._abrake
        caps[3] *= 2.0 * self._abrake
        np.sqrt(caps[0], out=caps[0])
        np.sqrt(caps[3], out=caps[3])
        if vcap is None:
            caps[1] = self.vmax
            caps[4] = self.vmax
        else:
            caps[1] = vcap
            caps[4] = vcap
        caps[2] = step_v
        caps[5] = step_v
        vs[:3] = v
        vs[3:] = -v
        bounds = _accel_bound(vs, caps, self._jmax6, dt)
        H, L = self._H, self._L
        H[:3] = bounds[:3]
        np.negative(bounds[3:], out=L[:3])
        H[3] = self.amax
        L[3] = -self.amax
        jstep = self.jmax * dt
        H[4] = a + jstep
        L[4] = a - jstep
        # Caps conflict only in an already-infeasible state (braking wins then); jerk and
        # acceleration are physical and applied last, over everything else.
        hi_s = H[:3].min(axis=0)
        lo_s = np.minimum(L[:3].max(axis=0), hi_s)
        a_new = np.clip(np.clip(a_des, lo_s, hi_s), np.maximum(L[3], L[4]), np.minimum(H[3], H[4]))
        kinds: List[str] = []
        if vcap is None:
            tol = 1e-9 * (1.0 + np.abs(a_des))
            cut_hi = a_new < a_des - tol
            cut_lo = a_new > a_des + tol
            active = set()
            if np.any(cut_hi):
                active.update(np.argmin(H[:, cut_hi], axis=0).tolist())
            if np.any(cut_lo):
                active.update(np.argmax(L[:, cut_lo], axis=0).tolist())
            kinds = [_BOUND_KINDS[k] for k in sorted(active)]
        v_new = v + a_new * dt
        q_new = q + v_new * dt
        # Last resort, should the braking curve not suffice: the position limit is hard.
        if np.any((q_new > self.hi) | (q_new < self.lo)):
            if "position" not in kinds:
                kinds.insert(0, "position")
            q_new = np.clip(q_new, self.lo, self.hi)
            v_new = (q_new - q) / dt
            a_new = (v_new - v) / dt
        self.qdd[:] = a_new
        self.qd[:] = v_new
        self.q[:] = q_new
        for k in kinds:
            self.counts[k] += 1
        return tuple(kinds)


_BOUND_KINDS = ("position", "velocity", "step", "acceleration", "jerk")


# --- smooth stop ---------------------------------------------------------------------------------
def quintic_coeffs(q0, v0, a0, q1, v1, a1, T: Union[float, np.ndarray]) -> np.ndarray:
    """Coefficients c0..c5 (rows) of the quintic through (q, v, a) at t=0 and t=T, per joint."""
    T2, T3, T4, T5 = T * T, T**3, T**4, T**5
    dq = q1 - q0
    c = np.empty((6,) + np.shape(q0))
    c[0], c[1], c[2] = q0, v0, a0 / 2.0
    c[3] = (20 * dq - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T2) / (2 * T3)
    c[4] = (-30 * dq + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T2) / (2 * T4)
    c[5] = (12 * dq - 6 * (v1 + v0) * T - (a0 - a1) * T2) / (2 * T5)
    return c


def eval_quintic(
    c: np.ndarray, t: Union[float, np.ndarray], q: np.ndarray, qd: np.ndarray, qdd: np.ndarray
) -> None:
    """Write position, velocity, acceleration of the quintic ``c`` at ``t`` into q, qd, qdd.

    ``t`` may be a scalar or one time per joint (each joint on its own clock)."""
    c0, c1, c2, c3, c4, c5 = c
    q[:] = c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * c5))))
    qd[:] = c1 + t * (2 * c2 + t * (3 * c3 + t * (4 * c4 + t * 5 * c5)))
    qdd[:] = 2 * c2 + t * (6 * c3 + t * (12 * c4 + t * 20 * c5))


class StopProfile:
    """Jerk-limited deceleration from (q, qd, qdd) at ``t_start`` to rest, then hold.

    ``duration`` is the shortest (up to a 10 % search step) time for which the quintic stays within
    the acceleration and jerk limits (scaled by ``scale``); the rest position is where the motion
    naturally comes to a halt, clipped into the position limits (minus ``margin``). ``feasible``
    is False when that clip made the limits unreachable (the joint was too fast, too close to a
    limit): position then wins over acceleration.
    """

    def __init__(
        self,
        profile: RobotProfile,
        q,
        qd,
        qdd=None,
        t_start: float = 0.0,
        margin: float = 0.0,
        scale: float = 1.0,
        min_duration: float = 0.02,
    ):
        q0 = np.asarray(q, dtype=np.float64).reshape(-1).copy()
        v0 = np.asarray(qd, dtype=np.float64).reshape(-1).copy()
        a0 = (
            np.zeros_like(q0)
            if qdd is None
            else np.asarray(qdd, dtype=np.float64).reshape(-1).copy()
        )
        if not (q0.shape == v0.shape == a0.shape == (profile.dof,)):
            raise ValueError("stop state must have %d values per field" % profile.dof)
        if not (np.all(np.isfinite(q0)) and np.all(np.isfinite(v0)) and np.all(np.isfinite(a0))):
            raise ValueError("stop state must be finite")
        self.profile = profile
        self.t_start = float(t_start)
        amax = profile.limits.acceleration * scale
        jmax = profile.limits.jerk * scale
        lo = profile.limits.lower + margin
        hi = profile.limits.upper - margin
        # Each joint stops on its own schedule (a synchronised, longer stop would make a joint
        # that is already braking hard reverse). Start below the closed-form estimate for
        # v0 * (1 - smoothstep) (peak decel 1.875 v/T, jerk 5.77 v/T^2) since a0 may help, and
        # stretch each joint until its sampled profile is within every limit.
        T = np.maximum(
            min_duration,
            0.5 * np.maximum(1.875 * np.abs(v0) / amax, np.sqrt(5.77 * np.abs(v0) / jmax)),
        )
        vlim = np.maximum(profile.limits.velocity, np.abs(v0))
        self.feasible = True
        for _ in range(120):
            ok, c, qf, inside = self._fit(q0, v0, a0, T, lo, hi, amax, jmax, vlim)
            # A joint whose stop already leaves the limits only gets worse when stretched.
            done = ok | ~inside
            if np.all(done):
                break
            T = np.where(done, T, T * 1.08)
        else:
            self.feasible = False
        ok, c, qf, inside = self._fit(q0, v0, a0, T, lo, hi, amax, jmax, vlim)
        if not np.all(inside):
            # Too fast, too close to a limit: no stop within the dynamic limits stays inside.
            # Position wins: shorten the stop until it does (its deceleration exceeds the limit).
            self.feasible = False
            for _ in range(200):
                if np.all(inside) or np.all(T <= 1e-3):
                    break
                T = np.where(inside, T, T * 0.95)
                c, qf, inside = self._fit(q0, v0, a0, T, lo, hi, amax, jmax, vlim)[1:]
        self.joint_durations = T
        self.duration = float(np.max(T))
        self.coeffs = c
        self.q_final = qf.copy()

    _GRID = np.linspace(0.0, 1.0, 65)[:, None]

    @classmethod
    def _fit(cls, q0, v0, a0, T, lo, hi, amax, jmax, vlim):
        qf = np.clip(q0 + v0 * T / 2.0 + a0 * T * T / 12.0, lo, hi)
        c = quintic_coeffs(q0, v0, a0, qf, 0.0, 0.0, T)
        t = cls._GRID * T
        pos = c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * c[5]))))
        vel = c[1] + t * (2 * c[2] + t * (3 * c[3] + t * (4 * c[4] + t * 5 * c[5])))
        acc = 2 * c[2] + t * (6 * c[3] + t * (12 * c[4] + t * 20 * c[5]))
        jerk = 6 * c[3] + t * (24 * c[4] + t * 60 * c[5])
        # An initial acceleration opposing the motion cannot vanish at once (jerk limit, and the
        # stop's own minimum duration), so the velocity unavoidably swings back by about
        # |a0| T + a0^2 / (2 jmax). Forbidding that swing made the search stretch T without end,
        # and the a0 T^2 / 12 term then carried the rest position all the way to a joint limit.
        rev_tol = np.where(a0 * v0 < 0.0, np.abs(a0) * T + a0 * a0 / (2.0 * jmax), 0.0) + 1e-9 * (
            1 + np.abs(v0)
        )
        # Per joint: within acceleration, jerk and velocity limits, and never reversing (a stop
        # that swings back is not a stop).
        ok = (
            np.all(np.abs(acc) <= np.maximum(amax, np.abs(a0)) * (1 + 1e-9), axis=0)
            & np.all(np.abs(jerk) <= jmax * (1 + 1e-9), axis=0)
            & np.all(np.abs(vel) <= vlim * (1 + 1e-9), axis=0)
            & ((v0 == 0.0) | np.all(vel * np.sign(v0) >= -rev_tol, axis=0))
        )
        inside = np.all(pos >= lo - 1e-9, axis=0) & np.all(pos <= hi + 1e-9, axis=0)
        return ok, c, qf, inside

    @property
    def end_time(self) -> float:
        return self.t_start + self.duration

    def done(self, t: float) -> bool:
        return t >= self.end_time

    def sample_into(self, t: float, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> None:
        # Per-joint clock, clamped at each joint's own end: there its quintic is at rest.
        tau = np.minimum(max(t - self.t_start, 0.0), self.joint_durations)
        eval_quintic(self.coeffs, tau, q, qd, qdd)
        if t - self.t_start >= self.duration:
            q[:] = self.q_final
            qd[:] = 0.0
            qdd[:] = 0.0

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.profile.dof
        q, qd, qdd = np.empty(n), np.empty(n), np.empty(n)
        self.sample_into(t, q, qd, qdd)
        return q, qd, qdd


def smooth_stop(
    profile: RobotProfile, q, qd, qdd=None, dt: float = 0.002, margin: float = 0.0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(times, Q, QD, QDD) of a StopProfile sampled every ``dt`` from 0 to rest (inclusive)."""
    sp = StopProfile(profile, q, qd, qdd, 0.0, margin)
    n = int(math.ceil(sp.duration / dt)) + 1
    times = np.arange(n + 1) * dt
    Q = np.empty((n + 1, profile.dof))
    QD, QDD = np.empty_like(Q), np.empty_like(Q)
    for i, t in enumerate(times):
        sp.sample_into(float(t), Q[i], QD[i], QDD[i])
    return times, Q, QD, QDD


# --- whole-trajectory feasibility (joint_trajectory mode) ----------------------------------------
@dataclass
class FeasibleTrajectory:
    times: np.ndarray  # time_from_start of each point, s (strictly increasing, > 0)
    positions: np.ndarray  # [N, dof]
    velocities: np.ndarray  # [N, dof]
    time_scale: float  # >= 1: how much slower than asked
    clamped_points: int  # points whose positions were clipped into the limits
    intervened: Tuple[str, ...] = field(default=())


_HERMITE_U = np.linspace(0.0, 1.0, 17)[1:-1]


def _damp_overshoot(
    t: np.ndarray, Q: np.ndarray, QD: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> bool:
    """Shrink (in place) the point velocities of every joint whose cubic Hermite segment between
    two points leaves [lower, upper], until none does. The controller interpolates positions +
    velocities with such a cubic: velocities that do not fit the point spacing near a limit
    (a clipped chunk still heading outwards) swing the curve past the limit although every point
    is inside, and the controller refuses the whole trajectory. Halving v*T pulls a segment
    towards the straight line between its (inside) points. The shape does not depend on the later
    time scaling (v / s over T * s). Returns True when anything was changed."""
    if t.size < 2:
        return False
    u = _HERMITE_U[:, None]
    h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
    h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
    T = np.diff(t)[:, None]
    changed = False
    for it in range(12):
        bad_any = False
        for k in range(t.size - 1):
            q = h00 * Q[k] + h10 * T[k] * QD[k] + h01 * Q[k + 1] + h11 * T[k] * QD[k + 1]
            lo = np.minimum(lower, np.minimum(Q[k], Q[k + 1]))
            hi = np.maximum(upper, np.maximum(Q[k], Q[k + 1]))
            bad = np.any((q < lo) | (q > hi), axis=0)
            if bad.any():
                bad_any = changed = True
                f = 0.0 if it == 11 else 0.5
                QD[k, bad] *= f
                QD[k + 1, bad] *= f
        if not bad_any:
            break
    return changed


def make_feasible(
    profile: RobotProfile,
    times: Sequence[float],
    positions,
    velocities=None,
    margin: float = 0.02,
    start_positions=None,
    max_step: Optional[float] = None,
) -> FeasibleTrajectory:
    """Clip positions into the limits and slow the trajectory until it respects vel/acc/jerk.

    ``times`` are time_from_start values (> 0, strictly increasing). ``velocities`` default to
    finite differences. With ``start_positions`` (the current command) the first segment counts
    too, and ``max_step`` bounds the first point's distance from it (raises ValueError beyond:
    such a chunk would be a jump, not something to slow down). Time scaling by s divides
    velocities by s, accelerations by s^2 and jerks by s^3, so the smallest s >= 1 that satisfies
    all three is taken.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    Q = np.array(positions, dtype=np.float64, copy=True)
    if Q.ndim != 2 or Q.shape[1] != profile.dof or Q.shape[0] != t.size or t.size == 0:
        raise ValueError("positions must be [N=%d, %d], got %s" % (t.size, profile.dof, Q.shape))
    if not (np.all(np.isfinite(Q)) and np.all(np.isfinite(t))):
        raise ValueError("trajectory contains NaN/Inf")
    if t[0] <= 0.0 or np.any(np.diff(t) <= 0.0):
        raise ValueError("time_from_start must be > 0 and strictly increasing")
    lim = profile.limits
    kinds: List[str] = []
    lo, hi = lim.lower + margin, lim.upper - margin
    clipped = np.any((Q < lo) | (Q > hi), axis=1)
    if np.any(clipped):
        kinds.append("position")
        Q = np.clip(Q, lo, hi)
    tt, QQ = t, Q
    if start_positions is not None:
        q0 = np.asarray(start_positions, dtype=np.float64).reshape(1, -1)
        if max_step is not None and np.max(np.abs(Q[0] - q0[0])) > max_step:
            raise ValueError(
                "first point is %.4f rad from the current command (max step %.4f)"
                % (np.max(np.abs(Q[0] - q0[0])), max_step)
            )
        tt, QQ = np.concatenate([[0.0], t]), np.vstack([q0, Q])
    if velocities is None:
        QD = np.gradient(Q, t, axis=0) if t.size > 1 else np.zeros_like(Q)
        QD[-1] = 0.0
    else:
        QD = np.array(velocities, dtype=np.float64, copy=True)
        if QD.shape != Q.shape or not np.all(np.isfinite(QD)):
            raise ValueError("velocities must be finite and shaped like positions")
    if _damp_overshoot(t, Q, QD, lim.lower, lim.upper):
        kinds.append("overshoot")
    s = 1.0
    vel_fd = (
        np.diff(QQ, axis=0) / np.diff(tt)[:, None] if tt.size > 1 else np.zeros((0, profile.dof))
    )
    v_all = np.vstack([QD, vel_fd]) if vel_fd.size else QD
    r_v = float(np.max(np.abs(v_all) / lim.velocity)) if v_all.size else 0.0
    if r_v > 1.0:
        kinds.append("velocity")
    s = max(s, r_v)
    if tt.size > 2:
        tm = 0.5 * (tt[1:] + tt[:-1])
        acc = np.diff(vel_fd, axis=0) / np.diff(tm)[:, None]
        r_a = float(np.max(np.abs(acc) / lim.acceleration))
        if r_a > 1.0:
            kinds.append("acceleration")
        s = max(s, math.sqrt(r_a))
        if tt.size > 3:
            ta = 0.5 * (tm[1:] + tm[:-1])
            jerk = np.diff(acc, axis=0) / np.diff(ta)[:, None]
            r_j = float(np.max(np.abs(jerk) / lim.jerk))
            if r_j > 1.0:
                kinds.append("jerk")
            s = max(s, r_j ** (1.0 / 3.0))
    return FeasibleTrajectory(t * s, Q, QD / s, s, int(np.count_nonzero(clipped)), tuple(kinds))
