"""The action node's controller without ROS: CLAP-RF chunks in, safe commands out.

``ActionController`` is the HOLD / RUN / STOPPING state machine (``Watchdog``) over four parts,
each with one job and its own unit tests:

* ``ActionInputs`` (action_inputs.py): the newest latent / plan tokens / joint state, checked on
  arrival, and the inference jobs the RF worker takes from them;
* ``ChunkStream`` (chunk_stream.py): the chunk queue with its real-time-chunking hand-over and
  the JointTrajectory per new chunk;
* ``PositionStream`` (position_stream.py): the safety filter every streamed position passes;
* ``TrackingMonitor`` (tracking.py) and ``StopPlanner`` (stopping.py): is the driver following,
  and the smooth stop / glide to the measured pose.

Inference: ``run_job`` runs ``ClapRuntime.act`` + ``joint_targets`` (outside any lock; its wall
time is measured) and ``commit_job`` queues the chunk with the time it became available
(``infer_once`` = both; the VirtualStack calls them at their virtual start and end). A model
error or a non-finite chunk is a fault: the arm stops smoothly and holds until ``~/enable``.

Safety decisions, and why:

* The arm holds still (nothing is commanded) until ``~/enable``, fresh joint_states, a fresh
  latent and a plan all exist; leaving HOLD restarts the queue and the filter from the measured
  position, so the first command equals it.
* Any blocker while running (stale input, disable, ``~/stop``, a model output with NaN/Inf, joint
  states that cannot be used) gives a jerk-limited stop from the commanded state, then HOLD. A
  stale input that becomes fresh again resumes by itself (still enabled); a model fault and
  ``~/stop`` need a new ``~/enable``, since a model that produced NaN once is not trusted
  silently again.
* ``tick`` never waits on inference: the lock only guards the queue/filter state, and its holders
  (``commit_job`` and ``tick``) run in microseconds. Events to log are queued (``events``) and
  logged by the node outside the command loop.

Times are seconds on the node's clock (ROS time, or sim time with use_sim_time); ``perf`` is a
wall clock for latency figures. The chunk period is the bundle's (``bundle.chunk_dt_s``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Optional, Sequence, Tuple

import numpy as np

from clap_ros.control.watchdog import State, Watchdog
from clap_ros.runtime.action_inputs import ActionInputs, InferenceJob
from clap_ros.runtime.chunk_stream import (
    FIRST_POINT_MIN_S,
    STOP_SHARE,
    TRANSPORT_S,
    ChunkStream,
    FirstPointUnreachable,
    TrajectoryCommand,
)
from clap_ros.runtime.measured_start import MeasuredMotion
from clap_ros.runtime.messages import InputError
from clap_ros.runtime.params import COMMAND_MODES, WATCHED_INPUTS, ActionParams, ParamError
from clap_ros.runtime.position_stream import PositionStream
from clap_ros.runtime.stopping import StopPlanner
from clap_ros.runtime.tracking import TRACKING_CHECK_PERIOD_S, TrackingMonitor

__all__ = [
    "ActionController",
    "ActionConfig",
    "ActionParams",
    "TickOutput",
    "TrajectoryCommand",
    "InferenceJob",
    "JobResult",
    "COMMAND_MODES",
    "WATCHED_INPUTS",
    "TRACKING_CHECK_PERIOD_S",
]

# A refused input of one kind is logged at most this often (the rest are counted).
EVENT_PERIOD_S = 2.0
# A latent stamped further ahead of the node clock than this is not stored at all (kept, it would
# make every later latent look out of order). Smaller leads are kept for inference: on sim time
# the /clock a node has seen can trail a latent by tens of ms under load (the watchdog still
# judges freshness with its own, tighter future tolerance).
LATENT_FUTURE_REFUSE_S = 1.0

# The controller's configuration is the action node's parameter schema.
ActionConfig = ActionParams


@dataclass
class TickOutput:
    state: State
    arm: Optional[np.ndarray] = None  # forward_position command (profile order); a view
    gripper: Optional[float] = None  # opening 0..1 to send now
    trajectory: Optional[TrajectoryCommand] = None


@dataclass
class JobResult:
    """``run_job``'s outcome: absolute targets [H, dof + 1] (gripper clipped to 0..1), or the
    model ``error``; ``seconds`` = wall time of the RF call."""

    targets: Optional[np.ndarray] = None
    error: str = ""
    seconds: float = 0.0


class ActionController:
    """See the module docstring. ``runtime`` is a ``ClapRuntime`` (or anything with its
    ``bundle``, ``act`` and ``joint_targets``)."""

    def __init__(
        self, profile, runtime, config: Optional[ActionParams] = None, perf=time.perf_counter
    ):
        cfg = config if config is not None else ActionParams()
        try:
            cfg.validate()
        except ParamError as e:
            raise ValueError(str(e)) from None
        self.cfg = cfg
        self.profile = profile
        self.runtime = runtime
        b = runtime.bundle
        dof = profile.dof
        if list(b.joint_names) != list(profile.joint_names):
            raise ValueError(
                "model bundle joints %s do not match robot profile '%s' joints %s"
                % (list(b.joint_names), profile.name, list(profile.joint_names))
            )
        if b.action_dim != dof + 1 or b.state_dim != dof + 1:
            raise ValueError(
                "model bundle action/state dims (%d, %d) must be the %d arm joints "
                "+ gripper" % (b.action_dim, b.state_dim, dof)
            )
        self.dof = dof
        self.chunk_dt = float(b.chunk_dt_s)
        if not (math.isfinite(self.chunk_dt) and self.chunk_dt > 0):
            raise ValueError("model bundle chunk period %r s is not > 0" % self.chunk_dt)
        self.perf = perf
        self.forward = cfg.command_mode == "forward_position"
        self.watchdog = Watchdog(cfg.thresholds)
        self.inputs = ActionInputs(profile, b)
        self.fresh = self.inputs.fresh  # the node's worker wakes on it (and shutdown)
        self.chunks = ChunkStream(profile, cfg, self.chunk_dt)
        self.queue = self.chunks.queue
        self.stream = PositionStream(profile, cfg)
        self.filter = self.stream.filter
        self.tracking = TrackingMonitor(profile.joint_names, cfg)
        self.stops = StopPlanner(profile, cfg)
        # joint_trajectory mode, unless interpolate_from_desired_state: trajectories and stops
        # start from the measured state (position + finite-difference velocity)
        self.from_measured = not self.forward and not cfg.interpolate_from_desired_state
        # (the arm cannot move faster than its limits, and does not accelerate beyond them)
        self.motion = MeasuredMotion(dof, profile.limits.velocity, profile.limits.acceleration)
        self.first_point_stops = 0
        self.stops_from_measured = 0
        self.rng = np.random.default_rng(cfg.seed)
        self.lock = threading.Lock()  # queue, filter, stop profile, state handling
        self._last_gripper_t = -math.inf
        self._gripper_cmd: Optional[float] = None
        self._ran = False  # has the arm been commanded since the last HOLD
        self._last_state = State.HOLD  # the state the previous tick acted on
        self.events: Deque[Tuple[str, str]] = deque(maxlen=256)
        self._event_t: Dict[str, float] = {}  # last time an event of a kind was queued
        self._suppressed: Dict[str, int] = {}
        # counters for diagnostics
        self.ticks = 0
        self.commands = 0
        self.inferences = 0
        self.inference_errors = 0
        self.last_inference_s = math.nan

    # --- compatibility views -------------------------------------------------------------------
    @property
    def joint_error(self) -> str:
        return self.inputs.joint_error

    @property
    def tracking_faults(self) -> int:
        return self.tracking.faults

    @property
    def tracking_error(self) -> float:
        return self.tracking.error

    @property
    def trajectories(self) -> int:
        return self.chunks.trajectories

    @property
    def last_delay_s(self) -> float:
        return self.chunks.last_delay_s

    @property
    def safety_rejections(self) -> int:
        return self.stream.rejections

    # --- inputs --------------------------------------------------------------------------------
    def on_joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp: float, now: float
    ) -> bool:
        """A JointState, indexed by name via the profile. A refused one (duplicate or missing
        names, mismatched lengths, NaN/inf) is not a measurement: not fed to the watchdog (the
        arm holds) and ``joint_error`` says why. Returns True when accepted."""
        ok, problem = self.inputs.joint_state(names, positions, stamp)
        if not ok:
            # A new problem is logged, at most once per EVENT_PERIOD_S (a stream of varying
            # garbage must not flood the log); the rest are counted (joint_states_refused).
            if problem != self.inputs.joint_error and self._event_due("joint_states", now):
                n = self._suppressed.pop("joint_states", 0)
                self.events.append(
                    (
                        "error",
                        "ignoring /joint_states: %s%s"
                        % (problem, " (%d more refused since the last message)" % n if n else ""),
                    )
                )
            elif problem != self.inputs.joint_error:
                self._suppressed["joint_states"] = self._suppressed.get("joint_states", 0) + 1
            self.inputs.joint_error = problem
            return False
        if self.inputs.joint_error and self._event_due("joint_states_ok", now):
            self.events.append(("info", "joint_states match the profile again"))
        self.inputs.joint_error = ""
        self.watchdog.feed("joint_states", stamp, now)
        if self.from_measured:
            q, st = self.inputs.measured_at()
            if q is not None:
                self.motion.update(q, st)
        return True

    def on_latent(self, latent: np.ndarray, stamp: float, now: float) -> bool:
        """A /clap/latent [tokens, dim] stamped with its camera frame; wakes the worker.
        ValueError (InputError) when it is not one; False when it is older than the newest or
        stamped in the future (refused, counted in latents_refused)."""
        if not self.inputs.latent_in(latent, stamp, now, LATENT_FUTURE_REFUSE_S):
            return False
        self.watchdog.feed("latent", stamp, now)
        return True

    def on_plan_tokens(self, indices: Any) -> None:
        """/clap/plan_tokens: paired with the next /clap/plan (the planner sends tokens first).
        ValueError (InputError) for a wrong count."""
        self.inputs.tokens_in(indices)

    def on_plan(self, stamp: float, now: float) -> bool:
        """/clap/plan arrived (stamped with its source frame): the latest tokens become the plan.
        Returns False (and the plan does not count as fresh) when no tokens preceded it."""
        try:
            stamp = float(stamp)
        except (TypeError, ValueError):
            return False
        if not math.isfinite(stamp) or not self.inputs.plan_in():
            return False
        self.watchdog.feed("plan", stamp, now)
        return True

    def _event_due(self, key: str, now: float) -> bool:
        """Whether an event of kind ``key`` may be logged at ``now`` (one per EVENT_PERIOD_S)."""
        try:
            now = float(now)
        except (TypeError, ValueError):
            return False
        last = self._event_t.get(key)
        if last is not None and abs(now - last) < EVENT_PERIOD_S:
            return False
        self._event_t[key] = now
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
    def _running(self) -> bool:
        return self.watchdog.state is State.RUN and self._ran

    def wait_job(self, timeout: float) -> Optional[InferenceJob]:
        """Block up to ``timeout`` for a latent newer than the last one inferred on; returns the
        job when everything needed exists and the arm is running, else None."""
        return self.inputs.wait_job(timeout, self._running)

    def take_job(self) -> Optional[InferenceJob]:
        return self.inputs.take_job(self._running())

    def run_job(self, job: InferenceJob) -> JobResult:
        """CLAP-RF on ``job`` -> absolute targets (no state is changed here)."""
        t0 = self.perf()
        try:
            raw = self.runtime.act(job.latent, job.tokens, job.state, self.rng)
            targets = np.array(self.runtime.joint_targets(raw, job.state), dtype=np.float64)
            if targets.shape != (targets.shape[0], self.dof + 1) or targets.shape[0] < 1:
                raise ValueError("model output has shape %s" % (list(targets.shape),))
            if not np.all(np.isfinite(targets)):
                raise ValueError("model output contains NaN/Inf")
        except Exception as e:  # InferenceError, or anything the model did: never a command
            return JobResult(error=str(e), seconds=self.perf() - t0)
        targets[:, self.dof] = np.clip(targets[:, self.dof], 0.0, 1.0)
        return JobResult(targets=targets, seconds=self.perf() - t0)

    def commit_job(self, job: InferenceJob, result: JobResult, clock) -> bool:
        """Queue ``result`` (``clock()`` = the node clock when it became available) or report
        its model fault. Returns True if the chunk was queued."""
        if result.targets is None:
            self.inference_errors += 1
            reason = "model fault: %s" % result.error
            self.events.append(("error", reason + "; stopping and holding until ~/enable"))
            with self.lock:
                self.watchdog.report_fault(clock(), reason)
            return False
        self.last_inference_s = result.seconds
        self.inferences += 1
        prepared = self.chunks.prepare(result.targets, job.stamp, clock())
        with self.lock:
            if not self._running():
                return False  # stopped meanwhile: keep the stop untouched
            res = self.chunks.commit(prepared, job.stamp, clock())
        if not res.accepted:
            self.events.append(("warning", "chunk dropped: %s" % res.reason))
        return res.accepted

    def infer_once(self, job: InferenceJob, clock) -> bool:
        """Run CLAP-RF on ``job`` and queue the chunk; ``clock()`` is the node clock (s), read
        when the chunk is ready, so the measured delay includes inference."""
        return self.commit_job(job, self.run_job(job), clock)

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
                self.events.append(
                    (
                        "warning" if state is State.STOPPING else "info",
                        "%s -> %s: %s" % (prev.value, state.value, self.watchdog.reason),
                    )
                )
            if state is State.RUN:
                if prev is not State.RUN:
                    self._start_run(now)
                if self._tracking_lost(now):
                    return self._start_stop(now)
                return self._run(now)
            if state is State.STOPPING:
                if not self.stops.active:
                    return self._start_stop(now)
                return self._stopping(now)
            self._ran = False
            self.stops.profile_stop = None
            return TickOutput(state)

    def _start_run(self, now: float) -> None:
        # Set first: the worker checks it to start inferring (its commit waits for this lock).
        self._ran = True
        q, g = self.inputs.start_state()
        self.chunks.reset(now, q, g)
        self.stream.reset(q)
        self.stops.reset()
        self.tracking.reset()
        self._gripper_cmd = None
        self._last_gripper_t = -math.inf

    def commanded(self, now: float) -> Tuple[np.ndarray, np.ndarray]:
        """What the driver is executing at ``now`` (position, velocity): the filter's last
        command when streaming, the last sent trajectory (as the controller interpolates it) in
        joint_trajectory mode; the run's start pose before any trajectory went out."""
        if self.forward:
            return self.stream.q.copy(), self.stream.qd.copy()
        return self.chunks.commanded(now)

    def measured_state(self, now: float) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The arm's (position, velocity) expected at ``now`` from joint states no older than
        the watchdog allows; None when there are none (or trajectories start from the command:
        interpolate_from_desired_state, forward_position)."""
        if not self.from_measured:
            return None
        return self.motion.at(now, self.cfg.watchdog_joint_states_s)

    def _first_point_fault(self, now: float, reason: str) -> TickOutput:
        """A trajectory cannot start where the arm is: log, count, stop from the measured
        state, hold until ~/enable (as a lost tracking)."""
        self.first_point_stops += 1
        self.events.append(("error", reason))
        self.stops.at_measured = True
        self.watchdog.report_fault(now, reason)
        self._last_state = self.watchdog.state
        return self._start_stop(now)

    def _tracking_lost(self, now: float) -> bool:
        self.tracking.record(now, self.stream.q if self.forward else self.commanded(now)[0])
        q_meas, stamp = self.inputs.measured_at()
        if q_meas is None or not self.tracking.due(stamp, now):
            return False
        reason = self.tracking.check(now, q_meas, stamp)
        if reason is None:
            return False
        self.events.append(("error", reason))
        self.stops.at_measured = True
        self.watchdog.report_fault(now, reason)
        self._last_state = self.watchdog.state
        return True

    def _gripper_out(self, now: float, value: float) -> Optional[float]:
        if now - self._last_gripper_t < self.cfg.gripper_period_s:
            return None
        self._last_gripper_t = now
        v = min(max(float(value), 0.0), 1.0)
        self._gripper_cmd = v
        self.inputs.commanded_gripper(v)
        return v

    def _run(self, now: float) -> TickOutput:
        ref, _, _ = self.chunks.queue.sample(now)
        grip = self._gripper_out(now, ref[self.dof])
        if self.forward:
            q = self.stream.command(ref[: self.dof])
            self.chunks.cmd_q[:] = q
            self.commands += 1
            self.chunks.first_command(now)
            return TickOutput(State.RUN, arm=q, gripper=grip)
        traj = None
        if self.chunks.pending:
            self.chunks.pending = False
            ms = self.measured_state(now + TRANSPORT_S)
            try:
                traj, problem = self.chunks.trajectory(now, ms)
            except FirstPointUnreachable as e:
                return self._first_point_fault(now, str(e))
            if traj is not None:
                self.chunks.first_command(now)
            else:
                self.events.append(("warning", problem))
        return TickOutput(State.RUN, gripper=grip, trajectory=traj)

    def pop_frame_to_command(self) -> Optional[float]:
        """Camera frame stamp -> the first command computed from that frame's chunk (s, node
        clock), once per accepted chunk; None when no new chunk reached a command since."""
        with self.lock:
            v, self.chunks.frame_to_command = self.chunks.frame_to_command, None
            return v

    def _start_stop(self, now: float) -> TickOutput:
        if not self._ran:
            # Nothing was ever commanded in this run: there is no motion to stop.
            self.watchdog.stop_finished(now)
            return TickOutput(self.watchdog.state)
        traj_mode = not self.forward
        ms = self.measured_state(now + TRANSPORT_S)
        if ms is not None:
            # The JTC starts the stop where the arm is, so the stop starts there too (also when
            # tracking is lost: holding where the arm is instead of gliding from the command),
            # planned for its arrival.
            self.stops_from_measured += 1
            tr = self.stops.start_stop(
                now + TRANSPORT_S, ms[0], ms[1], True, FIRST_POINT_MIN_S, STOP_SHARE
            )
        elif self.stops.at_measured:
            q_meas = self.inputs.measured()
            assert q_meas is not None
            tr = self.stops.start_glide(now, self.commanded(now)[0], q_meas, traj_mode)
        else:
            if self.forward:
                q, qd = self.stream.q, self.stream.qd
            else:
                q, qd, _ = self.chunks.queue.peek(now)
                q, qd = q[: self.dof], qd[: self.dof]
            tr = self.stops.start_stop(now, q, qd, traj_mode)
        if self.forward:
            return self._stopping(now)
        self.chunks.trajectories += 1
        return TickOutput(State.STOPPING, trajectory=tr)

    def _stopping(self, now: float) -> TickOutput:
        if self.forward:
            target, ended = self.stops.target(now)
            q = self.stream.command(target, count=False)
            self.chunks.cmd_q[:] = q
            self.commands += 1
            if (ended and self.stream.at_rest()) or now > self.stops.deadline:
                self._finish_stop(now)
            return TickOutput(State.STOPPING, arm=q)
        if self.stops.ended(now):
            self._finish_stop(now)
        return TickOutput(State.STOPPING)

    def _finish_stop(self, now: float) -> None:
        self.watchdog.stop_finished(now)
        self.events.append(("info", "arm at rest, holding: %s" % self.watchdog.reason))
        self.stops.clear()
        self._ran = False

    # --- introspection -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.watchdog.state

    def reason(self, now: Optional[float] = None) -> str:
        r = self.watchdog.reason
        if self.inputs.joint_error:
            r = "joint_states rejected: %s; %s" % (self.inputs.joint_error, r)
        return r

    def measured(self) -> Optional[np.ndarray]:
        return self.inputs.measured()

    def diagnostics(self, now: float) -> Dict[str, Any]:
        d: Dict[str, Any] = {"command_mode": self.cfg.command_mode}
        with self.lock:
            d.update(self.watchdog.diagnostics(now))
            d["reason"] = self.reason(now)
            d.update(self.chunks.diagnostics())
            d.update(self.stream.diagnostics())
        d.update(self.inputs.counters)
        d["joint_error"] = self.inputs.joint_error
        d["tracking_error_rad"] = round(self.tracking.error, 4)
        d["tracking_faults"] = self.tracking.faults
        d["inferences"] = self.inferences
        d["inference_errors"] = self.inference_errors
        d["commands"] = self.commands
        d["trajectories"] = self.chunks.trajectories
        if self.from_measured:
            d["first_point_stops"] = self.first_point_stops
            d["stops_from_measured"] = self.stops_from_measured
        if not math.isnan(self.last_inference_s):
            d["inference_last_s"] = round(self.last_inference_s, 4)
        if not math.isnan(self.chunks.last_delay_s):
            d["frame_to_chunk_delay_s"] = round(self.chunks.last_delay_s, 4)
        if self._gripper_cmd is not None:
            d["gripper_command"] = round(self._gripper_cmd, 3)
        return d


# re-exported for callers that caught the latent/token refusal by its old type
InputError = InputError
