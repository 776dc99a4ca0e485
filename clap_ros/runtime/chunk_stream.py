"""The action core's chunk queue use: RF chunks in, with their measured availability time, and
the real-time-chunking hand-over (``ChunkQueue``: cross-fade, late chunks dropped); out either
samples (forward_position) or one feasible JointTrajectory per new chunk (joint_trajectory).

Where a trajectory starts. Given the measured state (``measured``: the action core passes it
unless ``interpolate_from_desired_state``), there, as ros2_control's JointTrajectoryController
does (it interpolates from the measured state to the first point, whatever the sender meant):

* the commanded path follows the chunk reference from the command's own position and velocity
  on a TRACK_DT grid (measured_start.track: the reference's acceleration plus a critically
  damped correction, saturated at COMMAND_SHARE of the scaled velocity and acceleration limits,
  so a reference asking for more is lagged, not jumped to);
* its samples, with its velocities, are the trajectory's points: the first at least
  FIRST_POINT_MIN_S ahead, the last where it is at rest; the whole is planned for its arrival
  TRANSPORT_S after it is made;
* the JTC's interpolation from the measured position and velocity through them, first segment
  included, is checked over its first CHECKED_S against CHECK_SHARE of the limits and slowed
  down until it is within them;
* the same points reached from the command's state (leaning COMMAND_LEAK towards the measured
  state) are the command the arm should follow (``desired``): the arm joins it at the first
  point, and an arm pushed off it or blocked while it moves on fast falls behind it, which the
  tracking check sees (and the stop then starts where the arm is).

When no slow-down brings a trajectory within the limits, ``FirstPointUnreachable`` says why: the
core stops from where the arm is instead of sending a jump. Without a measured state: from
what the controller is executing (``commanded``), never with a jump from the last command.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from clap_ros.control.chunking import ChunkQueue
from clap_ros.control.safety import make_feasible
from clap_ros.runtime.measured_start import hermite_grid, spline_peaks, track
from clap_ros.runtime.params import ActionParams

# The first point is at least this far ahead: the JTC's first segment starts from a measured
# state that is a few ms newer than the one the trajectory was made from (transport), and the
# acceleration that difference asks for falls with the square of this time.
FIRST_POINT_MIN_S = 0.15
# The commanded path follows the reference within COMMAND_SHARE of the (scaled) velocity and
# acceleration limits, and its samples are the points sent: the JTC's cubic through exact
# samples of a path with acceleration within A stays within 5/3 A (0.67 here); its first
# segment starts from the measured state instead, and the whole interpolation is checked
# against CHECK_SHARE, which leaves room for a measured state a little off the command (an
# error e asks for about 6 e / T^2 more in a first segment of T) and for the state moving on
# between the joint state and the receipt (a velocity error dv: about 4 dv / T).
COMMAND_SHARE = 0.4
CHECK_SHARE = 0.85
# joint_trajectory stops (from the measured state) use this share of the acceleration and jerk
# limits.
STOP_SHARE = 0.45
# The path is computed on this grid, and corrects towards the reference with this natural
# frequency (rad/s; critically damped: an error of 1 cm asks for about 2.5 rad/s^2).
TRACK_DT = 0.025
TRACK_OMEGA = 2.0 * np.pi * 2.5
# A trajectory reaches the controller about this long after it is made (DDS on loopback: a
# few ms; the direct evaluator: the next physics step): it is planned from the state expected
# then, else every hand-over would cost the arm the motion of the transport time.
TRANSPORT_S = 0.002
# How far the command leans towards the measured state at each trajectory.
COMMAND_LEAK = 0.3
# The path is followed this long past the reference's last point, to come to rest.
SETTLE_S = 0.5
# A trajectory that needs a slow-down beyond this is not sent.
MAX_FIRST_SEGMENT_SLOWDOWN = 8.0
# The limits are checked on the JTC's interpolation of this first part of each trajectory: what
# runs before the next chunk's trajectory replaces it, with room for late chunks (the watchdog
# stops the arm when latents are older than watchdog_latent_s, 0.5 s by default).
CHECKED_S = 0.5


class FirstPointUnreachable(ValueError):
    """No trajectory from the measured state within the limits: the reason, for the log."""


@dataclass
class TrajectoryCommand:
    """One JointTrajectory: profile joint names, points (t_from_start, q, qd), header stamp 0."""

    joint_names: List[str]
    points: List[Tuple[float, np.ndarray, np.ndarray]]
    kind: str  # "chunk" or "stop"
    time_scale: float = 1.0


def sent_trajectory(
    now: float, start: np.ndarray, times: np.ndarray, positions: np.ndarray
) -> Tuple[float, np.ndarray, np.ndarray]:
    """(send time, times from 0, positions from ``start``): what the controller executes."""
    return now, np.concatenate([[0.0], times]), np.vstack([start, positions])


def hermite(
    path: Tuple[float, np.ndarray, np.ndarray, np.ndarray], now: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Position and velocity at ``now`` of (t0, times from 0, positions, velocities) as the
    JTC's cubic spline through points with velocities (held, at rest, after the last point)."""
    t0, times, pos, vel = path
    t = now - t0
    if t >= times[-1]:
        return pos[-1].copy(), np.zeros(pos.shape[1])
    q, qd = hermite_grid(times, pos, vel, np.array([t]))
    return q[0], qd[0]


