"""The action node's controller in plain Python (no rclpy): CLAP-RF chunks in, safe commands out.

``ActionController`` joins the pieces of ``clap_ros.control`` and the inference runtime:

* inputs (``on_latent``, ``on_plan_tokens``, ``on_plan``, ``on_joint_state``) are stored and fed to
  the ``Watchdog`` with their stamps (the latent and plan carry the source camera frame's stamp);
* ``infer_once`` (the node's worker thread) runs ``ClapRuntime.act`` on the newest latent, the
  plan tokens paired with the newest plan and the measured state, turns the chunk into joint
  targets, stamps step i at ``t_frame + i * chunk_dt`` and hands it to the ``ChunkQueue`` with the
  time it actually became available (the inference delay is measured, never assumed). The
  expensive ``prepare`` runs outside the lock, the cheap ``commit`` under it;
* ``tick(now)`` (the command loop) advances the HOLD / RUN / STOPPING state machine and returns
  what to send: in ``forward_position`` mode one position command per tick, sampled from the
  queue and passed through the ``SafetyFilter``; in ``joint_trajectory`` mode one trajectory per
  new chunk, made feasible (``make_feasible``) and valid for the JointTrajectoryController, plus a
  smooth-stop trajectory when the watchdog stops the arm. Gripper openings go out at
  ``gripper_period_s``.

Safety decisions, and why:

* The arm holds still (nothing is commanded) until ``~/enable``, fresh joint_states, a fresh
  latent and a plan all exist; leaving HOLD restarts the queue and the filter from the measured
  position, so the first command equals it.
* Any blocker while running (stale input, disable, ``~/stop``, a model output with NaN/Inf, joint
  names that do not match the profile) gives a jerk-limited ``StopProfile`` from the commanded
  state, then HOLD. A stale input that becomes fresh again resumes by itself (still enabled); a
  model fault and ``~/stop`` need a new ``~/enable``, since a model that produced NaN once is not
  trusted silently again.
* ``tick`` never waits on inference: the lock only guards the queue/filter state, and its holders
  (``commit`` and ``tick``) run in microseconds. Events to log are queued (``events``) and logged
  by the node outside the command loop.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros.control.chunking import ChunkQueue
from clap_ros.control.safety import SafetyFilter, StopProfile, make_feasible
from clap_ros.control.watchdog import State, Watchdog
from clap_ros.nodes.clap_logic import state_from_joint_state
from clap_ros.robots import RobotProfile

COMMAND_MODES = ("joint_trajectory", "forward_position")
# Inputs the action node watches. The latent carries the camera frame's stamp, so its age is
# the camera's age plus the encoder's latency: one threshold covers both.
WATCHED_INPUTS = ("latent", "plan", "joint_states")
# The tracking comparison runs at most at 100 Hz: a fault needs tracking_persist_s anyway.
TRACKING_CHECK_PERIOD_S = 0.01


@dataclass
class ActionConfig:
    """Everything the controller needs besides the profile and the runtime (typed node params)."""

    command_mode: str = "joint_trajectory"
    command_rate_hz: float = 500.0          # forward_position stream rate
    supervision_rate_hz: float = 100.0      # tick rate in joint_trajectory mode
    thresholds: Dict[str, float] = field(default_factory=lambda: {
        "latent": 0.5, "plan": 1.0, "joint_states": 0.2})
    margin: float = 0.02                    # rad inside the position limits
    velocity_scale: float = 1.0
    acceleration_scale: float = 1.0
    jerk_scale: float = 1.0
    blend_window_s: float = 0.2
    max_delay_s: float = 0.5                # chunk older than this when ready: dropped
    trajectory_horizon_s: float = 2.0       # look-ahead per JointTrajectory
    trajectory_period_s: float = 0.05       # spacing of trajectory points
    gripper_period_s: float = 0.05          # gripper command period while running
    # Tracking check: stop when a measured joint is further than tracking_tolerance_rad from
    # every command of the last tracking_lag_s (before its joint_states stamp) for longer than
    # tracking_persist_s.
    tracking_tolerance_rad: float = 0.1
    tracking_lag_s: float = 0.1             # how far behind its command a healthy driver may be
    tracking_persist_s: float = 0.1
    seed: int = 0                           # RF noise generator seed

    def validate(self) -> None:
        if self.command_mode not in COMMAND_MODES:
            raise ValueError("command_mode '%s' must be one of %s"
                             % (self.command_mode, ", ".join(COMMAND_MODES)))
        for name in ("command_rate_hz", "supervision_rate_hz", "blend_window_s", "max_delay_s",
                     "trajectory_horizon_s", "trajectory_period_s", "gripper_period_s",
                     "tracking_tolerance_rad"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError("%s must be > 0, got %r" % (name, v))
        for name in ("tracking_lag_s", "tracking_persist_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError("%s must be >= 0, got %r" % (name, v))
        if self.trajectory_horizon_s < self.trajectory_period_s:
            raise ValueError("trajectory_horizon_s must be >= trajectory_period_s")
        if set(self.thresholds) != set(WATCHED_INPUTS):
            raise ValueError("thresholds must name exactly %s" % (WATCHED_INPUTS,))

    @property
    def tick_period_s(self) -> float:
        rate = (self.command_rate_hz if self.command_mode == "forward_position"
                else self.supervision_rate_hz)
        return 1.0 / rate


@dataclass
class TrajectoryCommand:
    """One JointTrajectory: profile joint names, points (t_from_start, q, qd), header stamp 0."""

    joint_names: List[str]
    points: List[Tuple[float, np.ndarray, np.ndarray]]
    kind: str                               # "chunk" or "stop"
    time_scale: float = 1.0


@dataclass
class TickOutput:
    state: State
    arm: Optional[np.ndarray] = None        # forward_position command (profile order); a view
    gripper: Optional[float] = None         # opening 0..1 to send now
    trajectory: Optional[TrajectoryCommand] = None


@dataclass
class InferenceJob:
    latent: np.ndarray
    stamp: float
    tokens: np.ndarray
    state: np.ndarray


class ActionController:
    """See the module docstring. ``runtime`` is a ``ClapRuntime`` (or anything with its
    ``bundle``, ``act``, ``joint_targets`` and ``latency``). Times are seconds on the node's clock
    (ROS time, or sim time with use_sim_time); ``perf`` is a wall clock for latency figures."""

    def __init__(self, profile: RobotProfile, runtime, config: Optional[ActionConfig] = None,
                 perf=time.perf_counter):
        self.cfg = config or ActionConfig()
        self.cfg.validate()
        self.profile = profile
        self.runtime = runtime
        b = runtime.bundle
        dof = profile.dof
        if list(b.joint_names) != list(profile.joint_names):
            raise ValueError("model bundle joints %s do not match robot profile '%s' joints %s"
                             % (list(b.joint_names), profile.name, list(profile.joint_names)))
        if b.action_dim != dof + 1 or b.state_dim != dof + 1:
            raise ValueError("model bundle action/state dims (%d, %d) must be the %d arm joints "
                             "+ gripper" % (b.action_dim, b.state_dim, dof))
        self.dof = dof
        manifest = getattr(b, "manifest", None) or {}
        self.chunk_dt = float(manifest.get("chunk_dt_s") or 1.0 / float(b.control_rate_hz))
        self.perf = perf
        self.watchdog = Watchdog(self.cfg.thresholds)
        dt = self.cfg.tick_period_s
        self.filter = SafetyFilter(profile, margin=self.cfg.margin, dt=dt,
                                   velocity_scale=self.cfg.velocity_scale,
                                   acceleration_scale=self.cfg.acceleration_scale,
                                   jerk_scale=self.cfg.jerk_scale,
                                   tau=max(0.04, 2.0 * dt))
        self.queue = ChunkQueue(profile, dim=dof + 1, blend_window=self.cfg.blend_window_s,
                                max_delay=self.cfg.max_delay_s, margin=self.cfg.margin)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.lock = threading.Lock()          # queue, filter, stop profile, state handling
        self._inputs = threading.Lock()       # latest inputs (callbacks vs worker)
        self.fresh = threading.Condition(self._inputs)
        # latest inputs
        self._latent: Optional[np.ndarray] = None
        self._latent_stamp = -math.inf
        self._latent_seq = 0
        self._done_seq = 0
        self._pending_tokens: Optional[np.ndarray] = None
        self._tokens: Optional[np.ndarray] = None
        self._q_meas: Optional[np.ndarray] = None
        self._q_meas_stamp = -math.inf
        # Gripper opening for the model's state: measured when joint_states carries the finger
        # joints; otherwise the last opening this node commanded (open before any).
        self._gripper_meas: float = 1.0
        self._gripper_measured = False
        self.joint_error: str = ""
        # command state
        self._stop: Optional[StopProfile] = None
        self._stop_deadline = math.inf
        self._cmd_q = np.zeros(dof)           # last arm command sent (forward) / planned
        self._last_gripper_t = -math.inf
        self._gripper_cmd: Optional[float] = None
        self._traj_pending = False
        self._ran = False                     # has the arm been commanded since the last HOLD
        self._last_state = State.HOLD         # the state the previous tick acted on
        # joint_trajectory mode: the last trajectory sent, as (send time, times, positions) with
        # its start point at t=0, so the tracking check knows what the controller is executing
        self._sent: Optional[Tuple[float, np.ndarray, np.ndarray]] = None
        self._tracking_since: Optional[float] = None
        self._checked_stamp = -math.inf       # joint_states stamp and time of the last check
        self._checked_at = -math.inf
        # ring buffer of (time, commanded position) long enough for the tracking window
        n = int(math.ceil((self.cfg.tracking_lag_s + self.cfg.thresholds["joint_states"] + 0.1)
                          / self.cfg.tick_period_s)) + 8
        self._hist_t = np.full(n, -math.inf)
        self._hist_q = np.zeros((n, dof))
        self._hist_i = 0
        self._stop_at_measured = False        # tracking lost: stop where the arm really is
        self._glide: Optional[Tuple[float, np.ndarray, np.ndarray]] = None  # command -> arm
        self.tracking_error = 0.0             # max |commanded - measured| at the last check, rad
        self.tracking_faults = 0
        self.events: Deque[Tuple[str, str]] = deque(maxlen=256)
        # counters for diagnostics
        self.ticks = 0
        self.commands = 0
        self.trajectories = 0
        self.inferences = 0
        self.inference_errors = 0
        self.last_inference_s = math.nan
        self.last_delay_s = math.nan
        # frame stamp of the newest accepted chunk until a command drawn from it goes out; then
        # frame -> first command (node clock) waits in _frame_to_command for the node to read
        self._new_chunk_frame: Optional[float] = None
        self._frame_to_command: Optional[float] = None
        self.trajectory_interventions: Dict[str, int] = {}
        # how much make_feasible slowed the recent trajectories down (1 = as the model planned)
        self.time_scales: Deque[float] = deque(maxlen=100)
        self.safety_rejections = 0

    # --- inputs --------------------------------------------------------------------------------
    def on_joint_state(self, names: Sequence[str], positions: Sequence[float], stamp: float,
                       now: float) -> bool:
        """A JointState, indexed by name via the profile. Wrong names: not fed to the watchdog
        (the arm holds) and ``joint_error`` says why. Returns True when accepted."""
        try:
            state, has_gripper = state_from_joint_state(self.profile, names, positions)
        except ValueError as e:              # ProfileError / InputError: names the joints
            self._joint_problem(str(e))
            return False
        q = state[:self.dof]
        grip = float(state[self.dof]) if has_gripper else None
        with self._inputs:
            self._q_meas = q
            self._q_meas_stamp = float(stamp)
            if grip is not None:
                self._gripper_meas = grip
            self._gripper_measured = grip is not None
        if self.joint_error:
            self.events.append(("info", "joint_states match the profile again"))
        self.joint_error = ""
        self.watchdog.feed("joint_states", stamp, now)
        return True

    def _joint_problem(self, text: str) -> None:
        if text != self.joint_error:
            self.events.append(("error", "ignoring /joint_states: %s" % text))
        self.joint_error = text

    def on_latent(self, latent: np.ndarray, stamp: float, now: float) -> None:
        """A /clap/latent [tokens, dim] stamped with its camera frame; wakes the worker."""
        lat = np.asarray(latent, dtype=np.float32)
        want = (self.runtime.bundle.latent_tokens, self.runtime.bundle.latent_dim)
        if lat.shape != want:
            raise ValueError("latent must be %s (tokens x dim of the bundle), got %s"
                             % (list(want), list(lat.shape)))
        with self.fresh:
            if stamp < self._latent_stamp:
                return                         # out of order: keep the newer one
            self._latent = lat
            self._latent_stamp = float(stamp)
            self._latent_seq += 1
            self.fresh.notify_all()
        self.watchdog.feed("latent", stamp, now)

    def on_plan_tokens(self, indices: Sequence[int]) -> None:
        """/clap/plan_tokens: paired with the next /clap/plan (the planner sends tokens first)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size != self.runtime.bundle.tokens_per_chunk:
            raise ValueError("plan has %d tokens, the bundle expects %d"
                             % (idx.size, self.runtime.bundle.tokens_per_chunk))
        with self._inputs:
            self._pending_tokens = idx

    def on_plan(self, stamp: float, now: float) -> bool:
        """/clap/plan arrived (stamped with its source frame): the latest tokens become the plan.
        Returns False (and the plan does not count as fresh) when no tokens preceded it."""
        with self._inputs:
            if self._pending_tokens is None and self._tokens is None:
                return False
            if self._pending_tokens is not None:
                self._tokens = self._pending_tokens
        self.watchdog.feed("plan", stamp, now)
        return True

    # --- services ------------------------------------------------------------------------------
    def enable(self, now: float) -> str:
        with self.lock:
            self.watchdog.clear_fault()
            self.watchdog.enable(now)
            return self.watchdog.reason

    def disable(self, now: float, reason: str = "disabled (~/enable false)") -> str:
        with self.lock:
            self.watchdog.disable(now, reason)
            return self.watchdog.reason

    def stop(self, now: float, reason: str = "stop requested (~/stop)") -> str:
        with self.lock:
            self.watchdog.request_stop(now, reason)
            return self.watchdog.reason

    # --- inference (worker thread) -------------------------------------------------------------
    def wait_job(self, timeout: float) -> Optional[InferenceJob]:
        """Block up to ``timeout`` for a latent newer than the last one inferred on; returns the
        job when everything needed exists and the arm is running, else None."""
        with self.fresh:
            job = self._take_job_locked()
            if job is None:
                # Also when a latent is pending but the arm is not running: waiting (not
                # polling) until the next latent or the start of a run keeps a held node idle.
                self.fresh.wait(timeout)
                job = self._take_job_locked()
            return job

    def take_job(self) -> Optional[InferenceJob]:
        with self._inputs:
            return self._take_job_locked()

    def _take_job_locked(self) -> Optional[InferenceJob]:
        if (self._latent_seq == self._done_seq or self._latent is None
                or self._tokens is None or self._q_meas is None):
            return None
        if self.watchdog.state is not State.RUN or not self._ran:
            return None
        self._done_seq = self._latent_seq
        state = np.empty(self.dof + 1, dtype=np.float32)
        state[:self.dof] = self._q_meas
        state[self.dof] = self._gripper_meas
        return InferenceJob(self._latent, self._latent_stamp, self._tokens, state)

    def infer_once(self, job: InferenceJob, clock) -> bool:
        """Run CLAP-RF on ``job`` and queue the chunk; ``clock()`` is the node clock (s), read
        when the chunk is ready, so the measured delay includes inference. A model error or a
        non-finite chunk is a fault: the arm stops smoothly and holds. Returns True if queued."""
        t_start = self.perf()
        try:
            raw = self.runtime.act(job.latent, job.tokens, job.state, self.rng)
            targets = np.asarray(self.runtime.joint_targets(raw, job.state), dtype=np.float64)
            if not np.all(np.isfinite(targets)):
                raise ValueError("model output contains NaN/Inf")
        except Exception as e:   # InferenceError, or anything the model did: never a command
            self.inference_errors += 1
            reason = "model fault: %s" % e
            self.events.append(("error", reason + "; stopping and holding until ~/enable"))
            with self.lock:
                self.watchdog.report_fault(clock(), reason)
            return False
        self.last_inference_s = self.perf() - t_start
        self.inferences += 1
        targets[:, self.dof] = np.clip(targets[:, self.dof], 0.0, 1.0)
        t_av = clock()
        prepared = self.queue.prepare(targets, job.stamp, self.chunk_dt, t_av)
        with self.lock:
            if self.watchdog.state is not State.RUN or not self._ran:
                return False                   # stopped meanwhile: keep the stop untouched
            res = self.queue.commit(prepared, clock())
            if res.accepted:
                self.last_delay_s = res.delay
                self._traj_pending = True
                self._new_chunk_frame = float(job.stamp)
        if not res.accepted:
            self.events.append(("warning", "chunk dropped: %s" % res.reason))
        return res.accepted

    # --- command loop --------------------------------------------------------------------------
    def tick(self, now: float) -> TickOutput:
        """Advance the state machine at ``now`` and return what to send (see TickOutput)."""
        with self.lock:
            self.ticks += 1
            # enable/stop/fault may have moved the watchdog between ticks: compare with the state
            # this loop last acted on, so every RUN starts from the measured pose.
            prev = self._last_state
            state = self.watchdog.update(now)
            self._last_state = state
            if state is not prev:
                self.events.append(("warning" if state is State.STOPPING else "info",
                                    "%s -> %s: %s" % (prev.value, state.value,
                                                      self.watchdog.reason)))
            if state is State.RUN:
                if prev is not State.RUN:
                    self._start_run(now)
                if self._tracking_lost(now):
                    return self._start_stop(now)
                return self._run(now)
            if state is State.STOPPING:
                if self._stop is None and self._glide is None:
                    return self._start_stop(now)
                return self._stopping(now)
            self._ran = False
            self._stop = None
            return TickOutput(state)

    def _start_run(self, now: float) -> None:
        # Set first: the worker checks it to start inferring (its commit waits for this lock).
        self._ran = True
        with self._inputs:
            q = self._q_meas.copy()
            g = self._gripper_meas
            self.fresh.notify_all()           # the worker may start on the pending latent
        self.queue.reset(now, np.append(q, g))
        self.filter.reset(q)
        self._cmd_q[:] = q
        self._stop = None
        self._traj_pending = False
        self._sent = None
        self._glide = None
        self._tracking_since = None
        self._checked_stamp = self._checked_at = -math.inf
        self._hist_t[:] = -math.inf
        self._stop_at_measured = False
        self._gripper_cmd = None
        self._last_gripper_t = -math.inf

    def commanded(self, now: float) -> Tuple[np.ndarray, np.ndarray]:
        """What the driver is executing at ``now`` (position, velocity): the filter's last
        command when streaming, the last sent trajectory (as the controller interpolates it) in
        joint_trajectory mode; the run's start pose before any trajectory went out."""
        if self.cfg.command_mode == "forward_position":
            return self.filter.q.copy(), self.filter.qd.copy()
        if self._sent is None:
            return self._cmd_q.copy(), np.zeros(self.dof)
        t0, times, pos = self._sent
        t = min(max(now - t0, 0.0), float(times[-1]))
        k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
        span = float(times[k + 1] - times[k])
        a = (t - float(times[k])) / span if span > 0 else 1.0
        q = pos[k] + a * (pos[k + 1] - pos[k])
        qd = (pos[k + 1] - pos[k]) / span if span > 0 and t < times[-1] else np.zeros(self.dof)
        return q, qd

    def _tracking_lost(self, now: float) -> bool:
        """True (and a fault is reported) when a measured joint has been further than the
        tolerance from every command of the window [joint_states stamp - tracking_lag_s, now]
        for longer than ``tracking_persist_s``. Comparing with the recent commands rather than
        the newest one lets a moving arm trail its command by the driver's lag and be seen
        through a slightly old sample; a driver that rejects or ignores our commands (the arm
        stays put while the command moves on), or a collision, trips it."""
        c = self.cfg
        # Every tick records its command in place (no allocation in the 500 Hz stream); the
        # comparison itself runs at most every TRACKING_CHECK_PERIOD_S and only on a new sample.
        if self.cfg.command_mode == "forward_position":
            self._hist_q[self._hist_i] = self.filter.q
        else:
            self._hist_q[self._hist_i] = self.commanded(now)[0]
        self._hist_t[self._hist_i] = now
        self._hist_i = (self._hist_i + 1) % self._hist_t.size
        with self._inputs:
            if self._q_meas is None or self._q_meas_stamp == self._checked_stamp \
                    or now - self._checked_at < TRACKING_CHECK_PERIOD_S:
                return False
            q_meas, stamp = self._q_meas.copy(), self._q_meas_stamp
        self._checked_stamp, self._checked_at = stamp, now
        recent = self._hist_q[self._hist_t >= min(stamp, now) - c.tracking_lag_s - 1e-9]
        err = np.min(np.abs(recent - q_meas), axis=0)
        self.tracking_error = float(err.max())
        over = err > c.tracking_tolerance_rad
        if not over.any():
            self._tracking_since = None
            return False
        if self._tracking_since is None:
            self._tracking_since = now
        if now - self._tracking_since < c.tracking_persist_s:
            return False
        j = int(np.argmax(err))
        reason = ("tracking lost: %s is %.3f rad from its commands of the last %.2f s "
                  "(tolerance %.3f rad) for %.2f s; the driver is not following (rejected "
                  "commands, a controller switch, a collision?). Holding where the arm is until "
                  "~/enable" % (self.profile.joint_names[j], err[j], max(now - stamp, 0.0)
                                + c.tracking_lag_s, c.tracking_tolerance_rad,
                                now - self._tracking_since))
        self.tracking_faults += 1
        self.events.append(("error", reason))
        self._stop_at_measured = True
        self.watchdog.report_fault(now, reason)
        self._last_state = self.watchdog.state
        return True

    def _gripper_out(self, now: float, value: float) -> Optional[float]:
        if now - self._last_gripper_t < self.cfg.gripper_period_s:
            return None
        self._last_gripper_t = now
        v = min(max(float(value), 0.0), 1.0)
        self._gripper_cmd = v
        if not self._gripper_measured:
            with self._inputs:
                self._gripper_meas = v
        return v

    def _run(self, now: float) -> TickOutput:
        ref, _, _ = self.queue.sample(now)
        grip = self._gripper_out(now, ref[self.dof])
        if self.cfg.command_mode == "forward_position":
            res = self.filter.filter(ref[:self.dof])
            if not res.ok:
                self.safety_rejections += 1
            self._cmd_q[:] = res.q
            self.commands += 1
            self._first_command_of_chunk(now)
            return TickOutput(State.RUN, arm=res.q, gripper=grip)
        traj = None
        if self._traj_pending:
            self._traj_pending = False
            traj = self._chunk_trajectory(now)
            if traj is not None:
                self._first_command_of_chunk(now)
        return TickOutput(State.RUN, gripper=grip, trajectory=traj)

    def _first_command_of_chunk(self, now: float) -> None:
        if self._new_chunk_frame is not None:
            self._frame_to_command = now - self._new_chunk_frame
            self._new_chunk_frame = None

    def pop_frame_to_command(self) -> Optional[float]:
        """Camera frame stamp -> the first command computed from that frame's chunk (s, node
        clock), once per accepted chunk; None when no new chunk reached a command since."""
        with self.lock:
            v, self._frame_to_command = self._frame_to_command, None
            return v

    def _chunk_trajectory(self, now: float) -> Optional[TrajectoryCommand]:
        c = self.cfg
        pts = self.queue.trajectory_points(now, c.trajectory_horizon_s, c.trajectory_period_s)
        times = [p[0] for p in pts]
        # Start from what the controller is executing now: where the previous trajectory has
        # got to, which trails the queue whenever make_feasible slowed it down. Starting from
        # the queue would ask the controller for a jump at every hand-over.
        start = self.commanded(now)[0]
        try:
            f = make_feasible(self.profile, times, np.array([p[1] for p in pts]),
                              np.array([p[2] for p in pts]), margin=c.margin,
                              start_positions=start)
        except ValueError as e:
            self.events.append(("warning", "trajectory not sent: %s" % e))
            return None
        for k in f.intervened:
            self.trajectory_interventions[k] = self.trajectory_interventions.get(k, 0) + 1
        self.time_scales.append(float(f.time_scale))
        vel = f.velocities.copy()
        vel[-1] = 0.0
        points = [(float(t), f.positions[i].copy(), vel[i].copy())
                  for i, t in enumerate(f.times)]
        self._cmd_q[:] = start
        self._sent = (now, np.concatenate([[0.0], f.times]), np.vstack([start, f.positions]))
        self.trajectories += 1
        return TrajectoryCommand(list(self.profile.joint_names), points, "chunk", f.time_scale)

    def _start_stop(self, now: float) -> TickOutput:
        if not self._ran:
            # Nothing was ever commanded in this run: there is no motion to stop.
            self.watchdog.stop_finished(now)
            return TickOutput(self.watchdog.state)
        if self._stop_at_measured:
            return self._start_glide(now)
        if self.cfg.command_mode == "forward_position":
            q, qd, qdd = self.filter.q, self.filter.qd, self.filter.qdd
        else:
            q, qd, qdd = self.queue.peek(now)
            q, qd, qdd = q[:self.dof], qd[:self.dof], qdd[:self.dof]
        # The stop starts from zero acceleration: StopProfile stretches its duration when a
        # large initial acceleration opposes the velocity (it refuses to reverse) and can then
        # travel far to a position limit. Dropping qdd is one jerk-limited step for the filter
        # (forward mode) and irrelevant to the JTC, which gets positions + velocities only.
        self._stop = StopProfile(self.profile, q, qd, None, now, margin=self.cfg.margin)
        self._stop_deadline = self._stop.end_time + 1.0
        if self.cfg.command_mode == "forward_position":
            return self._stopping(now)
        sp, period = self._stop, self.cfg.trajectory_period_s
        n = max(1, int(math.ceil(sp.duration / period)))
        points = []
        for k in range(1, n + 1):
            tf = k * period
            sq, sqd, _ = sp.sample(now + tf)
            points.append((tf, sq, sqd if k < n else np.zeros(self.dof)))
        self.trajectories += 1
        return TickOutput(State.STOPPING, trajectory=TrajectoryCommand(
            list(self.profile.joint_names), points, "stop"))

    def _start_glide(self, now: float) -> TickOutput:
        """Tracking lost: the arm is not where it was commanded, so stopping along the command
        would chase a pose the arm never reached (or push on whatever it hit). Instead the
        command glides, smoothly and slowly, from where it is to the measured pose and holds
        there; the command stream stays continuous, which position interfaces require."""
        c = self.cfg
        lim = self.profile.limits
        q_from = self.commanded(now)[0]
        with self._inputs:
            q_to = np.clip(self._q_meas, lim.lower + c.margin, lim.upper - c.margin)
        # smoothstep at a quarter of the velocity limits at its peak (1.5x the mean speed)
        dur = max(0.2, float(np.max(1.5 * np.abs(q_to - q_from) / (0.25 * lim.velocity))))
        period = c.trajectory_period_s
        n = max(2, int(math.ceil(dur / period)))
        times = period * np.arange(1, n + 1)
        u = times / times[-1]
        pos = q_from + np.outer(3 * u ** 2 - 2 * u ** 3, q_to - q_from)
        f = make_feasible(self.profile, times, pos, None, margin=c.margin, start_positions=q_from)
        self._glide = (now, np.concatenate([[0.0], f.times]), np.vstack([q_from, f.positions]))
        self._stop_deadline = now + f.times[-1] + 1.0
        if c.command_mode == "forward_position":
            return self._stopping(now)
        vel = f.velocities.copy()
        vel[-1] = 0.0
        self.trajectories += 1
        return TickOutput(State.STOPPING, trajectory=TrajectoryCommand(
            list(self.profile.joint_names),
            [(float(t), f.positions[i].copy(), vel[i].copy()) for i, t in enumerate(f.times)],
            "stop", f.time_scale))

    def _stopping(self, now: float) -> TickOutput:
        if self._glide is not None:
            t0, times, pos = self._glide
            done = now - t0 >= times[-1]
            if self.cfg.command_mode == "forward_position":
                target = np.array([np.interp(now - t0, times, pos[:, j]) for j in range(self.dof)])
                res = self.filter.filter(target)
                self._cmd_q[:] = res.q
                self.commands += 1
                if (done and self.filter.at_rest(1e-4, 1e-3)) or now > self._stop_deadline:
                    self._finish_stop(now)
                return TickOutput(State.STOPPING, arm=res.q)
            if done:
                self._finish_stop(now)
            return TickOutput(State.STOPPING)
        sp = self._stop
        if self.cfg.command_mode == "forward_position":
            sq, _, _ = sp.sample(now)
            res = self.filter.filter(sq)
            self._cmd_q[:] = res.q
            self.commands += 1
            if (sp.done(now) and self.filter.at_rest(1e-4, 1e-3)) or now > self._stop_deadline:
                self._finish_stop(now)
            return TickOutput(State.STOPPING, arm=res.q)
        if sp.done(now):
            self._finish_stop(now)
        return TickOutput(State.STOPPING)

    def _finish_stop(self, now: float) -> None:
        self.watchdog.stop_finished(now)
        self.events.append(("info", "arm at rest, holding: %s" % self.watchdog.reason))
        self._stop = None
        self._glide = None
        self._ran = False

    # --- introspection -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.watchdog.state

    def reason(self, now: Optional[float] = None) -> str:
        r = self.watchdog.reason
        if self.joint_error:
            r = "joint_states rejected: %s; %s" % (self.joint_error, r)
        return r

    def measured(self) -> Optional[np.ndarray]:
        with self._inputs:
            return None if self._q_meas is None else self._q_meas.copy()

    def diagnostics(self, now: float) -> Dict[str, Any]:
        d: Dict[str, Any] = {"command_mode": self.cfg.command_mode}
        with self.lock:
            d.update(self.watchdog.diagnostics(now))
            d["reason"] = self.reason(now)
            d.update(self.queue.diagnostics())
            for k, v in self.filter.counts.items():
                d["safety_%s" % k] = v
            for k, v in self.trajectory_interventions.items():
                d["trajectory_%s" % k] = v
            if self.time_scales:
                ts = np.asarray(self.time_scales)
                d["trajectory_time_scale_median"] = round(float(np.median(ts)), 3)
                d["trajectory_time_scale_max"] = round(float(ts.max()), 3)
        d["joint_error"] = self.joint_error
        d["tracking_error_rad"] = round(self.tracking_error, 4)
        d["tracking_faults"] = self.tracking_faults
        d["inferences"] = self.inferences
        d["inference_errors"] = self.inference_errors
        d["commands"] = self.commands
        d["trajectories"] = self.trajectories
        if not math.isnan(self.last_inference_s):
            d["inference_last_s"] = round(self.last_inference_s, 4)
        if not math.isnan(self.last_delay_s):
            d["frame_to_chunk_delay_s"] = round(self.last_delay_s, 4)
        if self._gripper_cmd is not None:
            d["gripper_command"] = round(self._gripper_cmd, 3)
        return d
