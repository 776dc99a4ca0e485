"""The action core's chunk queue use: RF chunks in, with their measured availability time, and
the real-time-chunking hand-over (``ChunkQueue``: cross-fade, late chunks dropped); out either
samples (forward_position) or one feasible JointTrajectory per new chunk (joint_trajectory),
which starts from what the controller is executing (``commanded``), never with a jump.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from clap_ros.control.chunking import ChunkQueue
from clap_ros.control.safety import make_feasible
from clap_ros.runtime.params import ActionParams


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
        # frame stamp of the newest accepted chunk until a command drawn from it goes out; then
        # frame -> first command (node clock) waits in frame_to_command for the node to read
        self.new_chunk_frame: Optional[float] = None
        self.frame_to_command: Optional[float] = None
        self.interventions: Dict[str, int] = {}
        # how much make_feasible slowed the recent trajectories down (1 = as the model planned)
        self.time_scales: Deque[float] = deque(maxlen=100)
        self.trajectories = 0
        self.last_delay_s = float("nan")

    def reset(self, now: float, q: np.ndarray, gripper: float) -> None:
        self.queue.reset(now, np.append(q, gripper).tolist())
        self.cmd_q[:] = q
        self.pending = False
        self.sent = None

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
        trajectory went out)."""
        if self.sent is None:
            return self.cmd_q.copy(), np.zeros(self.dof)
        return interpolate(self.sent, now, self.dof)

    def trajectory(self, now: float) -> Tuple[Optional[TrajectoryCommand], str]:
        """(the trajectory for the newest chunk, "") or (None, why it cannot be sent)."""
        p = self.p
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

    def diagnostics(self) -> Dict[str, object]:
        d: Dict[str, object] = dict(self.queue.diagnostics())
        for k, v in self.interventions.items():
            d["trajectory_%s" % k] = v
        if self.time_scales:
            ts = np.asarray(self.time_scales)
            d["trajectory_time_scale_median"] = round(float(np.median(ts)), 3)
            d["trajectory_time_scale_max"] = round(float(ts.max()), 3)
        return d
