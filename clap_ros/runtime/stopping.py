"""The action core's stops: a jerk-limited ``StopProfile`` from the commanded state (stale
input, disable, ~/stop, model fault), or, when tracking is lost, a slow glide from the command to
where the arm really is (stopping along the command would chase a pose the arm never reached, or
push on whatever it hit). In joint_trajectory mode the whole stop is one trajectory; in
forward_position mode ``target(now)`` is streamed through the safety filter."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from clap_ros.control.safety import StopProfile, make_feasible
from clap_ros.runtime.chunk_stream import TrajectoryCommand, sent_trajectory
from clap_ros.runtime.params import ActionParams


class StopPlanner:
    def __init__(self, profile, params: ActionParams):
        self.profile = profile
        self.p = params
        self.dof = profile.dof
        self.profile_stop: Optional[StopProfile] = None
        self.glide: Optional[Tuple[float, np.ndarray, np.ndarray]] = None
        self.deadline = math.inf
        self.at_measured = False  # tracking lost: stop where the arm really is

    @property
    def active(self) -> bool:
        return self.profile_stop is not None or self.glide is not None

    def clear(self) -> None:
        self.profile_stop = None
        self.glide = None

    def reset(self) -> None:
        self.clear()
        self.at_measured = False

    def start_stop(
        self,
        now: float,
        q: np.ndarray,
        qd: np.ndarray,
        trajectory: bool,
        first_point_s: float = 0.0,
        scale: float = 1.0,
    ) -> Optional[TrajectoryCommand]:
        """Begin a stop from (q, qd); the stop trajectory when ``trajectory`` (JTC mode).

        From the measured state (the JTC's start): ``first_point_s`` keeps the first point at
        least that far ahead (an older measurement then asks for less), ``scale`` the share of
        the acceleration and jerk limits the stop uses (the JTC's spline through its points
        rounds the profile's corners)."""
        # The stop starts from zero acceleration: StopProfile stretches its duration when a
        # large initial acceleration opposes the velocity (it refuses to reverse) and can then
        # travel far to a position limit. Dropping qdd is one jerk-limited step for the filter
        # (forward mode) and irrelevant to the JTC, which gets positions + velocities only.
        sp = StopProfile(self.profile, q, qd, None, now, margin=self.p.position_margin, scale=scale)
        self.profile_stop = sp
        self.deadline = sp.end_time + 1.0
        if not trajectory:
            return None
        period = self.p.trajectory_point_period_s
        k0 = max(1, int(math.ceil(first_point_s / period - 1e-9)))
        n = max(k0, int(math.ceil(sp.duration / period)))
        points = []
        for k in range(k0, n + 1):
            tf = k * period
            sq, sqd, _ = sp.sample(now + tf)
            points.append((tf, sq, sqd if k < n else np.zeros(self.dof)))
        return TrajectoryCommand(list(self.profile.joint_names), points, "stop")

    def start_glide(
        self, now: float, q_from: np.ndarray, q_meas: np.ndarray, trajectory: bool
    ) -> Optional[TrajectoryCommand]:
        """Begin a glide from the command ``q_from`` to the measured pose, smoothly and slowly;
        the command stream stays continuous, which position interfaces require."""
        p = self.p
        lim = self.profile.limits
        q_to = np.clip(q_meas, lim.lower + p.position_margin, lim.upper - p.position_margin)
        # smoothstep at a quarter of the velocity limits at its peak (1.5x the mean speed)
        dur = max(0.2, float(np.max(1.5 * np.abs(q_to - q_from) / (0.25 * lim.velocity))))
        period = p.trajectory_point_period_s
        n = max(2, int(math.ceil(dur / period)))
        times = period * np.arange(1, n + 1)
        u = times / times[-1]
        pos = q_from + np.outer(3 * u**2 - 2 * u**3, q_to - q_from)
        f = make_feasible(
            self.profile,
            times.tolist(),
            pos,
            None,
            margin=p.position_margin,
            start_positions=q_from,
        )
        self.glide = sent_trajectory(now, q_from, f.times, f.positions)
        self.deadline = now + f.times[-1] + 1.0
        if not trajectory:
            return None
        vel = f.velocities.copy()
        vel[-1] = 0.0
        return TrajectoryCommand(
            list(self.profile.joint_names),
            [(float(t), f.positions[i].copy(), vel[i].copy()) for i, t in enumerate(f.times)],
            "stop",
            f.time_scale,
        )

    def target(self, now: float) -> Tuple[np.ndarray, bool]:
        """(position to stream at ``now``, whether the planned motion has ended)."""
        if self.glide is not None:
            t0, times, pos = self.glide
            target = np.array([np.interp(now - t0, times, pos[:, j]) for j in range(self.dof)])
            return target, now - t0 >= times[-1]
        assert self.profile_stop is not None
        sq, _, _ = self.profile_stop.sample(now)
        return sq, self.profile_stop.done(now)

    def ended(self, now: float) -> bool:
        """Whether the planned motion has ended (joint_trajectory mode)."""
        if self.glide is not None:
            t0, times, _ = self.glide
            return now - t0 >= times[-1]
        assert self.profile_stop is not None
        return self.profile_stop.done(now)
