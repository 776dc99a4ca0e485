"""The action core's chunk queue use: RF chunks in, with their measured availability time, and
the real-time-chunking hand-over (``ChunkQueue``: cross-fade, late chunks dropped); out either
samples (forward_position) or one feasible JointTrajectory per new chunk (joint_trajectory).

Where a trajectory starts. Given the measured state (``measured``: the action core passes it
unless ``interpolate_from_desired_state``), there, as ros2_control's JointTrajectoryController
does (it interpolates from the measured state to the first point, whatever the sender meant).
Two paths are kept:

* the commanded path (``desired``): the chunk reference joined smoothly from the command's own
  position and velocity (measured_start.blend_into), made feasible and kept within the limits
  left beside the correction below; the arm should follow it, and the tracking and deviation
  checks compare the measured state with it;
* what is sent: that path with the measured error (position and velocity) decaying over a blend,
  made feasible from the measured position, with knot velocities of the C2 spline that starts
  at the measured position and velocity (so the JTC's Hermite interpolation is that spline), and
  slowed down until the JTC's interpolation of its first CHECKED_S, first segment included, is
  within FIRST_SEGMENT_SHARE of the profile's velocity and acceleration limits (scaled by
  velocity_scale / acceleration_scale). Its first point is at least FIRST_POINT_MIN_S ahead.

When no slow-down brings it within the limits, ``FirstPointUnreachable`` says why: the core stops
from where the arm is instead of sending a jump (as it does, before asking for a trajectory,
when the arm is further than ``tracking_tolerance_rad`` from its recent commands: blocked or
pushed). Without a measured state: from what the controller is executing (``commanded``), never
with a jump from the last command.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from clap_ros.control.chunking import ChunkQueue
from clap_ros.control.safety import make_feasible
from clap_ros.runtime.measured_start import blend_into, blend_time, spline_peaks, spline_slopes
from clap_ros.runtime.params import ActionParams

# The first point is at least this far ahead: the JTC's first segment starts from a measured
# state that is a few ms newer than the one the trajectory was made from (transport), and the
# acceleration that difference asks for falls with the square of this time.
FIRST_POINT_MIN_S = 0.1
# What is sent stays within this share of the (scaled) velocity and acceleration limits: room
# for the measured state moving on between the joint state and the receipt.
FIRST_SEGMENT_SHARE = 0.8
# An error (command vs reference, measured vs command) decays within at least FIRST_POINT_MIN_S
# and at most this long, using at most this share of the acceleration limits.
BLEND_MAX_S = 1.0
BLEND_ACC_SHARE = 0.3
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
    JTC's cubic spline through points with velocities (held after the last point)."""
    t0, times, pos, vel = path
    t = min(max(now - t0, 0.0), float(times[-1]))
    k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
    T = float(times[k + 1] - times[k])
    if T <= 0.0 or t >= times[-1]:
        return pos[-1].copy() if t >= times[-1] else pos[k].copy(), np.zeros(pos.shape[1])
    u = (t - float(times[k])) / T
    q0, q1, v0, v1 = pos[k], pos[k + 1], vel[k] * T, vel[k + 1] * T
    h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
    h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
    q = h00 * q0 + h10 * v0 + h01 * q1 + h11 * v1
    d00, d10 = 6 * u**2 - 6 * u, 3 * u**2 - 4 * u + 1
    d01, d11 = -6 * u**2 + 6 * u, 3 * u**2 - 2 * u
    qd = (d00 * q0 + d10 * v0 + d01 * q1 + d11 * v1) / T
    return q, qd


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

        ``measured``: the arm's (position, velocity) now; the trajectory then starts from it
        (see the module docstring) and FirstPointUnreachable says when it cannot."""
        p = self.p
        pts = self.queue.trajectory_points(now, p.trajectory_horizon_s, p.trajectory_point_period_s)
        if measured is not None:
            try:
                return self._from_measured(now, measured, pts)
            except FirstPointUnreachable:
                raise
            except ValueError as e:
                return None, "trajectory not sent: %s" % e
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
        """The trajectory from the measured state (module docstring): the commanded path, the
        reference joined smoothly from where the command is, kept as ``desired``; what is sent
        joins that path from the measured state, within the limits where the JTC executes it."""
        p = self.p
        # the JTC reaches the first point from the measured state: not too soon
        pts = [x for x in pts if x[0] >= FIRST_POINT_MIN_S - 1e-9] or pts[-1:]
        times = np.array([x[0] for x in pts])
        Q = np.array([x[1] for x in pts])
        QD = np.array([x[2] for x in pts])
        budget = BLEND_ACC_SHARE * self._alim
        # the commanded path: from the command's position and velocity into the reference,
        # within what the limits leave beside the measured error's correction
        c_q, c_qd = self.commanded(now)
        r0, rd0, _ = self.queue.peek(now)
        e_c, ed_c = c_q - r0[: self.dof], c_qd - rd0[: self.dof]
        tb = blend_time(e_c, ed_c, budget, FIRST_POINT_MIN_S, BLEND_MAX_S)
        Qc, QDc = blend_into(times, Q, QD, e_c, ed_c, min(tb, float(times[-1])))
        f = make_feasible(
            self.profile, times.tolist(), Qc, QDc, margin=p.position_margin, start_positions=c_q
        )
        c_times, c_vel, slow_c = self._within_limits(
            c_q, c_qd, f.times, f.positions, FIRST_SEGMENT_SHARE - BLEND_ACC_SHARE, "command"
        )
        c_pos = np.vstack([c_q, f.positions])
        # what is sent: from the measured position and velocity into the commanded path
        q_m = np.asarray(measured[0], dtype=np.float64)
        v_m = np.asarray(measured[1], dtype=np.float64)
        e0, ed0 = q_m - c_q, v_m - c_qd
        self.first_point_deviation_rad = float(np.max(np.abs(e0)))
        tb = blend_time(e0, ed0, budget, FIRST_POINT_MIN_S, BLEND_MAX_S)
        Qs, QDs = blend_into(c_times[1:], f.positions, c_vel[1:], e0, ed0, min(tb, c_times[-1]))
        g = make_feasible(
            self.profile,
            c_times[1:].tolist(),
            Qs,
            QDs,
            margin=p.position_margin,
            start_positions=q_m,
        )
        s_times, s_vel, slow_s = self._within_limits(
            q_m, v_m, g.times, g.positions, FIRST_SEGMENT_SHARE, "measured state"
        )
        if slow_s > 1.0:
            self.first_point_slowed += 1
        for k in set(f.intervened) | set(g.intervened):
            self.interventions[k] = self.interventions.get(k, 0) + 1
        scale = float(f.time_scale * slow_c * g.time_scale * slow_s)
        self.time_scales.append(scale)
        points = [
            (float(t), g.positions[i].copy(), s_vel[i + 1].copy())
            for i, t in enumerate(s_times[1:])
        ]
        self.cmd_q[:] = c_q
        # The command runs at its own pace: a sent trajectory slowed for the measured state
        # (a blocked arm) falls behind it, and the deviation check sees that.
        self.desired = (now, c_times, c_pos, c_vel)
        self.sent = sent_trajectory(now, q_m, s_times[1:], g.positions)
        self.trajectories += 1
        return TrajectoryCommand(list(self.profile.joint_names), points, "chunk", scale), ""

    def _within_limits(self, start, v_start, times, positions, share, what):
        """(times from 0 with the start, knot velocities, slow-down): the C2 spline from
        (start, v_start) through ``positions``, slowed down until the JTC's interpolation of it
        stays within ``share`` of the limits over the first CHECKED_S (the velocity it starts
        with is the arm's or the command's, not asked for: only what goes beyond it counts)."""
        vlim = np.maximum(share * self._vlim, np.abs(v_start))
        alim = share * self._alim
        pos = np.vstack([start, positions])
        s = 1.0
        while True:
            t = np.concatenate([[0.0], np.asarray(times) * s])
            vel = spline_slopes(t, pos, v_start)
            vp, ap = spline_peaks(t, pos, vel, CHECKED_S)
            if np.all(vp <= vlim) and np.all(ap <= alim):
                break
            if s * 1.25 > MAX_FIRST_SEGMENT_SLOWDOWN:
                j = int(np.argmax(np.maximum(vp / vlim, ap / alim)))
                raise FirstPointUnreachable(
                    "no trajectory from the %s within the limits: it asks %s for %.2f rad/s "
                    "and %.1f rad/s^2 (limits %.2f, %.1f) even %.0fx slower; stopping from the "
                    "measured position and holding until ~/enable"
                    % (
                        what,
                        self.profile.joint_names[j],
                        vp[j],
                        ap[j],
                        self._vlim[j],
                        self._alim[j],
                        s,
                    )
                )
            s *= 1.25
        if what != "command":
            self.first_point_velocity_ratio_max = max(
                self.first_point_velocity_ratio_max, float(np.max(vp / self._vlim))
            )
            self.first_point_acceleration_ratio_max = max(
                self.first_point_acceleration_ratio_max, float(np.max(ap / self._alim))
            )
        return t, vel, s

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
