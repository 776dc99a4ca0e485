"""JointTrajectoryController semantics in plain Python: validation, reordering, interpolation.

Shared by the sim driver (which must accept and reject exactly what a real ros2_control driver
does), the action node (which checks its own output before sending it) and bag2dataset (which
reconstructs the commanded joint positions from recorded trajectory messages). No ROS imports:
messages are read by attribute (``joint_names``, ``points[i].time_from_start.sec`` ...), so rclpy
messages and rosbags-deserialised messages both work.

Rules follow ros2_controllers' JointTrajectoryController (Jazzy):

* joint names: not empty, no duplicates, all known to the controller; the full joint set unless
  ``allow_partial_joints_goal`` (missing joints then hold their current command);
* points: not empty; ``time_from_start`` strictly increasing; every point has positions; each
  given field has one value per joint name; the last point's velocities are zero unless
  ``allow_nonzero_velocity_at_trajectory_end``;
* a trajectory that ends in the past is ignored.

Stricter than JTC, because the arm must never jump: NaN/Inf anywhere, positions beyond the
profile's limits, a first point at ``time_from_start <= 0`` (JTC would jump to it) and a first point
that already lies in the past (JTC would start mid-trajectory, away from the current command) are
rejected as well.

Interpolation is JTC's "splines" method: linear between points that carry only positions, cubic
Hermite where both ends carry velocities, quintic where both ends also carry accelerations. The
segment before the first point starts, as JTC's does, from the MEASURED state when the message
arrived (``interpolate_from_desired_state`` false, Jazzy's default; its deprecated alias
``open_loop_control`` means the same), or from the state commanded at that instant when that
parameter is true. A first point far from the measured state therefore shows up as the fast start
segment a real JTC would command, not as a smooth move from where the command happened to be.

Tolerances follow JTC's ``constraints`` parameters: ``constraints.<joint>.trajectory`` (path: a
measured position further than this from the desired one while the trajectory runs aborts it),
``constraints.<joint>.goal`` (goal position tolerance after the last point),
``constraints.stopped_velocity_tolerance`` (goal velocity tolerance) and ``constraints.goal_time``
(how long after the last point's time the goal may still be reached; 0 = wait forever). A
tolerance of 0 is not checked, as in JTC. An aborted trajectory is replaced by a hold at the
measured position (JTC's ``set_hold_position``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from clap_ros.robots import RobotProfile, names_text
from clap_ros.rostime import stamp_to_s

# (time_from_start_s, positions, velocities|None[, accelerations|None])
PointTuple = Tuple


# How far (rad) the first segment of a trajectory, from the controller's own start state to the
# first point, may swing past a joint limit before the trajectory is refused; sampling clips it.
# A few mrad are normal when the start is the measured state of an arm moving near a limit.
START_SEGMENT_SLACK_RAD = 0.01


class TrajectoryRejected(ValueError):
    """A command the driver refuses; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrajectoryRules:
    """The controller parameters that change what is accepted (names as in ros2_controllers)."""

    allow_partial_joints_goal: bool = False
    allow_nonzero_velocity_at_trajectory_end: bool = False
    # Positions must stay this far (rad) inside the profile's limits.
    position_margin: float = 0.0
    # Largest jump (rad) a forward-position command may ask for relative to the current command;
    # the forward controllers send the value straight to the hardware, so a bigger step is a jump.
    max_forward_step: float = 0.25
    # JTC (Jazzy): start a new trajectory from the last command instead of the measured state.
    interpolate_from_desired_state: bool = False
    # JTC constraints, per joint in profile order (empty = 0 for every joint = not checked).
    path_tolerance: Tuple[float, ...] = ()
    goal_tolerance: Tuple[float, ...] = ()
    stopped_velocity_tolerance: float = 0.01
    goal_time: float = 0.0


