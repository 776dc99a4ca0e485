"""Inference backends: onnxruntime (CPU, CUDA and TensorRT execution providers) and native
TensorRT engines, behind one ``Session.run(feeds) -> {name: array}`` interface.

``backend="auto"`` walks tensorrt -> cuda -> cpu and records why each better option was passed
over, so a robot that silently ended up on the CPU says so in its log. Asking explicitly for a
backend that is not available is an error, never a silent fallback: a user who asked for the GPU
must not get a 20x slower policy without knowing.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "clap_ros" / "engines"


class BackendError(RuntimeError):
    """The requested backend is unknown or unavailable, or a session cannot be created."""


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "cpu" | "cuda" | "tensorrt"
    engine: str  # "onnxruntime" | "tensorrt-native"
    providers: Tuple[str, ...]  # onnxruntime providers in priority order (empty for native)
    reason: str  # why this one (for auto: why better ones were skipped)


def select_backend(
    requested: str = "auto",
    available_providers: Optional[Sequence[str]] = None,
    native_tensorrt: Optional[Callable[[], Optional[str]]] = None,
) -> BackendChoice:
    """Pick a backend. ``available_providers`` defaults to onnxruntime's list;
    ``native_tensorrt()`` returns None when native TensorRT is usable, else why not (default:
    :func:`clap_ros.inference.tensorrt_engine.tensorrt_available`). Both are injectable so the
    selection logic is tested on machines without a GPU."""
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
    if available_providers is None:
        import onnxruntime as ort

        available_providers = ort.get_available_providers()
    avail = list(available_providers)
    if native_tensorrt is None:
        from clap_ros.inference.tensorrt_engine import tensorrt_available

        native_tensorrt = tensorrt_available

    def trt_choice() -> Tuple[Optional[BackendChoice], str]:
        if TRT_EP in avail and CUDA_EP in avail:
            return BackendChoice(
                "tensorrt",
                "onnxruntime",
                (TRT_EP, CUDA_EP, CPU_EP),
                "onnxruntime TensorRT execution provider",
            ), ""
        why_native = native_tensorrt()
        if why_native is None:
            return BackendChoice(
                "tensorrt",
                "tensorrt-native",
                (),
                "native TensorRT engine (onnxruntime has no TensorRT provider)",
            ), ""
        return None, (
            f"no {TRT_EP} in onnxruntime (available: {', '.join(avail)}) and native "
            f"TensorRT unusable: {why_native}"
        )

    def cuda_choice() -> Tuple[Optional[BackendChoice], str]:
        if CUDA_EP in avail:
            return BackendChoice(
                "cuda", "onnxruntime", (CUDA_EP, CPU_EP), "onnxruntime CUDA execution provider"
            ), ""
        return None, (
            f"no {CUDA_EP} in onnxruntime (available: {', '.join(avail)}; "
            f"install onnxruntime-gpu and a CUDA driver)"
        )

    cpu = BackendChoice("cpu", "onnxruntime", (CPU_EP,), "onnxruntime CPU execution provider")
    if requested == "cpu":
        return BackendChoice(cpu.backend, cpu.engine, cpu.providers, "requested cpu")
    if requested in ("cuda", "tensorrt"):
        choice, why = (trt_choice if requested == "tensorrt" else cuda_choice)()
        if choice is None:
            raise BackendError(
                f"backend '{requested}' requested but unavailable: {why}; "
                f"use backend:=auto or backend:=cpu"
            )
        return BackendChoice(
            choice.backend,
            choice.engine,
            choice.providers,
            f"requested {requested}: {choice.reason}",
        )
    skipped: List[str] = []
    for name, fn in (("tensorrt", trt_choice), ("cuda", cuda_choice)):
        choice, why = fn()
        if choice is not None:
            reason = "; ".join(skipped + [f"auto -> {name}: {choice.reason}"])
            return BackendChoice(choice.backend, choice.engine, choice.providers, reason)
        skipped.append(f"{name}: {why}")
    return BackendChoice("cpu", "onnxruntime", (CPU_EP,), "; ".join(skipped + ["auto -> cpu"]))


class Session:
    """One graph on one backend. ``run`` takes {input name: array} and returns {output name:
    array}; latencies of every call are kept in ``latency_s`` (the last 1000)."""

    def __init__(
        self, onnx_path: Path, choice: BackendChoice, run_fn, input_specs, output_names, closer=None
    ):
        self.onnx_path = Path(onnx_path)
        self.choice = choice
        self._run = run_fn
        self.input_specs: List[Tuple[str, Tuple[Optional[int], ...], np.dtype]] = input_specs
        self.output_names: List[str] = list(output_names)
        self._closer = closer
        self.latency_s: List[float] = []

    @property
    def backend(self) -> str:
        return self.choice.backend

    @property
    def reason(self) -> str:
        return self.choice.reason

    @property
    def input_names(self) -> List[str]:
        return [n for n, _, _ in self.input_specs]

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BackendError(f"{self.onnx_path.name}: missing inputs {missing}")
        t0 = time.perf_counter()
        out = self._run({n: np.asarray(feeds[n], dtype=dt) for n, _, dt in self.input_specs})
        dt = time.perf_counter() - t0
        self.latency_s.append(dt)
        if len(self.latency_s) > 1000:
            del self.latency_s[:-1000]
        return out

    def dummy_feeds(self, batch: int = 1) -> Dict[str, np.ndarray]:
        """Zero inputs of the graph's declared shapes (index inputs 0 are valid tokens)."""
        return {
            n: np.zeros(tuple(batch if s is None else s for s in shape), dtype=dt)
            for n, shape, dt in self.input_specs
        }

    def warmup(self, runs: int = 2) -> float:
        """First calls allocate arenas / build kernels; do them before the robot needs an answer.
        Returns the slowest warm-up call in seconds."""
        worst = 0.0
        feeds = self.dummy_feeds()
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            self._run(feeds)
            worst = max(worst, time.perf_counter() - t0)
        return worst

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None


