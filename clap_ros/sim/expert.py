"""Scripted experts: task waypoints -> IK (MuJoCo Jacobians, damped least squares) -> a smooth,
open-loop joint-space plan from the reset state.

Each plan segment is a C2 cubic spline through IK solutions (densely sampled along straight TCP
lines where the task asks for one), timed by a quintic (minimum-jerk) profile, so position,
velocity and acceleration are continuous and zero at every waypoint. Segment durations are the
shortest that keep velocity, acceleration and jerk within ``LIMIT_MARGIN`` of the profile's limits.
The plan depends only on (robot, task, seed): another process rebuilds the same plan from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from clap_ros.sim.tasks import Waypoint
from clap_ros.sim.world import SimWorld

LIMIT_MARGIN = 0.5  # fraction of the profile's velocity/acceleration/jerk limits a plan uses
LINE_STEP = 0.015  # m between IK samples along a straight TCP line
JOINT_LIMIT_MARGIN = 0.05  # rad kept clear of every joint limit by IK
MIN_SEGMENT = 0.4  # s, shortest arm move


class ExpertError(RuntimeError):
    """The expert could not find a plan (IK did not converge)."""


def tcp_rotation(yaw: float) -> np.ndarray:
    """World rotation of a TCP pointing straight down whose x axis has heading ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])


# --- time scaling and splines -----------------------------------------------------------------


def _minjerk(tau: np.ndarray):
    """s, ds/dtau, d2s/dtau2, d3s/dtau3 of the quintic 10t^3 - 15t^4 + 6t^5."""
    t = np.clip(tau, 0.0, 1.0)
    s = t**3 * (10 - 15 * t + 6 * t * t)
    ds = 30 * t * t * (1 - t) ** 2
    dds = 60 * t * (1 - t) * (1 - 2 * t)
    ddds = 60 * (1 - 6 * t + 6 * t * t)
    return s, ds, dds, ddds


class _Spline:
    """Natural cubic spline through knots at uniform s in [0, 1] (vector valued)."""

    def __init__(self, knots: np.ndarray):
        self.y = np.asarray(knots, dtype=np.float64)
        k = len(self.y)
        self.h = 1.0 / (k - 1)
        M = np.zeros_like(self.y)
        if k > 2:
            A = np.zeros((k - 2, k - 2))
            idx = np.arange(k - 2)
            A[idx, idx] = 4.0
            A[idx[1:], idx[:-1]] = 1.0
            A[idx[:-1], idx[1:]] = 1.0
            rhs = 6.0 / self.h**2 * (self.y[2:] - 2 * self.y[1:-1] + self.y[:-2])
            M[1:-1] = np.linalg.solve(A, rhs)
        self.M = M

    def __call__(self, s: float):
        """Value, first, second and third derivative with respect to s."""
        k = len(self.y)
        j = min(int(s / self.h), k - 2) if s > 0 else 0
        h, y, M = self.h, self.y, self.M
        a = (j + 1) * h - s
        b = s - j * h
        val = (
            (M[j] * a**3 + M[j + 1] * b**3) / (6 * h)
            + (y[j] / h - M[j] * h / 6) * a
            + (y[j + 1] / h - M[j + 1] * h / 6) * b
        )
        d1 = (
            (-M[j] * a * a + M[j + 1] * b * b) / (2 * h)
            - (y[j] / h - M[j] * h / 6)
            + (y[j + 1] / h - M[j + 1] * h / 6)
        )
        d2 = (M[j] * a + M[j + 1] * b) / h
        d3 = (M[j + 1] - M[j]) / h
        return val, d1, d2, d3


@dataclass
class Segment:
    start: float
    duration: float
    spline: _Spline
    gripper_from: float
    gripper_to: float
    label: str = ""

    def sample(self, t: float):
        tau = (t - self.start) / self.duration
        s, ds, _, _ = _minjerk(np.float64(tau))
        q, dq, _, _ = self.spline(float(s))
        qd = dq * ds / self.duration
        g = self.gripper_from + (self.gripper_to - self.gripper_from) * float(s)
        return q, qd, g


