"""The encoder, planner and action cores on a virtual clock: the one driver of the cores outside
ROS (``clap-ros eval-bag --mode offline`` feeds it a bag, ``clap-ros eval-sim --mode direct``
the MuJoCo world).

A discrete-event scheduler runs the cores at the rates and in the order the nodes run them:

* encoder: one frame at a time, always the newest (a frame arriving while it is busy replaces
  the pending one, counted as dropped), admitted by the encoder core (max_rate_hz, calibration);
* planner: a tick every 1 / planner_rate_hz (skipped while a plan is being computed); its plan
  reaches the action core as tokens + plan, like /clap/plan_tokens then /clap/plan;
* action: a tick every ``tick_period_s`` (state machine, commands); the RF worker takes a job
  whenever it is idle and one exists (after each latent and each tick).

Every model call delays its result on the virtual clock by the wall time it really took, or by
``latency_ms`` when set, so a slow model is as late as it would be on the robot. Inputs
(``on_frame``, ``on_joint_state``, ...) first run every event due up to their time ``t``;
``advance_to(t)`` runs the events up to ``t`` and returns the commands produced since the last
call (``StackOutput``), in time order. Gripper commands are also fed back to the planner (as the
planner node subscribes to the gripper command topic).

    stack = VirtualStack(profile, runtime, StackParams(action=ActionParams(...)))
    stack.start(t0)                       # ticks begin; enable_on_start enables here
    stack.on_camera_info(info, t); stack.on_frame(rgb, stamp, t)
    stack.on_joint_state(names, positions, stamp, t); stack.on_instruction(text, t)
    stack.enable(t); stack.stop(t); stack.disable(t)
    outs = stack.advance_to(t)            # [StackOutput(t, kind, value)]
    stack.diagnostics(t); stack.state; stack.record
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clap_ros.control.watchdog import State
from clap_ros.runtime.action_core import ActionController, JobResult
from clap_ros.runtime.action_inputs import InferenceJob
from clap_ros.runtime.encoder_core import EncoderCore
from clap_ros.runtime.params import ActionParams, EncoderParams, ParamError, PlannerParams
from clap_ros.runtime.planner_core import PlannerCore

TRAJECTORY, ARM, GRIPPER = "trajectory", "arm", "gripper"


@dataclass
class StackParams:
    """The three nodes' parameter schemas (defaults: the schemas')."""

    encoder: EncoderParams = field(default_factory=EncoderParams)
    planner: PlannerParams = field(default_factory=PlannerParams)
    action: ActionParams = field(default_factory=ActionParams)

    def validate(self) -> "StackParams":
        self.encoder.validate()
        self.planner.validate()
        self.action.validate()
        return self


@dataclass
class StackOutput:
    """A command the stack sent at virtual time ``t``: ``kind`` "trajectory" (value: a
    TrajectoryCommand, start on receipt), "arm" (value: forward positions, profile order, a
    copy) or "gripper" (value: opening 0..1)."""

    t: float
    kind: str
    value: Any


@dataclass
class StackRecord:
    """What happened, for metrics: counts, latencies (s), raw RF chunks, watchdog stops."""

    latents: int = 0
    plans: int = 0
    frames: int = 0
    frames_dropped: int = 0  # replaced while the encoder was busy
    encode_s: List[float] = field(default_factory=list)
    plan_s: List[float] = field(default_factory=list)
    act_s: List[float] = field(default_factory=list)
    frame_to_command_s: List[float] = field(default_factory=list)
    rf_chunks: List[Tuple[float, np.ndarray]] = field(default_factory=list)  # (frame stamp, [H,A])
    stops: List[Tuple[float, str]] = field(default_factory=list)  # (t, reason)
    log: List[Tuple[float, str, str]] = field(default_factory=list)  # (t, level, text)


# the most log lines a record keeps (a bad input repeated at 500 Hz must not grow it forever)
MAX_LOG = 2000


class VirtualStack:
    def __init__(
        self,
        profile,
        runtime,
        params: Optional[StackParams] = None,
        latency_ms: Optional[float] = None,
        calibration=None,
        wall: Callable[[], float] = time.perf_counter,
        keep_rf_chunks: bool = True,
    ):
        self.params = (params or StackParams()).validate()
        if latency_ms is not None and not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise ParamError("latency_ms = %r: must be >= 0 ms (or None: measured)" % latency_ms)
        self.latency_s = None if latency_ms is None else float(latency_ms) * 1e-3
        self.profile = profile
        self.runtime = runtime
        self.wall = wall
        self.keep_rf_chunks = keep_rf_chunks
        self.encoder = EncoderCore(runtime, self.params.encoder, calibration=calibration, perf=wall)
        self.planner = PlannerCore(runtime, profile, self.params.planner, perf=wall)
        self.action = ActionController(profile, runtime, self.params.action, perf=wall)
        self.record = StackRecord()
        self._events: List[Tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._now = -math.inf
        self._started = False
        self._out: List[StackOutput] = []
        self._enc_busy = False
        self._enc_pending: Optional[Tuple[Any, float]] = None
        self._plan_busy = False
        self._act_busy = False
        self._prev_state = State.HOLD

    # --- clock ---------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now

    def _at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._seq), fn))

    def _delay(self, measured_s: float) -> float:
        return self.latency_s if self.latency_s is not None else max(0.0, measured_s)

    def _run_until(self, t: float) -> None:
        if not self._started:
            self.start(t)
        while self._events and self._events[0][0] <= t:
            te, _, fn = heapq.heappop(self._events)
            self._now = max(self._now, te)
            fn()
        self._now = max(self._now, t)

    def start(self, t: float) -> None:
        """Begin the action and planner ticks at ``t`` (enable_on_start enables here). Called
        by the first input or advance_to if not called before."""
        if self._started:
            return
        self._started = True
        self._now = t
        if self.params.action.enable_on_start:
            self.action.enable(t)
        self._at(t, lambda: self._action_tick(t))
        self._at(t, lambda: self._plan_tick(t))

    def advance_to(self, t: float) -> List[StackOutput]:
        """Run every event due up to ``t``; the commands produced since the last call."""
        self._run_until(t)
        out, self._out = self._out, []
        return out

    # --- inputs --------------------------------------------------------------------------------
    def on_camera_info(self, info: Any, t: float) -> Optional[str]:
        self._run_until(t)
        why = self.encoder.set_camera_info(info)
        if why:
            self._log(t, "warning", why)
        return why

    def on_frame(self, image: Any, stamp: float, t: float) -> None:
        """A camera frame (RGB array or Image-like) stamped ``stamp``, arriving at ``t``."""
        self._run_until(t)
        self.record.frames += 1
        if self._enc_busy:
            if self._enc_pending is not None:
                self.record.frames_dropped += 1
            self._enc_pending = (image, float(stamp))
            return
        self._encode(t, image, float(stamp))

    def on_joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp: float, t: float
    ) -> bool:
        """Joint states to the planner and action cores; False when refused."""
        self._run_until(t)
        why = self.planner.on_joint_state(names, positions, stamp, t)
        ok = self.action.on_joint_state(names, positions, stamp, t)
        if why:
            self._log(t, "warning", why)
        return ok and why is None

    def on_instruction(self, text: str, t: float) -> Optional[str]:
        """None when ``text`` is the instruction now, else why it was refused."""
        self._run_until(t)
        why = self.planner.set_instruction(text, t)
        if why:
            self._log(t, "warning", why)
        return why

    def enable(self, t: float) -> str:
        self._run_until(t)
        return self.action.enable(t)

    def disable(self, t: float) -> str:
        self._run_until(t)
        return self.action.disable(t)

    def stop(self, t: float, reason: str = "stop requested (~/stop)") -> str:
        self._run_until(t)
        return self.action.stop(t, reason)

    # --- encoder -------------------------------------------------------------------------------
    def _encode(self, t: float, image: Any, stamp: float) -> None:
        refused = self.encoder.admit(t)
        if refused is not None:
            if refused.reason:
                self._log(t, "warning", refused.reason)
            return
        res = self.encoder.encode(image, stamp, t, admitted=True)
        if not res.ok:
            self._log(t, "warning", res.reason)
            return
        self._enc_busy = True
        self.record.encode_s.append(res.seconds)
        done = t + self._delay(res.seconds)

        latent = res.latent
        assert latent is not None

        def deliver() -> None:
            self.record.latents += 1
            why = self.planner.on_latent(latent, res.stamp, done)
            if why:
                self._log(done, "warning", why)
            try:
                self.action.on_latent(latent, res.stamp, done)
            except ValueError as e:
                self._log(done, "warning", "action: ignoring latent: %s" % e)
            self._enc_busy = False
            if self._enc_pending is not None:
                (img, st), self._enc_pending = self._enc_pending, None
                self._encode(done, img, st)
            self._kick_worker(done)

        self._at(done, deliver)

    # --- planner -------------------------------------------------------------------------------
    def _plan_tick(self, t: float) -> None:
        period = 1.0 / self.params.planner.planner_rate_hz
        self._at(t + period, lambda: self._plan_tick(t + period))
        if self._plan_busy:
            return
        step = self.planner.step(t)
        if step.plan is None:
            if step.reason:
                self._log(t, "warning", step.reason)
            return
        plan = step.plan
        self._plan_busy = True
        self.record.plan_s.append(plan.seconds)
        done = t + self._delay(plan.seconds)

        def deliver() -> None:
            self._plan_busy = False
            self.record.plans += 1
            try:
                self.action.on_plan_tokens(plan.indices)
            except ValueError as e:
                self._log(done, "warning", "action: ignoring plan tokens: %s" % e)
                return
            self.action.on_plan(plan.stamp, done)

        self._at(done, deliver)

    # --- action --------------------------------------------------------------------------------
    def _kick_worker(self, t: float) -> None:
        if self._act_busy:
            return
        job = self.action.take_job()
        if job is None:
            return
        self._act_busy = True
        result = self.action.run_job(job)
        self.record.act_s.append(result.seconds)
        if self.keep_rf_chunks and result.targets is not None:
            self.record.rf_chunks.append((job.stamp, result.targets.copy()))
        done = t + self._delay(result.seconds)
        self._at(done, lambda: self._finish_job(done, job, result))

    def _finish_job(self, t: float, job: InferenceJob, result: JobResult) -> None:
        self.action.commit_job(job, result, lambda: t)
        self._act_busy = False
        self._kick_worker(t)

    def _action_tick(self, t: float) -> None:
        period = self.action.cfg.tick_period_s
        self._at(t + period, lambda: self._action_tick(t + period))
        out = self.action.tick(t)
        if out.state is State.STOPPING and self._prev_state is State.RUN:
            self.record.stops.append((t, self.action.watchdog.reason))
        self._prev_state = out.state
        if out.trajectory is not None:
            self._out.append(StackOutput(t, TRAJECTORY, out.trajectory))
        if out.arm is not None:
            self._out.append(StackOutput(t, ARM, np.array(out.arm, dtype=np.float64)))
        if out.gripper is not None:
            self._out.append(StackOutput(t, GRIPPER, float(out.gripper)))
            self.planner.on_gripper_command([float(out.gripper)])
        lat = self.action.pop_frame_to_command()
        if lat is not None:
            self.record.frame_to_command_s.append(lat)
        while self.action.events:
            level, text = self.action.events.popleft()
            self._log(t, level, text)
        self._kick_worker(t)

    # --- introspection -------------------------------------------------------------------------
    def _log(self, t: float, level: str, text: str) -> None:
        if len(self.record.log) < MAX_LOG:
            self.record.log.append((t, level, text))

    @property
    def state(self) -> State:
        return self.action.state

    def diagnostics(self, t: float) -> Dict[str, Any]:
        r = self.record
        return {
            "encoder": self.encoder.diagnostics(),
            "planner": self.planner.diagnostics(),
            "action": self.action.diagnostics(t),
            "stack": {
                "frames": r.frames,
                "frames_dropped": r.frames_dropped,
                "latents": r.latents,
                "plans": r.plans,
                "latency": "fixed %g ms" % (self.latency_s * 1e3)
                if self.latency_s is not None
                else "measured",
            },
        }