def constraint_rules(
    profile: RobotProfile, values: "dict[str, float]", base: Optional["TrajectoryRules"] = None
) -> "TrajectoryRules":
    """TrajectoryRules from JTC-named parameters: ``constraints.<joint>.trajectory``,
    ``constraints.<joint>.goal``, ``constraints.stopped_velocity_tolerance``,
    ``constraints.goal_time``, ``interpolate_from_desired_state`` (and its deprecated alias
    ``open_loop_control``). Unknown joints or negative values raise ValueError naming them."""
    import dataclasses

    base = base or TrajectoryRules()
    path = np.zeros(profile.dof)
    goal = np.zeros(profile.dof)
    kw: dict = {}
    for key, value in values.items():
        parts = key.split(".")
        if key in ("interpolate_from_desired_state", "open_loop_control"):
            kw["interpolate_from_desired_state"] = bool(value) or kw.get(
                "interpolate_from_desired_state", False
            )
            continue
        if parts[0] != "constraints" or len(parts) not in (2, 3):
            raise ValueError("unknown trajectory constraint parameter '%s'" % key)
        v = float(value)
        if not math.isfinite(v) or v < 0.0:
            raise ValueError("parameter '%s' = %r: must be a finite value >= 0" % (key, value))
        if len(parts) == 2:
            if parts[1] not in ("stopped_velocity_tolerance", "goal_time"):
                raise ValueError("unknown trajectory constraint parameter '%s'" % key)
            kw[parts[1]] = v
            continue
        joint, kind = profile.canonical_name(parts[1]), parts[2]
        if joint not in profile.joint_names:
            raise ValueError(
                "parameter '%s': joint '%s' is not one of %s" % (key, parts[1], profile.joint_names)
            )
        if kind not in ("trajectory", "goal"):
            raise ValueError("parameter '%s': a joint constraint is 'trajectory' or 'goal'" % key)
        (path if kind == "trajectory" else goal)[profile.joint_names.index(joint)] = v
    if np.any(path > 0):
        kw["path_tolerance"] = tuple(float(x) for x in path)
    if np.any(goal > 0):
        kw["goal_tolerance"] = tuple(float(x) for x in goal)
    return dataclasses.replace(base, **kw)


@dataclass(frozen=True)
class TrajectoryPoint:
    """One validated point in profile order (all joints; partial goals are already filled in)."""

    time_from_start: float
    positions: np.ndarray
    velocities: Optional[np.ndarray] = None
    accelerations: Optional[np.ndarray] = None


def points_from_msg(msg) -> Tuple[List[str], List[PointTuple], float]:
    """(joint_names, point tuples, header stamp in s) from a trajectory_msgs/JointTrajectory."""
    points = []
    for p in msg.points:
        points.append(
            (
                stamp_to_s(p.time_from_start),
                list(p.positions),
                list(p.velocities) if len(p.velocities) else None,
                list(p.accelerations) if len(p.accelerations) else None,
            )
        )
        if len(p.effort):
            raise TrajectoryRejected(
                "trajectories with effort fields are only supported for controllers using the "
                "'effort' command interface; this one commands positions"
            )
    return list(msg.joint_names), points, stamp_to_s(msg.header.stamp)


def _field(values, n_names: int, what: str, index: int, required: bool) -> Optional[np.ndarray]:
    if values is None or len(values) == 0:
        if required:
            raise TrajectoryRejected("point #%d has no positions" % index)
        return None
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TrajectoryRejected("point #%d: %s are not numbers (%s)" % (index, what, e)) from e
    if arr.ndim != 1 or arr.shape[0] != n_names:
        raise TrajectoryRejected(
            "mismatch between joint_names size (%d) and %s (%d) at point #%d"
            % (n_names, what, arr.size, index)
        )
    if not np.all(np.isfinite(arr)):
        raise TrajectoryRejected("point #%d: %s contain NaN or Inf" % (index, what))
    return arr