@dataclass
class Plan:
    """An open-loop joint-space plan: ``sample(t) -> (q, qd, gripper opening)``."""

    joint_names: List[str]
    segments: List[Segment]
    robot: str = ""
    task: str = ""
    seed: int = 0
    waypoints: List[Waypoint] = field(default_factory=list)

    @property
    def duration(self) -> float:
        last = self.segments[-1]
        return last.start + last.duration

    def sample(self, t: float):
        t = min(max(float(t), 0.0), self.duration)
        i = 0
        while (
            i < len(self.segments) - 1 and t >= self.segments[i].start + self.segments[i].duration
        ):
            i += 1
        return self.segments[i].sample(t)

    def sample_many(self, times: Sequence[float]):
        """Arrays (T x n, T x n, T) for many times at once."""
        out = [self.sample(t) for t in times]
        return (
            np.array([o[0] for o in out]),
            np.array([o[1] for o in out]),
            np.array([o[2] for o in out]),
        )


# --- IK ---------------------------------------------------------------------------------------


class ArmIK:
    """Damped-least-squares IK on the world's model, on a private MjData (world state untouched)."""

    def __init__(self, world: SimWorld):
        import mujoco

        self._mj = mujoco
        self.model = world.model
        self.data = mujoco.MjData(world.model)
        self.qadr = world._arm_qadr
        self.dadr = world._arm_dadr
        self.site = world._tcp
        prof = world.profile
        self.lower = prof.limits.lower + JOINT_LIMIT_MARGIN
        self.upper = prof.limits.upper - JOINT_LIMIT_MARGIN
        self.rest = prof.home.copy()
        self.n = prof.dof
        self._jp = np.zeros((3, self.model.nv))
        self._jr = np.zeros((3, self.model.nv))

    def fk(self, q: np.ndarray):
        self.data.qpos[self.qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        return (
            self.data.site_xpos[self.site].copy(),
            self.data.site_xmat[self.site].reshape(3, 3).copy(),
        )

    def solve(
        self,
        pos: np.ndarray,
        R: np.ndarray,
        q0: np.ndarray,
        iters: int = 300,
        tol_pos: float = 1e-4,
        tol_rot: float = 1e-3,
    ) -> np.ndarray:
        mj, m, d = self._mj, self.model, self.data
        q = np.clip(np.asarray(q0, dtype=np.float64).copy(), self.lower, self.upper)
        for _ in range(iters):
            p, Rc = self.fk(q)
            ep = pos - p
            er = 0.5 * (
                np.cross(Rc[:, 0], R[:, 0])
                + np.cross(Rc[:, 1], R[:, 1])
                + np.cross(Rc[:, 2], R[:, 2])
            )
            if np.linalg.norm(ep) < tol_pos and np.linalg.norm(er) < tol_rot:
                return q
            mj.mj_comPos(m, d)
            mj.mj_jacSite(m, d, self._jp, self._jr, self.site)
            J = np.vstack([self._jp[:, self.dadr], self._jr[:, self.dadr]])
            e = np.concatenate([ep, er])
            # Damping only where needed: large steps near singularities, exact steps near the goal.
            lam = min(0.05, 2.0 * float(np.linalg.norm(e)))
            JJt = J @ J.T + lam * lam * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, e)
            if self.n > 6:
                # Redundant arm: drift towards the home posture in the Jacobian's null space.
                Jpinv = J.T @ np.linalg.inv(JJt)
                dq += (np.eye(self.n) - Jpinv @ J) @ (0.2 * (self.rest - q))
            step = np.linalg.norm(dq)
            if step > 0.2:
                dq *= 0.2 / step
            q = np.clip(q + dq, self.lower, self.upper)
        p, Rc = self.fk(q)
        raise ExpertError(
            "IK did not converge for TCP %s (position error %.4f m)"
            % (np.round(pos, 3), np.linalg.norm(pos - p))
        )


