"""Native TensorRT engines: build from ONNX with an on-disk cache, load and run them.

An engine is only valid for one GPU model, one TensorRT version, one ONNX file and one precision,
so all four are hashed into the cache file name: a driver or GPU change builds a new engine
instead of loading an incompatible one. Device memory is handled through the CUDA runtime
library with ctypes, so neither torch nor pycuda is needed on the robot computer.

Optional dependencies: ``tensorrt`` (the Python package) and a CUDA GPU. Nothing here is imported
by the CPU path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from clap_ros.inference.bundle import sha256_file

PRECISIONS = ("fp16", "fp32")


class TensorRTError(RuntimeError):
    """TensorRT or CUDA is unavailable, or an engine cannot be built, loaded or run."""


def engine_cache_key(gpu_name: str, trt_version: str, onnx_sha256: str, precision: str) -> str:
    raw = json.dumps([gpu_name, trt_version, onnx_sha256, precision])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def cuda_device_name(index: int = 0) -> str:
    """GPU name without torch: via nvidia-smi (present wherever the NVIDIA driver is)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(index)],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise TensorRTError(f"no CUDA GPU visible (nvidia-smi failed: {exc})") from None
    if not out:
        raise TensorRTError("no CUDA GPU visible (nvidia-smi lists none)")
    return out.splitlines()[0].strip()