def resolve_joint_names(
    joint_names: Sequence[str], profile: RobotProfile, allow_partial: bool
) -> np.ndarray:
    """Profile index of each message joint; rejects empty, duplicate, unknown and missing names."""
    names = [str(n) for n in joint_names]
    if not names:
        raise TrajectoryRejected("empty joint names on incoming command")
    canon = [profile.canonical_name(n) for n in names]
    dup = sorted({n for n in canon if canon.count(n) > 1})
    if dup:
        raise TrajectoryRejected("duplicate joint names %s" % names_text(dup))
    known = {n: i for i, n in enumerate(profile.joint_names)}
    unknown = [n for n, c in zip(names, canon) if c not in known]
    if unknown:
        raise TrajectoryRejected(
            "incoming joints %s don't match the controller's joints %s"
            % (names_text(unknown), profile.joint_names)
        )
    if not allow_partial and len(canon) != profile.dof:
        missing = [n for n in profile.joint_names if n not in canon]
        raise TrajectoryRejected(
            "joints on incoming trajectory don't match the controller joints: missing %s "
            "(partial joint goals are not allowed)" % missing
        )
    return np.array([known[c] for c in canon], dtype=np.int64)


def check_positions(q: np.ndarray, profile: RobotProfile, margin: float, where: str) -> None:
    lo = profile.limits.lower + margin
    hi = profile.limits.upper - margin
    bad = np.nonzero((q < lo) | (q > hi))[0]
    if bad.size:
        j = int(bad[0])
        raise TrajectoryRejected(
            "%s: %s = %.4f is beyond its limits [%.4f, %.4f]%s"
            % (
                where,
                profile.joint_names[j],
                q[j],
                lo[j],
                hi[j],
                (" (and %d more joints)" % (bad.size - 1)) if bad.size > 1 else "",
            )
        )


def validate_points(
    joint_names: Sequence[str],
    points: Sequence[PointTuple],
    profile: RobotProfile,
    hold_positions: np.ndarray,
    rules: TrajectoryRules = TrajectoryRules(),
) -> List[TrajectoryPoint]:
    """Apply the JTC rules and return the points in profile order.

    ``hold_positions`` (profile order) fills joints left out of a partial goal; their velocity
    and acceleration are zero.
    """
    idx = resolve_joint_names(joint_names, profile, rules.allow_partial_joints_goal)
    n = len(idx)
    if not points:
        raise TrajectoryRejected("empty trajectory received")
    hold = np.asarray(hold_positions, dtype=np.float64)
    out: List[TrajectoryPoint] = []
    prev_t = None
    for i, p in enumerate(points):
        if len(p) < 2:
            raise TrajectoryRejected("point #%d needs (time_from_start, positions, ...)" % i)
        t = float(p[0])
        if not math.isfinite(t):
            raise TrajectoryRejected("point #%d: time_from_start is not finite" % i)
        if i == 0 and t <= 0.0:
            raise TrajectoryRejected(
                "first point has time_from_start %.6f s; it must be > 0, or the arm would jump "
                "to it" % t
            )
        if prev_t is not None and t <= prev_t:
            raise TrajectoryRejected(
                "time between points %d and %d is not strictly increasing, it is %.6f and %.6f "
                "respectively" % (i - 1, i, prev_t, t)
            )
        prev_t = t
        pos = _field(p[1], n, "positions", i, required=True)
        vel = _field(p[2] if len(p) > 2 else None, n, "velocities", i, required=False)
        acc = _field(p[3] if len(p) > 3 else None, n, "accelerations", i, required=False)
        q = hold.copy()
        q[idx] = pos
        check_positions(q, profile, rules.position_margin, "point #%d" % i)
        qd = qdd = None
        if vel is not None:
            qd = np.zeros(profile.dof)
            qd[idx] = vel
        if acc is not None:
            qdd = np.zeros(profile.dof)
            qdd[idx] = acc
        out.append(TrajectoryPoint(t, q, qd, qdd))
    last = out[-1]
    if (
        not rules.allow_nonzero_velocity_at_trajectory_end
        and last.velocities is not None
        and np.any(last.velocities != 0.0)
    ):
        j = int(np.nonzero(last.velocities)[0][0])
        raise TrajectoryRejected(
            "velocity of last trajectory point of joint %s is not zero: %.6f"
            % (profile.joint_names[j], last.velocities[j])
        )
    return out