# --- experts ----------------------------------------------------------------------------------


def _segment_duration(
    spline: _Spline, vel: np.ndarray, acc: np.ndarray, jerk: np.ndarray, minimum: float
) -> float:
    """Shortest duration keeping |qd|, |qdd|, |qddd| under LIMIT_MARGIN of the limits."""
    taus = np.linspace(0.0, 1.0, 101)
    v1 = a1 = j1 = np.zeros_like(vel)
    for tau in taus:
        s, ds, dds, ddds = _minjerk(tau)
        _, q1, q2, q3 = spline(float(s))
        # Derivatives for a unit duration; a duration T divides them by T, T^2, T^3.
        v1 = np.maximum(v1, np.abs(q1 * ds))
        a1 = np.maximum(a1, np.abs(q2 * ds * ds + q1 * dds))
        j1 = np.maximum(j1, np.abs(q3 * ds**3 + 3 * q2 * ds * dds + q1 * ddds))
    m = LIMIT_MARGIN
    T = max(
        minimum,
        float(np.max(v1 / (m * vel))),
        float(np.sqrt(np.max(a1 / (m * acc)))),
        float(np.cbrt(np.max(j1 / (m * jerk)))),
    )
    return T


class ArmExpert:
    """Scripted expert for an arm world: plans from the world's layout and the home posture."""

    def __init__(self, world: SimWorld):
        if world.profile is None:
            raise ValueError("ArmExpert needs an arm; use HandExpert for the floating hand")
        self.world = world
        self.profile = world.profile
        self.ik = ArmIK(world)
        self.waypoints = world.task.waypoints(world.layout, world.home_yaw())

    def plan(self) -> Plan:
        return self.plan_from(self.profile.home, 1.0)

    def plan_from(self, q_start, gripper: float, first_waypoint: int = 0) -> Plan:
        """The plan from joint state ``q_start`` with gripper opening ``gripper`` through the
        waypoints from ``first_waypoint`` on: the expert replanning from where the arm is (a
        DART / DAgger label for a state off its own path)."""
        prof = self.profile
        lim = prof.limits
        q = np.asarray(q_start, dtype=np.float64).copy()
        pos, R = self.ik.fk(q)
        # the TCP's yaw now (it points down along the expert's paths), where a linear segment's
        # interpolation starts; the home plan keeps the world's home yaw exactly
        at_home = bool(np.array_equal(q, prof.home))
        yaw = self.world.home_yaw() if at_home else math.atan2(R[0, 1], R[0, 0])
        grip = float(gripper)
        segments: List[Segment] = []
        t = 0.0
        for wp in self.waypoints[first_waypoint:]:
            target = np.asarray(wp.pos, dtype=np.float64)
            if wp.gripper_only:
                knots = np.array([q, q])
            elif wp.linear:
                n = max(2, int(math.ceil(np.linalg.norm(target - pos) / LINE_STEP)) + 1)
                knots = [q]
                qk = q
                for k in range(1, n):
                    a = k / (n - 1)
                    qk = self.ik.solve(
                        pos + a * (target - pos), tcp_rotation(yaw + a * (wp.yaw - yaw)), qk
                    )
                    knots.append(qk)
                knots = np.array(knots)
            else:
                knots = np.array([q, self.ik.solve(target, tcp_rotation(wp.yaw), q)])
            spline = _Spline(knots)
            minimum = max(wp.min_duration, 0.0 if wp.gripper_only else MIN_SEGMENT)
            T = _segment_duration(spline, lim.velocity, lim.acceleration, lim.jerk, minimum)
            segments.append(Segment(t, T, spline, grip, wp.gripper, wp.label))
            t += T
            q = knots[-1]
            pos, yaw, grip = target, wp.yaw, wp.gripper
        return Plan(
            list(prof.joint_names),
            segments,
            robot=prof.name,
            task=self.world.task_name,
            seed=self.world.seed,
            waypoints=list(self.waypoints),
        )


