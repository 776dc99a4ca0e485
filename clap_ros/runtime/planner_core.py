"""The planner node's logic without ROS: instruction + latest latent + joint state + now -> plan.

``PlannerCore(runtime, profile, params)`` stores the newest inputs, each checked on arrival
(a refused input is counted and never replaces the last good one):

* ``set_instruction(text, now)``: empty / whitespace-only or longer than
  ``max_instruction_chars`` is refused (the previous instruction stays);
* ``on_latent(latent, stamp, now, source=None)``: an array ``[tokens, dim]`` or a /clap/latent
  Image-like message; ``source`` (e.g. the message header) comes back with the plan;
* ``on_joint_state(names, positions, stamp, now)``: by name through the robot profile
  (duplicates, mismatched lengths, missing joints, NaN/inf refused);
* ``on_gripper_command(values)``: the opening last commanded, the gripper state for a driver
  without finger joints;
* ``step(now)``: plans when the inputs are complete and fresh and something changed since the
  last plan (a new latent or instruction); returns ``PlanStep`` with the ``Plan`` or why not.

``problems`` maps a diagnostics key to (level, text) while a condition lasts ("warn"/"error");
``counters`` counts plans and refusals. ``now`` is the node's clock (ROS or sim time): latent
stamps are on it, and joint-state age is measured from the ``now`` of their arrival.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from clap_ros.runtime.messages import (
    InputError,
    check_instruction,
    check_joint_state,
    check_latent_array,
    check_plausible,
    clip_text,
    latent_from_image,
)
from clap_ros.runtime.params import PlannerParams

WARN, ERROR = "warn", "error"
PROBLEM_KEYS = (
    "inputs",
    "instruction",
    "input",
    "joint_states",
    "state_age",
    "latent_age",
    "inference",
)


@dataclass
class Plan:
    """A plan: token ``indices`` [T] and absolute ``targets`` [H, dof + 1] (gripper last); step
    i belongs to ``stamp + i * chunk_dt``. ``source``: what came with the latent (its header)."""

    indices: np.ndarray
    targets: np.ndarray
    stamp: float
    chunk_dt: float
    source: Any = None
    seconds: float = 0.0  # wall time of the planner + decoder graphs


@dataclass
class PlanStep:
    plan: Optional[Plan] = None
    reason: str = ""  # why nothing was planned ("" = nothing new)
    note: str = ""  # an info line to log (rate-limited), e.g. the gripper source


class PlannerCore:
    def __init__(
        self, runtime, profile, params: Optional[PlannerParams] = None, perf=time.perf_counter
    ):
        self.params = (params or PlannerParams()).validate()
        self.runtime = runtime
        self.profile = profile
        b = runtime.bundle
        if list(b.joint_names) != list(profile.joint_names):
            raise ValueError(
                "bundle joints %s differ from robot '%s' joints %s"
                % (list(b.joint_names), profile.name, list(profile.joint_names))
            )
        self.chunk_dt = float(b.chunk_dt_s)
        self.perf = perf
        self._lock = threading.Lock()
        self._instruction = ""
        self._instruction_version = 0
        self._latent: Optional[np.ndarray] = None
        self._latent_stamp = 0.0
        self._latent_source: Any = None
        self._latent_seq = 0
        self._state: Optional[np.ndarray] = None
        self._gripper_measured = False
        self._js_received = -1e18
        self._gripper_cmd: Optional[float] = None
        self._planned: Tuple[int, int] = (0, -1)  # (latent seq, instruction version) planned on
        self.problems: Dict[str, Tuple[str, str]] = {}
        self.counters: Dict[str, int] = {
            "plans": 0,
            "instructions": 0,
            "instructions_refused": 0,
            "latents_refused": 0,
            "joint_states_refused": 0,
            "inference_errors": 0,
        }
        if self.params.instruction:
            self.set_instruction(self.params.instruction, 0.0)

    # --- inputs --------------------------------------------------------------------------------
    @property
    def instruction(self) -> str:
        return self._instruction

    def set_instruction(self, text: Any, now: float) -> Optional[str]:
        """None when ``text`` is now the instruction (or already was), else why it is refused."""
        s, why = check_instruction(text, self.params.max_instruction_chars)
        if s is None:
            self.counters["instructions_refused"] += 1
            self.problems["instruction"] = (WARN, "instruction refused: %s" % why)
            return "instruction refused (keeping %s): %s" % (
                clip_text(self._instruction) if self._instruction else "none",
                why,
            )
        self.problems.pop("instruction", None)
        with self._lock:
            if s != self._instruction:
                self._instruction = s
                self._instruction_version += 1
                self.counters["instructions"] += 1
        return None

    def on_latent(self, latent: Any, stamp: float, now: float, source: Any = None) -> Optional[str]:
        """Store the newest latent; None when taken, else why it is refused (counted)."""
        b = self.runtime.bundle
        try:
            if isinstance(latent, np.ndarray):
                lat = check_latent_array(latent, b.latent_tokens, b.latent_dim)
            else:
                lat = latent_from_image(latent, b.latent_tokens, b.latent_dim)
        except InputError as e:
            self.counters["latents_refused"] += 1
            self.problems["input"] = (WARN, str(e))
            return "not planning on this latent: %s" % e
        self.problems.pop("input", None)
        with self._lock:
            self._latent, self._latent_stamp = lat, float(stamp)
            self._latent_source = source
            self._latent_seq += 1
        return None

    def on_joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp: float, now: float
    ) -> Optional[str]:
        """Store the measured state; None when taken, else why it is refused (counted)."""
        try:
            state, measured = check_joint_state(self.profile, names, positions)
            check_plausible(self.profile, state)
        except ValueError as e:  # InputError / ProfileError: names what is wrong
            self.counters["joint_states_refused"] += 1
            self.problems["joint_states"] = (WARN, "joint_states refused: %s" % e)
            return "ignoring joint_states: %s" % e
        self.problems.pop("joint_states", None)
        with self._lock:
            self._state, self._gripper_measured = state, measured
            self._js_received = float(now)
        return None

    def on_gripper_command(self, values: Sequence[float]) -> Optional[str]:
        try:
            v = float(values[0])
        except (IndexError, TypeError, ValueError):
            return "ignoring an empty gripper command"
        if not np.isfinite(v):
            return "ignoring a non-finite gripper command"
        self._gripper_cmd = min(max(v, 0.0), 1.0)
        return None

    # --- planning ------------------------------------------------------------------------------
    def step(self, now: float) -> PlanStep:
        """Plan once if there is something new to plan on (module docstring)."""
        from clap_ros.inference.policy import InferenceError

        p = self.params
        with self._lock:
            instruction, version = self._instruction, self._instruction_version
            latent, stamp, seq = self._latent, self._latent_stamp, self._latent_seq
            source = self._latent_source
            state, measured = self._state, self._gripper_measured
            js_received = self._js_received
        missing = [
            what
            for what, ok in (
                ("instruction", bool(instruction)),
                ("latent", latent is not None),
                ("joint_states", state is not None),
            )
            if not ok
        ]
        if missing:
            self.problems["inputs"] = (WARN, "waiting for %s" % ", ".join(missing))
            return PlanStep(reason="")
        self.problems.pop("inputs", None)
        if (seq, version) == self._planned:
            return PlanStep()  # nothing new to plan on
        if p.max_state_age_s > 0 and now - js_received > p.max_state_age_s:
            self.problems["state_age"] = (WARN, "joint_states stale")
            return PlanStep(
                reason="joint_states older than %.2f s: not planning" % p.max_state_age_s
            )
        self.problems.pop("state_age", None)
        age = now - stamp
        if p.max_latent_age_s > 0 and age > p.max_latent_age_s:
            self.problems["latent_age"] = (WARN, "latent stale (%.2f s old)" % age)
            return PlanStep(
                reason="latent is %.2f s old (> max_latent_age_s %.2f): not planning"
                % (age, p.max_latent_age_s)
            )
        self.problems.pop("latent_age", None)
        assert latent is not None and state is not None
        state = state.copy()
        note = ""
        if not measured:
            cmd = self._gripper_cmd
            if cmd is not None:
                state[-1] = cmd
            note = "joint_states has no gripper joint %s: using %s" % (
                self.profile.gripper.joint_names,
                "the last commanded opening %.2f" % cmd
                if cmd is not None
                else "open (no gripper command seen yet)",
            )
        t0 = self.perf()
        try:
            indices, coarse = self.runtime.plan(latent, instruction, state)
            targets = np.asarray(self.runtime.joint_targets(coarse, state), dtype=np.float64)
            if not np.all(np.isfinite(targets)):
                raise InferenceError("planner output has non-finite values")
        except InferenceError as e:
            self._planned = (seq, version)
            self.counters["inference_errors"] += 1
            self.problems["inference"] = (ERROR, str(e))
            return PlanStep(reason="planner: %s; nothing published" % e, note=note)
        self.problems.pop("inference", None)
        self._planned = (seq, version)
        self.counters["plans"] += 1
        return PlanStep(
            Plan(np.asarray(indices), targets, stamp, self.chunk_dt, source, self.perf() - t0),
            note=note,
        )

    def diagnostics(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.counters)
        d["instruction"] = clip_text(self._instruction, quote=False)
        d["instruction_chars"] = len(self._instruction)
        return d