def validate_forward_command(
    values,
    profile: RobotProfile,
    current: Optional[np.ndarray],
    rules: TrajectoryRules = TrajectoryRules(),
) -> np.ndarray:
    """A forward_position_controller command: one position per arm joint, profile order."""
    try:
        q = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TrajectoryRejected("forward command is not numbers (%s)" % e) from e
    if q.size != profile.dof:
        raise TrajectoryRejected(
            "forward command has %d values; the controller has %d joints %s"
            % (q.size, profile.dof, profile.joint_names)
        )
    if not np.all(np.isfinite(q)):
        raise TrajectoryRejected("forward command contains NaN or Inf")
    check_positions(q, profile, rules.position_margin, "forward command")
    if current is not None:
        step = np.abs(q - np.asarray(current, dtype=np.float64))
        j = int(np.argmax(step))
        if step[j] > rules.max_forward_step:
            raise TrajectoryRejected(
                "forward command moves %s by %.4f rad in one step (max %.4f): the arm would jump"
                % (profile.joint_names[j], step[j], rules.max_forward_step)
            )
    return q


def validate_gripper_command(values) -> float:
    """A gripper command: exactly one normalised opening in [0, 1] (0 closed, 1 open)."""
    try:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TrajectoryRejected("gripper command is not numbers (%s)" % e) from e
    if v.size != 1:
        raise TrajectoryRejected(
            "gripper command needs exactly 1 value (opening 0..1), got %d" % v.size
        )
    if not math.isfinite(v[0]) or not 0.0 <= v[0] <= 1.0:
        raise TrajectoryRejected("gripper opening %r is not in [0, 1]" % float(v[0]))
    return float(v[0])


def _hermite(
    t: Union[float, np.ndarray], T: float, q0, v0, a0, q1, v1, a1
) -> Tuple[np.ndarray, np.ndarray]:
    """Cubic (a0/a1 None) or quintic Hermite on [0, T]: position and velocity at t."""
    s = t / T
    if a0 is None or a1 is None:
        s2, s3 = s * s, s * s * s
        h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
        d00, d10, d01, d11 = 6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s
        q = h00 * q0 + h10 * T * v0 + h01 * q1 + h11 * T * v1
        qd = (d00 * q0 + d01 * q1) / T + d10 * v0 + d11 * v1
        return q, qd
    # Quintic through (q, v, a) at both ends, written as polynomial coefficients in t.
    T2, T3, T4, T5 = T * T, T**3, T**4, T**5
    c0, c1, c2 = q0, v0, a0 / 2.0
    dq = q1 - q0
    c3 = (20 * dq - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T2) / (2 * T3)
    c4 = (-30 * dq + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T2) / (2 * T4)
    c5 = (12 * dq - 6 * (v1 + v0) * T - (a0 - a1) * T2) / (2 * T5)
    q = c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * c5))))
    qd = c1 + t * (2 * c2 + t * (3 * c3 + t * (4 * c4 + t * 5 * c5)))
    return q, qd