@dataclass
class TcpPlan:
    """Floating-hand plan: ``sample(t) -> (tcp position, yaw, gripper opening)``."""

    starts: np.ndarray
    durations: np.ndarray
    poses: np.ndarray  # (n+1) x 4: x, y, z, yaw at each waypoint
    grippers: np.ndarray  # n+1

    @property
    def duration(self) -> float:
        return float(self.starts[-1] + self.durations[-1])

    def sample(self, t: float):
        t = min(max(float(t), 0.0), self.duration)
        i = int(min(np.searchsorted(self.starts, t, side="right") - 1, len(self.durations) - 1))
        s = float(_minjerk(np.float64((t - self.starts[i]) / self.durations[i]))[0])
        p = self.poses[i] + s * (self.poses[i + 1] - self.poses[i])
        g = self.grippers[i] + s * (self.grippers[i + 1] - self.grippers[i])
        return p[:3], float(p[3]), float(g)


class HandExpert:
    """Expert for the floating hand: the same task waypoints, interpolated directly in TCP space
    with human-like speeds (no arm, no IK)."""

    speed = 0.35  # m/s peak-ish TCP speed
    turn_rate = 2.0  # rad/s

    def __init__(self, world: SimWorld, speed_scale: float = 1.0):
        if not speed_scale > 0:
            raise ValueError("speed_scale must be positive, got %r" % speed_scale)
        self.world = world
        self.speed_scale = float(speed_scale)
        self.waypoints = world.task.waypoints(world.layout, world.home_yaw())

    def plan(self) -> TcpPlan:
        home = self.world.home_tcp_pose()[:3, 3]
        poses = [np.array([*home, self.world.home_yaw()])]
        grippers = [1.0]
        durations = []
        for wp in self.waypoints:
            p = np.array([*wp.pos, wp.yaw])
            d = np.linalg.norm(p[:3] - poses[-1][:3])
            T = (
                max(
                    wp.min_duration * 0.8,
                    1.875 * d / self.speed,
                    1.875 * abs(p[3] - poses[-1][3]) / self.turn_rate,
                    0.3,
                )
                / self.speed_scale
            )
            poses.append(p)
            grippers.append(wp.gripper)
            durations.append(T)
        durations = np.array(durations)
        starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        return TcpPlan(starts, durations, np.array(poses), np.array(grippers))


def make_expert(world: SimWorld):
    """The scripted expert for the world's current layout (arm or floating hand)."""
    return ArmExpert(world) if world.profile is not None else HandExpert(world)


def run_plan(
    world: SimWorld,
    plan,
    control_dt: float = 0.01,
    settle: float = 0.6,
    on_step: Optional[Callable[[SimWorld, float], None]] = None,
) -> bool:
    """Execute a plan in the world directly (no ROS) from its current state; return success.

    Targets are sampled every ``control_dt`` s of sim time and held in between; ``settle`` s of
    holding the final target follow the plan. ``on_step(world, t)`` is called after each control
    tick (t = plan time of the command just applied), e.g. to render or record.
    """
    n_sub = max(1, int(round(control_dt / world.timestep)))
    dt = n_sub * world.timestep
    ticks = int(math.ceil((plan.duration + settle) / dt))
    arm = world.profile is not None
    for k in range(ticks + 1):
        t = k * dt
        if arm:
            q, qd, g = plan.sample(t)
            world.set_arm_target(q, qd if t < plan.duration else np.zeros_like(qd))
        else:
            pos, yaw, g = plan.sample(t)
            world.set_tcp_target(pos, yaw)
        world.set_gripper(g)
        world.step(n_sub)
        if on_step is not None:
            on_step(world, t)
    return world.success()


# --- a feedback expert: the next chunk from any state ------------------------------------------

FIELD_GAIN = 3.0  # 1/s: joint-space velocity per rad of error to the goal
FIELD_SPEED = 0.3  # share of each joint's velocity limit the field moves at, at most


