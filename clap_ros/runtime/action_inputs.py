"""The action core's inputs and its inference scheduling: the newest latent, plan tokens and
measured joint state, each checked on arrival, and the jobs the RF worker takes from them.

A job exists when a latent newer than the last one inferred on, plan tokens and a joint state
all exist and the controller is running (``running``); the worker blocks in ``wait_job`` (no
polling while the arm holds). Refusals are counted in ``counters``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from clap_ros.runtime.messages import (
    InputError,
    check_joint_state,
    check_latent_array,
    check_plausible,
)


@dataclass
class InferenceJob:
    latent: np.ndarray
    stamp: float
    tokens: np.ndarray
    state: np.ndarray


class ActionInputs:
    def __init__(self, profile, bundle) -> None:
        self.profile = profile
        self.bundle = bundle
        self.dof = profile.dof
        self.lock = threading.Lock()
        self.fresh = threading.Condition(self.lock)  # a new latent, or a run started
        self.latent: Optional[np.ndarray] = None
        self.latent_stamp = -math.inf
        self.latent_seq = 0
        self.done_seq = 0
        self.pending_tokens: Optional[np.ndarray] = None
        self.tokens: Optional[np.ndarray] = None
        self.q_meas: Optional[np.ndarray] = None
        self.q_meas_stamp = -math.inf
        # Gripper opening for the model's state: measured when joint_states carries the finger
        # joints; otherwise the last opening commanded (open before any).
        self.gripper_meas = 1.0
        self.gripper_measured = False
        self.joint_error = ""
        self.counters: Dict[str, int] = {
            "joint_states_refused": 0,
            "latents_refused": 0,
            "latents_future": 0,
            "plan_tokens_refused": 0,
            "plans_refused": 0,
        }

    # --- arrivals ------------------------------------------------------------------------------
    def joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp: float
    ) -> Tuple[bool, str]:
        """(accepted, problem text). A refused one is not a measurement (the arm holds when no
        good one arrives: the watchdog sees it stale)."""
        try:
            state, has_gripper = check_joint_state(self.profile, names, positions)
            check_plausible(self.profile, state)
            stamp = float(stamp)
            if not math.isfinite(stamp):
                raise InputError("joint_states stamp is not finite")
        except ValueError as e:  # ProfileError / InputError: names the joints
            self.counters["joint_states_refused"] += 1
            return False, str(e)
        with self.lock:
            self.q_meas = state[: self.dof]
            self.q_meas_stamp = stamp
            if has_gripper:
                self.gripper_meas = float(state[self.dof])
            self.gripper_measured = has_gripper
        return True, ""

    def latent_in(
        self, latent, stamp: float, now: Optional[float] = None, future_tolerance: float = math.inf
    ) -> bool:
        """Store a latent [tokens, dim] (InputError when it is not one or its stamp is not
        finite). False, not stored: older than the one held (the newer one stays), or stamped
        more than ``future_tolerance`` after ``now`` (counted; kept, it would make every later
        good latent look out of order)."""
        b = self.bundle
        try:
            lat = check_latent_array(latent, b.latent_tokens, b.latent_dim, finite=False)
            stamp = float(stamp)
            if not math.isfinite(stamp):
                raise InputError("latent stamp is not finite")
        except (InputError, TypeError, ValueError):
            self.counters["latents_refused"] += 1
            raise
        if now is not None and stamp > float(now) + future_tolerance:
            self.counters["latents_refused"] += 1
            self.counters["latents_future"] += 1
            return False
        with self.fresh:
            if stamp < self.latent_stamp:
                return False
            self.latent = lat
            self.latent_stamp = float(stamp)
            self.latent_seq += 1
            self.fresh.notify_all()
        return True

    def tokens_in(self, indices: Any) -> None:
        """/clap/plan_tokens, paired with the next /clap/plan (InputError: wrong count/range)."""
        try:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as e:
            self.counters["plan_tokens_refused"] += 1
            raise InputError("plan tokens are not integers: %s" % e) from None
        want = self.bundle.tokens_per_chunk
        if idx.size != want:
            self.counters["plan_tokens_refused"] += 1
            raise InputError("plan has %d tokens, the bundle expects %d" % (idx.size, want))
        k = getattr(self.bundle, "codebook_size", None)
        if k and idx.size and (idx.min() < 0 or idx.max() >= k):
            self.counters["plan_tokens_refused"] += 1
            raise InputError("plan tokens outside [0, %d)" % k)
        with self.lock:
            self.pending_tokens = idx

    def plan_in(self) -> bool:
        """/clap/plan arrived: the latest tokens become the plan; False when none preceded it."""
        with self.lock:
            if self.pending_tokens is None and self.tokens is None:
                self.counters["plans_refused"] += 1
                return False
            if self.pending_tokens is not None:
                self.tokens = self.pending_tokens
        return True

    def commanded_gripper(self, value: float) -> None:
        """The opening just commanded: the model's gripper state when none is measured."""
        if not self.gripper_measured:
            with self.lock:
                self.gripper_meas = value

    # --- reads ---------------------------------------------------------------------------------
    def measured(self) -> Optional[np.ndarray]:
        with self.lock:
            return None if self.q_meas is None else self.q_meas.copy()

    def measured_at(self) -> Tuple[Optional[np.ndarray], float]:
        with self.lock:
            q = None if self.q_meas is None else self.q_meas.copy()
            return q, self.q_meas_stamp

    def start_state(self) -> Tuple[np.ndarray, float]:
        """(measured arm position, gripper opening) for the start of a run; wakes the worker,
        which may start on the pending latent."""
        with self.fresh:
            assert self.q_meas is not None
            q, g = self.q_meas.copy(), self.gripper_meas
            self.fresh.notify_all()
        return q, g

    # --- jobs ----------------------------------------------------------------------------------
    def take_job(self, running: bool) -> Optional[InferenceJob]:
        with self.lock:
            return self._take_locked(running)

    def wait_job(self, timeout: float, running) -> Optional[InferenceJob]:
        """Block up to ``timeout`` for a job; ``running()`` says whether the arm runs."""
        with self.fresh:
            job = self._take_locked(running())
            if job is None:
                # Also when a latent is pending but the arm is not running: waiting (not
                # polling) until the next latent or the start of a run keeps a held node idle.
                self.fresh.wait(timeout)
                job = self._take_locked(running())
            return job

    def _take_locked(self, running: bool) -> Optional[InferenceJob]:
        if (
            self.latent_seq == self.done_seq
            or self.latent is None
            or self.tokens is None
            or self.q_meas is None
        ):
            return None
        if not running:
            return None
        self.done_seq = self.latent_seq
        state = np.empty(self.dof + 1, dtype=np.float32)
        state[: self.dof] = self.q_meas
        state[self.dof] = self.gripper_meas
        return InferenceJob(self.latent, self.latent_stamp, self.tokens, state)