class Trajectory:
    """A validated trajectory on an absolute time axis, sampled in profile order.

    ``start_time_s`` is the time ``time_from_start`` counts from (the header stamp, or the receipt
    time when the stamp is zero); ``now_s`` is when it takes over from ``start_positions`` /
    ``start_velocities`` (the state commanded at that moment). Before ``now_s`` the start state is
    held; after the last point its positions are held with zero velocity.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        points: Sequence[PointTuple],
        profile: RobotProfile,
        start_time_s: float,
        start_positions: ArrayLike,
        start_velocities: Optional[ArrayLike] = None,
        rules: TrajectoryRules = TrajectoryRules(),
        now_s: Optional[float] = None,
    ):
        self.profile = profile
        q0 = np.asarray(start_positions, dtype=np.float64)
        if q0.shape != (profile.dof,) or not np.all(np.isfinite(q0)):
            raise ValueError("start_positions must be %d finite values" % profile.dof)
        v0 = (
            np.zeros(profile.dof)
            if start_velocities is None
            else np.asarray(start_velocities, dtype=np.float64)
        )
        self.points = validate_points(joint_names, points, profile, q0, rules)
        self.start_time_s = float(start_time_s)
        self.now_s = self.start_time_s if now_s is None else float(now_s)
        first_abs = self.start_time_s + self.points[0].time_from_start
        if self.start_time_s + self.points[-1].time_from_start < self.now_s:
            raise TrajectoryRejected(
                "received trajectory with start time %.6f s that ends in the past (%.6f s < now "
                "%.6f s)"
                % (
                    self.start_time_s,
                    self.start_time_s + self.points[-1].time_from_start,
                    self.now_s,
                )
            )
        if first_abs <= self.now_s:
            raise TrajectoryRejected(
                "the first point (at %.6f s) is not in the future (now %.6f s): starting "
                "mid-trajectory would make the arm jump" % (first_abs, self.now_s)
            )
        start = TrajectoryPoint(0.0, q0, v0, np.zeros(profile.dof))
        self._knots = [(self.now_s, start)] + [
            (self.start_time_s + p.time_from_start, p) for p in self.points
        ]
        self._times = np.array([k[0] for k in self._knots])
        self._check_curve()

    def _check_curve(self) -> None:
        """Refuse a spline that leaves the joint limits between its points: velocities too large
        for the point spacing make the Hermite segments swing far out (1e300 rad/s gave 1e299
        rad positions), though every point itself is inside."""
        if self._curve_inside():
            return
        self._check_curve_each()  # finds the first bad segment and says why

    def _curve_inside(self) -> bool:
        """True when every Hermite segment stays inside (the check of ``_check_curve_each``,
        for all segments at once: one trajectory per chunk reaches the driver at 15 Hz)."""
        lim = self.profile.limits
        segs = [
            (k, a, b)
            for k, ((_, a), (_, b)) in enumerate(zip(self._knots[:-1], self._knots[1:]))
            if a.velocities is not None and b.velocities is not None
        ]
        if not segs:
            return True
        quintic = [a.accelerations is not None and b.accelerations is not None for _, a, b in segs]
        if any(quintic) and not all(quintic):
            return False  # mixed: the per-segment check handles it
        ks = np.array([k for k, _, _ in segs])
        T = (self._times[ks + 1] - self._times[ks])[None, :, None]
        u = np.linspace(0.0, 1.0, 17)[1:-1, None, None]
        qa = np.stack([a.positions for _, a, _ in segs])
        qb = np.stack([b.positions for _, _, b in segs])
        va = np.stack([a.velocities for _, a, _ in segs])  # type: ignore[misc]
        vb = np.stack([b.velocities for _, _, b in segs])  # type: ignore[misc]
        aa = np.stack([a.accelerations for _, a, _ in segs]) if quintic[0] else None  # type: ignore[misc]
        ab = np.stack([b.accelerations for _, _, b in segs]) if quintic[0] else None  # type: ignore[misc]
        with np.errstate(over="ignore", invalid="ignore"):
            q, _ = _hermite(u * T, T, qa, va, aa, qb, vb, ab)
        slack = np.where(ks == 0, START_SEGMENT_SLACK_RAD, 1e-6)[:, None]
        lo = np.minimum(lim.lower, np.minimum(qa, qb)) - slack
        hi = np.maximum(lim.upper, np.maximum(qa, qb)) + slack
        return not bool((~np.isfinite(q) | (q < lo) | (q > hi)).any())

    def _check_curve_each(self) -> None:
        lim = self.profile.limits
        u = np.linspace(0.0, 1.0, 17)[1:-1, None]
        for k in range(len(self._knots) - 1):
            (ta, a), (tb, b) = self._knots[k], self._knots[k + 1]
            if a.velocities is None or b.velocities is None:
                continue  # linear: stays between its two (checked) ends
            T = tb - ta
            both = a.accelerations is not None and b.accelerations is not None
            with np.errstate(over="ignore", invalid="ignore"):
                q, _ = _hermite(
                    u * T,
                    T,
                    a.positions,
                    a.velocities,
                    a.accelerations if both else None,
                    b.positions,
                    b.velocities,
                    b.accelerations if both else None,
                )
            # an end already outside the limits (a start pose at the limit) does not count; the
            # first segment starts from the controller's own state (measured by default), which
            # the sender cannot shape, so a small swing past a limit there is clipped in sample()
            # instead of refusing the whole trajectory
            slack = START_SEGMENT_SLACK_RAD if k == 0 else 1e-6
            lo = np.minimum(lim.lower, np.minimum(a.positions, b.positions)) - slack
            hi = np.maximum(lim.upper, np.maximum(a.positions, b.positions)) + slack
            bad = ~np.isfinite(q) | (q < lo) | (q > hi)
            if bad.any():
                j = int(np.nonzero(bad.any(axis=0))[0][0])
                worst = q[:, j][np.argmax(np.abs(np.nan_to_num(q[:, j] - b.positions[j])))]
                where = "the current command" if k == 0 else "point #%d" % (k - 1)
                raise TrajectoryRejected(
                    "between %s and point #%d the spline leaves the limits of %s (reaches %.4g, "
                    "limits [%.4f, %.4f]): its velocities are too large for the point spacing"
                    % (where, k, self.profile.joint_names[j], worst, lim.lower[j], lim.upper[j])
                )

    @property
    def end_time_s(self) -> float:
        return float(self._times[-1])

    @property
    def final_positions(self) -> np.ndarray:
        return self.points[-1].positions.copy()

    def done(self, t: float) -> bool:
        return t >= self.end_time_s

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        """Commanded (positions, velocities) at absolute time ``t``, profile order."""
        if t < self._times[0]:
            p = self._knots[0][1]
            return p.positions.copy(), np.zeros(self.profile.dof)
        if t >= self._times[-1]:
            return self.points[-1].positions.copy(), np.zeros(self.profile.dof)
        k = int(np.searchsorted(self._times, t, side="right")) - 1
        ta, a = self._knots[k]
        tb, b = self._knots[k + 1]
        T = tb - ta
        if a.velocities is not None and b.velocities is not None:
            both_acc = a.accelerations is not None and b.accelerations is not None
            q, qd = _hermite(
                t - ta,
                T,
                a.positions,
                a.velocities,
                a.accelerations if both_acc else None,
                b.positions,
                b.velocities,
                b.accelerations if both_acc else None,
            )
            if k == 0:  # the start segment's tolerated swing (_check_curve) stays in the limits
                lim = self.profile.limits
                lo = np.minimum(lim.lower, np.minimum(a.positions, b.positions))
                hi = np.maximum(lim.upper, np.maximum(a.positions, b.positions))
                q = np.clip(q, lo, hi)
            return q, qd
        s = (t - ta) / T
        return a.positions + s * (b.positions - a.positions), (b.positions - a.positions) / T


class TrajectoryFollower:
    """The controller's command state: hold, follow a trajectory, or hold a forward command.

    A new trajectory replaces the running one and starts, like JTC's, from the measured state
    passed in (or from the state commanded at that instant with ``interpolate_from_desired_state``
    or when no measurement is given, as for the bag and recording reconstructions); a rejected
    command changes nothing and the last safe target stays. ``check`` applies the path and goal
    tolerances against the measured state.
    """

    def __init__(
        self,
        profile: RobotProfile,
        initial_positions: ArrayLike,
        rules: TrajectoryRules = TrajectoryRules(),
    ):
        self.profile = profile
        self.rules = rules
        self.reset(initial_positions)

    def reset(self, positions: ArrayLike) -> None:
        q = np.asarray(positions, dtype=np.float64).copy()
        if q.shape != (self.profile.dof,):
            raise ValueError("expected %d positions, got shape %s" % (self.profile.dof, q.shape))
        self._hold = q
        self._traj: Optional[Trajectory] = None
        self._last = (q.copy(), np.zeros(self.profile.dof))
        self._last_t: Optional[float] = None
        # The outcome of the last trajectory: "" running/none, "succeeded", or the abort reason.
        self.outcome = ""
        self.aborts = 0

    @property
    def trajectory(self) -> Optional[Trajectory]:
        return self._traj

    @property
    def active(self) -> bool:
        """True while a trajectory is still moving (not yet at its last point)."""
        return self._traj is not None and (
            self._last_t is None or not self._traj.done(self._last_t)
        )

    def sample(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        if self._traj is not None:
            q, qd = self._traj.sample(t)
        else:
            q, qd = self._hold.copy(), np.zeros(self.profile.dof)
        self._last, self._last_t = (q, qd), float(t)
        return q.copy(), qd.copy()

    @property
    def commanded(self) -> Tuple[np.ndarray, np.ndarray]:
        """The last sampled (positions, velocities)."""
        return self._last[0].copy(), self._last[1].copy()

    def set_trajectory(
        self,
        joint_names: Sequence[str],
        points: Sequence[PointTuple],
        now_s: float,
        stamp_s: float = 0.0,
        measured: Optional[Tuple[ArrayLike, Optional[ArrayLike]]] = None,
    ) -> Trajectory:
        """Replace the running command; raises TrajectoryRejected and keeps it on bad input.

        ``measured`` = (positions, velocities|None) of the arm now, profile order: the start
        state unless ``interpolate_from_desired_state`` (then, or without it, the command)."""
        q0, v0 = self.sample(now_s)
        if measured is not None and not self.rules.interpolate_from_desired_state:
            mq = np.asarray(measured[0], dtype=np.float64)
            if mq.shape != (self.profile.dof,) or not np.all(np.isfinite(mq)):
                raise TrajectoryRejected(
                    "the measured joint state is not %d finite positions" % self.profile.dof
                )
            mv = measured[1]
            q0 = mq.copy()
            v0 = (
                np.zeros(self.profile.dof)
                if mv is None
                else np.nan_to_num(np.asarray(mv, dtype=np.float64))
            )
        start = now_s if stamp_s == 0.0 else stamp_s
        traj = Trajectory(joint_names, points, self.profile, start, q0, v0, self.rules, now_s=now_s)
        self._traj = traj
        self.outcome = ""
        return traj

    def check(
        self, t: float, q_meas: ArrayLike, qd_meas: Optional[ArrayLike] = None
    ) -> Optional[str]:
        """JTC's tolerance checks at time ``t`` against the measured state (profile order).

        Returns None while all is well (and sets ``outcome`` to "succeeded" once the goal is
        reached); on a violated path tolerance, or a goal not reached within ``goal_time`` after
        the last point, the trajectory is aborted, the arm holds at the measured position, and the
        reason is returned (and kept in ``outcome``)."""
        traj = self._traj
        if traj is None or self.outcome:
            return None
        q = np.asarray(q_meas, dtype=np.float64)
        qd = None if qd_meas is None else np.asarray(qd_meas, dtype=np.float64)
        names = self.profile.joint_names
        rules = self.rules
        if not traj.done(t):
            if rules.path_tolerance:
                desired, _ = traj.sample(t)
                err = np.abs(desired - q)
                tol = np.asarray(rules.path_tolerance)
                bad = np.nonzero((tol > 0) & (err > tol))[0]
                if bad.size:
                    j = int(bad[0])
                    return self._abort(
                        t,
                        q,
                        "path tolerance violated: %s is %.4f rad from the desired position "
                        "(constraints.%s.trajectory = %.4f); trajectory aborted, holding at the "
                        "measured position" % (names[j], err[j], names[j], tol[j]),
                    )
            return None
        final = traj.final_positions
        within = True
        if rules.goal_tolerance:
            tol = np.asarray(rules.goal_tolerance)
            within = bool(np.all((tol <= 0) | (np.abs(final - q) <= tol)))
        if within and qd is not None and rules.stopped_velocity_tolerance > 0:
            within = bool(np.all(np.abs(qd) <= rules.stopped_velocity_tolerance))
        if within:
            self.outcome = "succeeded"
            return None
        late = t - traj.end_time_s
        if rules.goal_time > 0 and late > rules.goal_time:
            err = np.abs(final - q)
            j = int(np.argmax(err))
            return self._abort(
                t,
                q,
                "goal not reached %.3f s after the trajectory's end (constraints.goal_time "
                "= %.3f s; worst %s %.4f rad off, joint speeds up to %.4f rad/s); trajectory "
                "aborted, holding at the measured position"
                % (
                    late,
                    rules.goal_time,
                    names[j],
                    err[j],
                    float(np.max(np.abs(qd))) if qd is not None else 0.0,
                ),
            )
        return None

    def _abort(self, t: float, q_meas: np.ndarray, reason: str) -> str:
        self.hold_at(q_meas, t)
        self.outcome = reason
        self.aborts += 1
        return reason

    def hold_at(self, positions: ArrayLike, now_s: float) -> np.ndarray:
        """Drop any trajectory and hold ``positions`` (the measured state on an abort or a
        reflex: JTC's set_hold_position), clipped to the joint limits."""
        lim = self.profile.limits
        q = np.clip(np.asarray(positions, dtype=np.float64), lim.lower, lim.upper)
        self._traj = None
        self._hold = q.copy()
        self._last = (q.copy(), np.zeros(self.profile.dof))
        self._last_t = float(now_s)
        return q

    def set_forward(self, values, now_s: float) -> np.ndarray:
        """Hold a forward-position command from now on (replacing any trajectory)."""
        q_now, _ = self.sample(now_s)
        q = validate_forward_command(values, self.profile, q_now, self.rules)
        self._traj = None
        self._hold = q.copy()
        self._last = (q.copy(), np.zeros(self.profile.dof))
        return q

    def hold(self, now_s: float) -> np.ndarray:
        """Stop where the command is now (used on reset or when a controller is switched)."""
        q, _ = self.sample(now_s)
        self._traj = None
        self._hold = q.copy()
        self._last = (q.copy(), np.zeros(self.profile.dof))
        return q


def trajectory_chunk(plan, tau: float, horizon: float, point_period: float):
    """Point tuples (time_from_start, positions, velocities) of the plan from plan time ``tau``.

    Points every ``point_period`` up to ``horizon`` or the plan's end; the last point has zero
    velocity (JTC rejects anything else) which only shapes its final segment, since the next
    chunk replaces this one long before.
    """
    points: List[Tuple[float, np.ndarray, Optional[np.ndarray]]] = []
    k = 1
    while True:
        t = k * point_period
        end = tau + t >= plan.duration
        if end:
            t = plan.duration - tau
        if t > horizon + 1e-9:
            break
        if t > 1e-6 and (not points or t > points[-1][0] + 1e-6):
            q, qd, _ = plan.sample(tau + t)
            points.append((t, np.asarray(q, dtype=np.float64), np.asarray(qd, dtype=np.float64)))
        if end:
            break
        k += 1
    if not points:  # tau is at the very end: one last hold point
        q, _, _ = plan.sample(plan.duration)
        points.append((point_period, np.asarray(q, dtype=np.float64), None))
    t, q, _ = points[-1]
    points[-1] = (t, q, np.zeros_like(q))
    return points