def field_chunk(
    q,
    q_goal,
    velocity_limits,
    steps: int,
    dt: float,
    gain: float = FIELD_GAIN,
    speed: float = FIELD_SPEED,
    substeps: int = 10,
) -> np.ndarray:
    """``steps`` joint targets every ``dt`` from ``q`` towards ``q_goal`` along the straight
    joint-space line, at ``gain`` x error, capped so that no joint exceeds ``speed`` of its
    limit (step 0 is ``q``). A function of the state alone: a policy that only sees the state
    can imitate it exactly, and executing the first part of each chunk again and again still
    progresses; a time-indexed min-jerk plan from rest labels the start pose "barely move"
    (docs/LADDER.md has the closed-loop comparison)."""
    q = np.array(q, dtype=np.float64).reshape(-1)
    goal = np.asarray(q_goal, dtype=np.float64).reshape(-1)
    vmax = np.asarray(velocity_limits, dtype=np.float64) * speed
    h = dt / substeps
    out = np.empty((steps, q.shape[0]))
    for i in range(steps):
        out[i] = q
        for _ in range(substeps):
            v = gain * (goal - q)
            over = float(np.max(np.abs(v) / vmax))
            if over > 1.0:
                v /= over  # keep the direction, cap the speed
            q = q + v * h
    return out


# --- streaming a plan to a driver ---------------------------------------------------------------

EXPERT_COMMAND_MODES = ("joint_trajectory", "forward_position")


@dataclass(frozen=True)
class ExpertStreamConfig:
    """How a plan is streamed to a driver, the way a policy would send it (expert_node's
    parameter defaults; the direct evaluator streams with the same)."""

    command_mode: str = "joint_trajectory"
    chunk_period_s: float = 0.1  # time between trajectory chunks
    chunk_horizon_s: float = 1.0  # time covered by one chunk
    point_period_s: float = 0.1  # spacing of points inside a chunk
    command_rate_hz: float = 100.0  # forward_position stream rate

    @property
    def period_s(self) -> float:
        """The streaming timer's period."""
        if self.command_mode == "joint_trajectory":
            return self.chunk_period_s
        return 1.0 / self.command_rate_hz


class ExpertStreamer:
    """The commands of one streaming tick at plan time ``tau``: a JointTrajectory chunk (stamp 0,
    start on receipt; every chunk replaces the last) or a forward-position command, then the
    gripper opening. Commands are ("trajectory", (joint_names, point tuples)), ("forward", q)
    and ("gripper", [opening]) in the driver core's terms (SimDriverCore.command)."""

    def __init__(self, plan: Plan, config: ExpertStreamConfig = ExpertStreamConfig()):
        from clap_ros.control.trajectory import trajectory_chunk

        if config.command_mode not in EXPERT_COMMAND_MODES:
            raise ValueError(
                "command_mode must be one of %s, not %r"
                % (EXPERT_COMMAND_MODES, config.command_mode)
            )
        if config.chunk_horizon_s < config.chunk_period_s:
            raise ValueError(
                "chunk_horizon_s (%g) must be >= chunk_period_s (%g), or the arm "
                "would stop between chunks" % (config.chunk_horizon_s, config.chunk_period_s)
            )
        self._chunk = trajectory_chunk
        self.plan = plan
        self.config = config

    def done(self, tau: float) -> bool:
        return tau >= self.plan.duration

    def commands(self, tau: float) -> list:
        cfg = self.config
        t = min(tau, self.plan.duration)
        q, _, grip = self.plan.sample(t)
        if cfg.command_mode == "joint_trajectory":
            points = self._chunk(self.plan, tau, cfg.chunk_horizon_s, cfg.point_period_s)
            arm = ("trajectory", (list(self.plan.joint_names), points))
        else:
            arm = ("forward", [float(x) for x in q])
        return [arm, ("gripper", [float(min(max(grip, 0.0), 1.0))])]