_NP_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int32)": np.dtype(np.int32),
}


def _ort_session(
    onnx_path: Path, choice: BackendChoice, cache_dir: Path, threads: int, precision: str
):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    # one request at a time on a robot: a single inter-op thread avoids oversubscribing the cores
    # the streaming loop needs
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers: List[Union[str, Tuple[str, dict]]] = []
    for p in choice.providers:
        if p == TRT_EP:
            cache_dir.mkdir(parents=True, exist_ok=True)
            providers.append(
                (
                    TRT_EP,
                    {
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache_dir),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(cache_dir),
                        "trt_fp16_enable": precision == "fp16",
                    },
                )
            )
        else:
            providers.append(p)
    try:
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        raise BackendError(
            f"{onnx_path.name}: onnxruntime could not create a {choice.backend} session: {exc}"
        ) from None
    active = sess.get_providers()
    if choice.providers and active[0] != choice.providers[0]:
        raise BackendError(
            f"{onnx_path.name}: asked onnxruntime for {choice.providers[0]} but "
            f"it activated {active} (driver or library missing?)"
        )
    specs = []
    for i in sess.get_inputs():
        shape = tuple(None if not isinstance(s, int) else int(s) for s in i.shape)
        specs.append((i.name, shape, _NP_DTYPES.get(i.type, np.dtype(np.float32))))
    out_names = [o.name for o in sess.get_outputs()]

    def run(feeds):
        return dict(zip(out_names, sess.run(out_names, feeds)))

    return run, specs, out_names, None


def _native_session(onnx_path: Path, cache_dir: Path, precision: str):
    from clap_ros.inference.tensorrt_engine import TensorRTEngineSession, build_tensorrt_engine

    engine = build_tensorrt_engine(onnx_path, cache_dir, precision)
    sess = TensorRTEngineSession(engine)
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    types = {1: np.dtype(np.float32), 7: np.dtype(np.int64)}
    specs = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        shape = tuple(None if d.dim_param else int(d.dim_value) for d in tt.shape.dim)
        specs.append((v.name, shape, types.get(tt.elem_type, np.dtype(np.float32))))
    out_names = [o.name for o in model.graph.output]

    def run(feeds):
        return sess.run(feeds, out_names)

    return run, specs, out_names, sess.close


def create_session(
    onnx_path: Union[str, Path],
    backend: str = "auto",
    cache_dir: Union[str, Path, None] = None,
    intra_op_num_threads: int = 1,
    precision: str = "fp16",
    warmup: bool = True,
    available_providers: Optional[Sequence[str]] = None,
) -> Session:
    """An inference session for one ONNX graph; ``session.choice.reason`` (also logged) says why
    this backend. ``cache_dir`` holds TensorRT engines (default ~/.cache/clap_ros/engines).
    ``intra_op_num_threads`` 0 lets onnxruntime use every core; the default 1 leaves the other
    cores to the command loop."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX graph {onnx_path} does not exist")
    if precision not in ("fp16", "fp32"):
        raise BackendError(f"precision must be fp16 or fp32, got {precision!r}")
    if int(intra_op_num_threads) < 0:
        raise BackendError(f"intra_op_num_threads must be >= 0, got {intra_op_num_threads}")
    if available_providers is None:
        import onnxruntime as ort

        available_providers = ort.get_available_providers()
    avail = list(available_providers)
    from clap_ros.inference.tensorrt_engine import TensorRTError, tensorrt_available

    native: Callable[[], Optional[str]] = tensorrt_available
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    failed: List[str] = []
    while True:
        choice = select_backend(backend, avail, native)
        try:
            if choice.engine == "tensorrt-native":
                try:
                    run, specs, outs, closer = _native_session(onnx_path, cache, precision)
                except TensorRTError as exc:
                    raise BackendError(f"{onnx_path.name}: {exc}") from None
            else:
                run, specs, outs, closer = _ort_session(
                    onnx_path, choice, cache, intra_op_num_threads, precision
                )
            break
        except BackendError as exc:
            # a provider can be listed yet unusable (onnxruntime-gpu without a driver); auto
            # moves on to the next option and says so, an explicit request fails
            if backend != "auto" or choice.backend == "cpu":
                raise
            failed.append(f"{choice.backend} listed but failed: {exc}")
            if choice.engine == "tensorrt-native":
                native = functools.partial(str, exc)
            else:
                avail = [p for p in avail if p != choice.providers[0]]
    if failed:
        choice = BackendChoice(
            choice.backend, choice.engine, choice.providers, "; ".join(failed + [choice.reason])
        )
    session = Session(onnx_path, choice, run, specs, outs, closer)
    log.info("%s: backend %s (%s)", onnx_path.name, choice.backend, choice.reason)
    if warmup:
        session.warmup()
    return session