def tensorrt_available() -> Optional[str]:
    """None when native TensorRT can be used here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"python package 'tensorrt' not importable ({exc})"
    try:
        cuda_device_name()
    except TensorRTError as exc:
        return str(exc)
    try:
        _cudart()
    except TensorRTError as exc:
        return str(exc)
    return None


def engine_path_for(
    onnx_path: Union[str, Path],
    cache_dir: Union[str, Path],
    precision: str,
    gpu_name: Optional[str] = None,
    trt_version: Optional[str] = None,
) -> Path:
    if trt_version is None:
        import tensorrt as trt

        trt_version = trt.__version__
    gpu_name = gpu_name or cuda_device_name()
    key = engine_cache_key(gpu_name, trt_version, sha256_file(onnx_path), precision)
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{key}.engine"


def build_tensorrt_engine(
    onnx_path: Union[str, Path],
    cache_dir: Union[str, Path],
    precision: str = "fp16",
    max_batch: int = 4,
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Build (or reuse from ``cache_dir``) a serialized engine for ``onnx_path``; the dynamic
    batch axis gets an optimisation profile 1..max_batch, optimised for 1 (the robot's case)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTError(f"native TensorRT needs the 'tensorrt' package: {exc}") from None
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    engine_path = engine_path_for(onnx_path, cache_dir, precision, trt_version=trt.__version__)
    if engine_path.is_file() and engine_path.stat().st_size > 0:
        return engine_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # removed in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        fixed = [int(s) for s in list(inp.shape)[1:]]
        if any(s < 0 for s in fixed):
            raise TensorRTError(
                f"{onnx_path}: input {inp.name} has a dynamic non-batch axis {list(inp.shape)}"
            )
        profile.set_shape(inp.name, [1] + fixed, [1] + fixed, [max_batch] + fixed)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT failed to build an engine for {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)  # atomic: a concurrent reader never sees half an engine
    return engine_path


# ----------------------------------------------------------------------------------------------
# CUDA runtime through ctypes (only the handful of calls an engine needs)

_CUDART = None
_H2D, _D2H = 1, 2


def _cudart():
    global _CUDART
    if _CUDART is not None:
        return _CUDART
    names = [
        ctypes.util.find_library("cudart"),
        "libcudart.so",
        "libcudart.so.12",
        "libcudart.so.13",
        "libcudart.so.11.0",
    ]
    # pip wheels (nvidia-cuda-runtime-cu12) ship the library inside site-packages
    try:
        import nvidia.cuda_runtime as _ncr

        for base in list(getattr(_ncr, "__path__", [])):
            names += [str(p) for p in sorted(Path(base, "lib").glob("libcudart.so*"))]
    except ImportError:
        pass
    errors = []
    for n in names:
        if not n:
            continue
        try:
            lib = ctypes.CDLL(n)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        raise TensorRTError("CUDA runtime library (libcudart) not found: " + "; ".join(errors[-2:]))
    lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    lib.cudaFree.argtypes = [ctypes.c_void_p]
    lib.cudaMemcpyAsync.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
    lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]
    lib.cudaGetErrorString.restype = ctypes.c_char_p
    _CUDART = lib
    return lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        msg = _cudart().cudaGetErrorString(rc)
        raise TensorRTError(f"CUDA {what} failed: {msg.decode() if msg else rc}")


class _DeviceBuffer:
    def __init__(self, nbytes: int):
        self.ptr = ctypes.c_void_p()
        self.nbytes = max(int(nbytes), 1)
        _check(_cudart().cudaMalloc(ctypes.byref(self.ptr), self.nbytes), "cudaMalloc")

    def free(self) -> None:
        if self.ptr:
            _cudart().cudaFree(self.ptr)
            self.ptr = ctypes.c_void_p()


class TensorRTEngineSession:
    """Runs one serialized engine; ``run(feeds)`` takes and returns numpy arrays by tensor name.

    Buffers are sized for the largest batch seen so far and reused, so the steady state does no
    allocation."""

    def __init__(self, engine_path: Union[str, Path]):
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise TensorRTError(f"native TensorRT needs the 'tensorrt' package: {exc}") from None
        self._trt = trt
        self.engine_path = Path(engine_path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise TensorRTError(
                f"{self.engine_path}: TensorRT could not deserialize the engine "
                f"(built by another TensorRT version or GPU?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names: List[str] = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self.output_names: List[str] = [n for n in names if n not in self.input_names]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._buffers: Dict[str, _DeviceBuffer] = {}
        stream = ctypes.c_void_p()
        _check(_cudart().cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        self._stream = stream

    def _buffer(self, name: str, nbytes: int) -> _DeviceBuffer:
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self._buffers[name] = _DeviceBuffer(nbytes)
        return buf

    def run(
        self, feeds: Dict[str, np.ndarray], output_names: Optional[Sequence[str]] = None
    ) -> Dict[str, np.ndarray]:
        lib = _cudart()
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise TensorRTError(f"{self.engine_path.name}: missing inputs {missing}")
        hosts = {}
        for name in self.input_names:
            arr = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            hosts[name] = arr
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise TensorRTError(
                    f"{self.engine_path.name}: input {name} shape {arr.shape} "
                    f"outside the engine's profile"
                )
            buf = self._buffer(name, arr.nbytes)
            self.context.set_tensor_address(name, buf.ptr.value)
            _check(
                lib.cudaMemcpyAsync(buf.ptr, arr.ctypes.data, arr.nbytes, _H2D, self._stream),
                "cudaMemcpyAsync H2D",
            )
        outs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            arr = np.empty(shape, dtype=self._dtypes[name])
            buf = self._buffer(name, arr.nbytes)
            self.context.set_tensor_address(name, buf.ptr.value)
            outs[name] = arr
        if not self.context.execute_async_v3(self._stream.value):
            raise TensorRTError(f"{self.engine_path.name}: TensorRT execution failed")
        for name, arr in outs.items():
            _check(
                lib.cudaMemcpyAsync(
                    arr.ctypes.data, self._buffers[name].ptr, arr.nbytes, _D2H, self._stream
                ),
                "cudaMemcpyAsync D2H",
            )
        _check(lib.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        names = list(output_names) if output_names else self.output_names
        return {n: outs[n] for n in names}

    def close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        if self._stream:
            _cudart().cudaStreamDestroy(self._stream)
            self._stream = ctypes.c_void_p()

    def __del__(self):  # device memory is not garbage-collected by Python
        try:
            self.close()
        except Exception:
            pass
