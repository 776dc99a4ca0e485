"""Torch-free CLAP runtime over a verified model bundle: encode, plan (CLAP-NTP) and act (CLAP-RF).

The nodes call these three methods; everything model-specific (shapes, tokenizer, preprocessing)
comes from the bundle, so a new bundle needs no code change. Every output is checked for NaN/Inf:
a diverged model must stop the arm through the action node's controlled stop, never reach it as a
command.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Deque, Dict, Optional, Tuple, Union

import numpy as np

from clap_ros.inference.backends import Session, create_session
from clap_ros.inference.bundle import GRAPH_FILES, Bundle, load_bundle
from clap_ros.inference.preprocess import Calibration, Preprocessor


class InferenceError(RuntimeError):
    """A graph produced a non-finite value, or was given inputs of the wrong shape."""


@dataclass(frozen=True)
class LatencyStats:
    count: int
    last_s: float
    median_s: float
    p99_s: float


class ClapRuntime:
    """The four bundle graphs on one backend.

    ``encode(image) -> latent [N, C]``; ``plan(latent, instruction, state) -> (indices [T],
    coarse_chunk [H, A])``; ``act(latent, plan_indices, state, rng) -> chunk [H, A]``.
    Chunks are in the bundle's action space (``bundle.action_space``), de-normalised; step i is
    ``i / bundle.control_rate_hz`` after the source camera frame. Each method is thread-safe per
    graph (a node may run plan and act on different threads)."""

    def __init__(
        self,
        bundle: Union[Bundle, str, Path],
        backend: str = "auto",
        cache_dir: Union[str, Path, None] = None,
        intra_op_num_threads: int = 1,
        precision: str = "fp16",
        calibration: Optional[Calibration] = None,
        warmup: bool = True,
        available_providers=None,
    ):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        b = self.bundle
        self.sessions: Dict[str, Session] = {}
        for name in GRAPH_FILES:
            self.sessions[name] = create_session(
                b.graphs[name].path,
                backend=backend,
                cache_dir=cache_dir,
                intra_op_num_threads=intra_op_num_threads,
                precision=precision,
                warmup=warmup,
                available_providers=available_providers,
            )
        self.backend = self.sessions["encoder"].backend
        self.backend_reason = self.sessions["encoder"].reason
        self.preprocessor = Preprocessor(b.image_height, b.image_width, calibration)
        self.tokenizer = b.tokenizer
        self._locks = {name: threading.Lock() for name in self.sessions}
        self._latency: Dict[str, Deque[float]] = {
            k: deque(maxlen=1000) for k in ("encode", "plan", "act")
        }
        self._instruction_cache: Tuple[Optional[str], Optional[Tuple[np.ndarray, np.ndarray]]] = (
            None,
            None,
        )

    # -- helpers ------------------------------------------------------------------------------
    def _run(self, graph: str, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        with self._locks[graph]:
            out = self.sessions[graph].run(feeds)
        for spec in self.bundle.graphs[graph].outputs:
            arr = out[spec.name]
            want = spec.concrete(arr.shape[0] if arr.ndim else 1)
            if arr.shape != want:
                raise InferenceError(
                    f"{graph} graph output '{spec.name}' has shape "
                    f"{list(arr.shape)}, the manifest says {list(want)}"
                )
        for name, arr in out.items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise InferenceError(
                    f"{graph} graph output '{name}' has {bad} non-finite "
                    f"value(s) (NaN/Inf) out of {arr.size}"
                )
        return out

    def _record(self, key: str, t0: float) -> None:
        self._latency[key].append(time.perf_counter() - t0)

    def _state(self, state) -> np.ndarray:
        s = np.asarray(state, dtype=np.float32).reshape(-1)
        if s.shape != (self.bundle.state_dim,):
            raise InferenceError(
                f"state must have {self.bundle.state_dim} values (arm joints in "
                f"profile order + gripper opening), got {s.shape[0]}"
            )
        if not np.all(np.isfinite(s)):
            raise InferenceError(f"state has non-finite values: {s.tolist()}")
        return s[None]

    def _latent(self, latent) -> np.ndarray:
        lat = np.asarray(latent, dtype=np.float32)
        want = (self.bundle.latent_tokens, self.bundle.latent_dim)
        if lat.shape == (1,) + want:
            lat = lat[0]
        if lat.shape != want:
            raise InferenceError(f"latent must have shape {list(want)}, got {list(lat.shape)}")
        if not np.all(np.isfinite(lat)):
            raise InferenceError("latent has non-finite values")
        return np.ascontiguousarray(lat[None])

    def _indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices).reshape(-1)
        t, k = self.bundle.tokens_per_chunk, self.bundle.codebook_size
        if idx.shape != (t,):
            raise InferenceError(f"plan indices must have {t} tokens, got {idx.shape[0]}")
        if idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= k:
            raise InferenceError(f"plan indices must be integers in [0, {k}), got {idx.tolist()}")
        return idx.astype(np.int64)[None]

    def instruction_ids(self, instruction: str) -> Tuple[np.ndarray, np.ndarray]:
        """Token ids and mask ``[1, L]`` for an instruction (cached: plans repeat it at 5 Hz)."""
        text, cached = self._instruction_cache
        if text != instruction or cached is None:
            cached = self.tokenizer.encode_batch([instruction])
            self._instruction_cache = (instruction, cached)
        return cached

    # -- the three calls ----------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB -> encoder input [1, 3, H, W] (undistorted when calibrated)."""
        return self.preprocessor(image)

    def encode(self, image: np.ndarray) -> np.ndarray:
        """latent ``[N, C]`` from a uint8 HxWx3 RGB image, or from an already preprocessed float32
        ``[3, H, W]`` / ``[1, 3, H, W]`` array."""
        t0 = time.perf_counter()
        img = np.asarray(image)
        if img.dtype == np.uint8:
            x = self.preprocess(img)
        else:
            x = np.asarray(img, dtype=np.float32)
            if x.ndim == 3:
                x = x[None]
            want = (1, 3, self.bundle.image_height, self.bundle.image_width)
            if x.shape != want:
                raise InferenceError(
                    f"preprocessed image must have shape {list(want)}, got {list(x.shape)}"
                )
        out = self._run("encoder", {"image": np.ascontiguousarray(x)})
        self._record("encode", t0)
        return out["latent"][0]

    def plan(self, latent, instruction: str, state) -> Tuple[np.ndarray, np.ndarray]:
        """Greedy NTP action tokens ``[T]`` and their decoded coarse chunk ``[H, A]``."""
        t0 = time.perf_counter()
        ids, mask = self.instruction_ids(instruction)
        out = self._run(
            "planner",
            {
                "latent": self._latent(latent),
                "instruction_ids": ids,
                "instruction_mask": mask,
                "state": self._state(state),
            },
        )
        indices = out["indices"].astype(np.int64)
        k = self.bundle.codebook_size
        if indices.min() < 0 or indices.max() >= k:
            raise InferenceError(f"planner emitted token ids outside [0, {k}): {indices.tolist()}")
        chunk = self._run("codebook_decoder", {"indices": indices})["chunk"]
        self._record("plan", t0)
        return indices[0], chunk[0]

    def act(
        self, latent, plan_indices, state, rng: Optional[np.random.Generator] = None
    ) -> np.ndarray:
        """CLAP-RF action chunk ``[H, A]``; the flow's starting noise comes from ``rng`` (a seeded
        numpy Generator gives reproducible chunks)."""
        t0 = time.perf_counter()
        rng = rng if rng is not None else np.random.default_rng()
        b = self.bundle
        noise = rng.standard_normal((1, b.chunk_length, b.action_dim), dtype=np.float32)
        out = self._run(
            "rf_policy",
            {
                "latent": self._latent(latent),
                "plan_indices": self._indices(plan_indices),
                "state": self._state(state),
                "noise": noise,
            },
        )
        self._record("act", t0)
        return out["actions"][0]

    def joint_targets(self, chunk: np.ndarray, state) -> np.ndarray:
        """Absolute joint targets + gripper ``[H, A]`` from a chunk in the bundle's action space:
        ``joint_abs`` as is, ``joint_delta`` with the measured arm joints of ``state`` (taken at
        the chunk's source frame) added back. ``ee_delta`` needs inverse kinematics, which the
        runtime does not do: an InferenceError, so a node fails at its first chunk, loudly."""
        chunk = np.asarray(chunk, dtype=np.float64)
        b = self.bundle
        if chunk.shape != (b.chunk_length, b.action_dim):
            raise InferenceError(
                f"chunk must have shape {[b.chunk_length, b.action_dim]}, got {list(chunk.shape)}"
            )
        if b.action_space == "joint_abs":
            return chunk.copy()
        if b.action_space == "joint_delta":
            s = self._state(state)[0].astype(np.float64)
            arm = len(b.joint_names)
            out = chunk.copy()
            out[:, :arm] += s[:arm]
            return out
        raise InferenceError(
            f"action space '{b.action_space}' cannot be turned into joint targets "
            f"by the runtime (needs inverse kinematics)"
        )

    # -- introspection ------------------------------------------------------------------------
    def latency(self, call: str) -> Optional[LatencyStats]:
        """Wall-clock latency of ``encode``/``plan``/``act`` over the last 1000 calls."""
        d = self._latency[call]
        if not d:
            return None
        arr = np.fromiter(d, dtype=np.float64)
        return LatencyStats(
            len(arr), float(arr[-1]), float(np.median(arr)), float(np.percentile(arr, 99))
        )

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()