def interpolate(
    sent: Tuple[float, np.ndarray, np.ndarray], now: float, dof: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Position and velocity of a sent trajectory at ``now``, as the JTC interpolates it."""
    t0, times, pos = sent
    t = min(max(now - t0, 0.0), float(times[-1]))
    k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
    span = float(times[k + 1] - times[k])
    a = (t - float(times[k])) / span if span > 0 else 1.0
    q = pos[k] + a * (pos[k + 1] - pos[k])
    qd = (pos[k + 1] - pos[k]) / span if span > 0 and t < times[-1] else np.zeros(dof)
    return q, qd


class ChunkStream:
    def __init__(self, profile, params: ActionParams, chunk_dt: float):
        self.profile = profile
        self.p = params
        self.dof = profile.dof
        self.chunk_dt = float(chunk_dt)
        self.queue = ChunkQueue(
            profile,
            dim=self.dof + 1,
            blend_window=params.blend_window_s,
            max_delay=params.max_chunk_delay_s,
            margin=params.position_margin,
        )
        self.cmd_q = np.zeros(self.dof)  # last arm command sent (forward) / planned
        self.pending = False  # a new chunk waits for its trajectory
        # joint_trajectory mode: the last trajectory sent, with its start point at t=0
        self.sent: Optional[Tuple[float, np.ndarray, np.ndarray]] = None
        # from the measured state: the commanded path (send time, times from 0, positions,
        # velocities), which the arm should follow; the sent trajectories join it
        self.desired: Optional[Tuple[float, np.ndarray, np.ndarray, np.ndarray]] = None
        # frame stamp of the newest accepted chunk until a command drawn from it goes out; then
        # frame -> first command (node clock) waits in frame_to_command for the node to read
        self.new_chunk_frame: Optional[float] = None
        self.frame_to_command: Optional[float] = None
        self.interventions: Dict[str, int] = {}
        # how much make_feasible slowed the recent trajectories down (1 = as the model planned)
        self.time_scales: Deque[float] = deque(maxlen=100)
        self.trajectories = 0
        self.last_delay_s = float("nan")
        # first segments from the measured state: how many were slowed down, the peak velocity
        # and acceleration ratios sent (share of the scaled limits), the last deviation
        self.first_point_slowed = 0
        self.first_point_velocity_ratio_max = 0.0
        self.first_point_acceleration_ratio_max = 0.0
        self.first_point_deviation_rad = 0.0
        lim = profile.limits
        self._vlim = np.asarray(lim.velocity, dtype=np.float64) * params.velocity_scale
        self._alim = np.asarray(lim.acceleration, dtype=np.float64) * params.acceleration_scale
        self._lo = np.asarray(lim.lower, dtype=np.float64) + params.position_margin
        self._hi = np.asarray(lim.upper, dtype=np.float64) - params.position_margin

    def reset(self, now: float, q: np.ndarray, gripper: float) -> None:
        self.queue.reset(now, np.append(q, gripper).tolist())
        self.cmd_q[:] = q
        self.pending = False
        self.sent = None
        self.desired = None

    # --- chunks in -----------------------------------------------------------------------------
    def prepare(self, targets: np.ndarray, stamp: float, t_available: float):
        """The expensive part of a hand-over (outside the controller's lock)."""
        return self.queue.prepare(targets, stamp, self.chunk_dt, t_available)

    def commit(self, prepared, stamp: float, now: float):
        """Queue a prepared chunk; returns ChunkQueue's PushResult."""
        res = self.queue.commit(prepared, now)
        if res.accepted:
            self.last_delay_s = res.delay
            self.pending = True
            self.new_chunk_frame = float(stamp)
        return res

    def first_command(self, now: float) -> None:
        """A command drawn from the newest chunk went out: frame -> first command."""
        if self.new_chunk_frame is not None:
            self.frame_to_command = now - self.new_chunk_frame
            self.new_chunk_frame = None

    # --- commands out --------------------------------------------------------------------------
    def commanded(self, now: float) -> Tuple[np.ndarray, np.ndarray]:
        """joint_trajectory mode: what the controller executes (the run's start pose before any
        trajectory went out); from the measured state: the commanded path (``desired``), as the
        JTC's spline through its points."""
        if self.desired is not None:
            return hermite(self.desired, now)
        if self.sent is None:
            return self.cmd_q.copy(), np.zeros(self.dof)
        return interpolate(self.sent, now, self.dof)

    def trajectory(
        self, now: float, measured: Optional[Tuple[np.ndarray, np.ndarray]] = None
    ) -> Tuple[Optional[TrajectoryCommand], str]:
        """(the trajectory for the newest chunk, "") or (None, why it cannot be sent).

        ``measured``: the arm's (position, velocity) expected when the trajectory reaches the
        controller, ``now + TRANSPORT_S``; the trajectory then starts from it (see the module
        docstring) and FirstPointUnreachable says when it cannot."""
        p = self.p
        if measured is not None:
            # planned for its arrival at the controller (time_from_start counts from there)
            t0 = now + TRANSPORT_S
            pts = self.queue.trajectory_points(
                t0, p.trajectory_horizon_s, p.trajectory_point_period_s
            )
            try:
                return self._from_measured(t0, measured, pts)
            except FirstPointUnreachable:
                raise
            except ValueError as e:
                return None, "trajectory not sent: %s" % e
        pts = self.queue.trajectory_points(now, p.trajectory_horizon_s, p.trajectory_point_period_s)
        times = [x[0] for x in pts]
        # Start from what the controller is executing now: where the previous trajectory has
        # got to, which trails the queue whenever make_feasible slowed it down. Starting from
        # the queue would ask the controller for a jump at every hand-over.
        start = self.commanded(now)[0]
        try:
            f = make_feasible(
                self.profile,
                times,
                np.array([x[1] for x in pts]),
                np.array([x[2] for x in pts]),
                margin=p.position_margin,
                start_positions=start,
            )
        except ValueError as e:
            return None, "trajectory not sent: %s" % e
        for k in f.intervened:
            self.interventions[k] = self.interventions.get(k, 0) + 1
        self.time_scales.append(float(f.time_scale))
        vel = f.velocities.copy()
        vel[-1] = 0.0
        points = [(float(t), f.positions[i].copy(), vel[i].copy()) for i, t in enumerate(f.times)]
        self.cmd_q[:] = start
        self.sent = sent_trajectory(now, start, f.times, f.positions)
        self.trajectories += 1
        return TrajectoryCommand(list(self.profile.joint_names), points, "chunk", f.time_scale), ""

    def _from_measured(self, now: float, measured, pts):
        """The trajectory from the measured state (module docstring): the commanded path
        follows the reference from the command's own state, kept as ``desired``; what is sent
        follows that path from the measured state; both within the limits, sampled at the
        trajectory's points."""
        # the JTC reaches the first point from the measured state: not too soon
        pts = [x for x in pts if x[0] >= FIRST_POINT_MIN_S - 1e-9] or pts[-1:]
        times = np.array([x[0] for x in pts])
        # beyond the reference's last point (at rest) the paths may still be catching up
        n = int(np.ceil((times[-1] + SETTLE_S) / TRACK_DT - 1e-9)) + 1
        grid = TRACK_DT * np.arange(n)
        # the reference on the grid: the JTC-style interpolation of its points from now
        r0, rd0, _ = self.queue.peek(now)
        ref_q, ref_qd = hermite_grid(
            np.concatenate([[0.0], times]),
            np.vstack([r0[: self.dof], [x[1] for x in pts]]),
            np.vstack([rd0[: self.dof], [x[2] for x in pts]]),
            grid,
        )
        c_q, c_qd = self.commanded(now)
        q_m = np.asarray(measured[0], dtype=np.float64)
        v_m = np.asarray(measured[1], dtype=np.float64)
        self.first_point_deviation_rad = float(np.max(np.abs(q_m - c_q)))
        # The command leans COMMAND_LEAK of the way towards the arm at each trajectory: a
        # real arm trails its setpoint, and the JTC restarts that setpoint where the arm is at
        # every hand-over, so without it the arm would fall further behind the command than it
        # trails its controller. An arm held back for good (blocked: the command moving on at
        # v) still falls about v T (1 - COMMAND_LEAK) / COMMAND_LEAK behind (T: chunk period).
        c_q = c_q + COMMAND_LEAK * (q_m - c_q)
        c_qd = c_qd + COMMAND_LEAK * (v_m - c_qd)
        # the command's path: the reference followed from where the command is (independent
        # of the arm: a blocked arm falls behind it, and the tracking check sees that)
        Pc, Vc = track(
            TRACK_DT,
            ref_q,
            ref_qd,
            np.array([[c_q, c_qd]]),
            (COMMAND_SHARE * self._vlim)[None],
            (COMMAND_SHARE * self._alim)[None],
            TRACK_OMEGA,
            self._lo,
            self._hi,
        )
        cq, cv = Pc[0], Vc[0]
        # points on it until it is at rest (the last one's velocity is 0, as the JTC wants)
        moving = np.max(np.abs(cv), axis=1) > 1e-3
        t_rest = float(grid[np.nonzero(moving)[0][-1]]) if moving.any() else 0.0
        period = self.p.trajectory_point_period_s
        n_more = int(np.ceil((t_rest - times[-1]) / period - 1e-9))
        if n_more > 0:
            times = np.concatenate([times, times[-1] + period * np.arange(1, n_more + 1)])
        k = np.minimum(np.round(times / TRACK_DT).astype(int), n - 1)
        pos = cq[k]
        # the JTC reaches the first point from the measured state: that segment, and what
        # follows, within the limits (slowed down when not)
        s_times, vel = self._within_limits(q_m, v_m, times, pos, cv[k])
        slow = float(s_times[0] / times[0])
        self.time_scales.append(slow)
        if slow > 1.0:
            self.first_point_slowed += 1
        points = [(float(t), pos[i].copy(), vel[i].copy()) for i, t in enumerate(s_times)]
        self.cmd_q[:] = c_q
        # The command is the same points reached from where the command was: the arm, which
        # reaches them from where it is, joins it at the first point; an arm held back
        # (blocked, pushed) falls behind it, and the tracking check sees that.
        self.desired = (
            now,
            np.concatenate([[0.0], s_times]),
            np.vstack([c_q, pos]),
            np.vstack([c_qd, vel]),
        )
        self.sent = sent_trajectory(now, q_m, s_times, pos)
        self.trajectories += 1
        return TrajectoryCommand(list(self.profile.joint_names), points, "chunk", slow), ""

    def _within_limits(self, start, v_start, times, pos, vel):
        """(times, velocities): the points with the tracked path's velocities (at rest at the
        last), slowed down until the JTC's interpolation from (start, v_start) stays within
        CHECK_SHARE of the limits over the first CHECKED_S (the velocity it starts with is the
        arm's, not asked for: only what goes beyond it counts). The JTC's cubic through exact
        samples of a path whose acceleration is within A stays within 5/3 A, so with
        COMMAND_SHARE * 5/3 < CHECK_SHARE the slow-down is for a measured state off the command."""
        vlim = np.maximum(CHECK_SHARE * self._vlim, np.abs(v_start))
        alim = CHECK_SHARE * self._alim
        P = np.vstack([start, pos])
        s = 1.0
        while True:
            t = np.concatenate([[0.0], times * s])
            V = np.vstack([v_start, vel / s])
            V[-1] = 0.0
            vp, ap = spline_peaks(t, P, V, CHECKED_S)
            if np.all(vp <= vlim) and np.all(ap <= alim):
                break
            if s * 1.25 > MAX_FIRST_SEGMENT_SLOWDOWN:
                j = int(np.argmax(np.maximum(vp / vlim, ap / alim)))
                raise FirstPointUnreachable(
                    "no trajectory from the measured state within the limits: it asks %s for "
                    "%.2f rad/s and %.1f rad/s^2 (limits %.2f, %.1f) even %.0fx slower; "
                    "stopping from the measured position and holding until ~/enable"
                    % (
                        self.profile.joint_names[j],
                        vp[j],
                        ap[j],
                        self._vlim[j],
                        self._alim[j],
                        s,
                    )
                )
            s *= 1.25
        self.first_point_velocity_ratio_max = max(
            self.first_point_velocity_ratio_max, float(np.max(vp / self._vlim))
        )
        self.first_point_acceleration_ratio_max = max(
            self.first_point_acceleration_ratio_max, float(np.max(ap / self._alim))
        )
        return t[1:], V[1:]

    def diagnostics(self) -> Dict[str, object]:
        d: Dict[str, object] = dict(self.queue.diagnostics())
        for k, v in self.interventions.items():
            d["trajectory_%s" % k] = v
        d["first_point_slowed"] = self.first_point_slowed
        d["first_point_velocity_ratio_max"] = round(self.first_point_velocity_ratio_max, 3)
        d["first_point_acceleration_ratio_max"] = round(self.first_point_acceleration_ratio_max, 3)
        d["first_point_deviation_rad"] = round(self.first_point_deviation_rad, 4)
        if self.time_scales:
            ts = np.asarray(self.time_scales)
            d["trajectory_time_scale_median"] = round(float(np.median(ts)), 3)
            d["trajectory_time_scale_max"] = round(float(ts.max()), 3)
        return d
