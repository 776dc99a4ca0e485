"""Model bundle files: manifest.yaml with sha256 of every file, verification, TensorRT engines.

Torch-free on purpose (yaml, hashlib, optional tensorrt), so the same checks can run on a robot
computer that only has the runtime. The bundle layout is DESIGN.md section 5; the manifest's keys
are documented in docs/INTERFACES.md ("Model bundle").
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

MANIFEST = "manifest.yaml"
FORMAT = "clap_ros_model_bundle"
VERSION = 1
GRAPH_FILES = {"encoder": "encoder.onnx", "planner": "planner.onnx",
               "codebook_decoder": "codebook_decoder.onnx", "rf_policy": "rf_policy.onnx"}
TOKENIZER_FILE = "tokenizer.json"


class BundleError(ValueError):
    """A bundle is incomplete, or a file does not match its manifest entry."""


def sha256_file(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(repo: Union[str, Path, None] = None) -> Optional[str]:
    """The checkout's HEAD commit (with ``-dirty`` when there are local changes), or None."""
    repo = Path(repo or Path(__file__).resolve().parents[2])
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _plain(obj: Any) -> Any:
    """YAML-safe plain types (numpy arrays/scalars become lists/floats)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, str):  # str subclasses (e.g. torch's TorchVersion) are not YAML-safe
        return str(obj)
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_manifest(out_dir: Union[str, Path], manifest: Dict[str, Any]) -> Path:
    """Fill in the sha256 and size of every graph and listed file, then write manifest.yaml."""
    out_dir = Path(out_dir)
    manifest = _plain(manifest)
    manifest.setdefault("format", FORMAT)
    manifest.setdefault("version", VERSION)
    for name, entry in manifest.get("graphs", {}).items():
        path = out_dir / entry["file"]
        if not path.is_file():
            raise BundleError(f"graph {name}: {path} does not exist")
        entry["sha256"] = sha256_file(path)
        entry["bytes"] = path.stat().st_size
    for rel, entry in manifest.get("files", {}).items():
        path = out_dir / rel
        if not path.is_file():
            raise BundleError(f"file {path} listed in the manifest does not exist")
        entry["sha256"] = sha256_file(path)
        entry["bytes"] = path.stat().st_size
    path = out_dir / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
    os.replace(tmp, path)
    return path


def load_manifest(bundle_dir: Union[str, Path]) -> Dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    if int(data.get("version", -1)) != VERSION:
        raise BundleError(f"{path}: unsupported bundle version {data.get('version')!r}")
    return data


def verify_bundle(bundle_dir: Union[str, Path]) -> Dict[str, Any]:
    """Check that every graph of DESIGN.md section 5 is there and every file matches its sha256;
    returns the manifest, raises BundleError listing all problems otherwise."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    problems: List[str] = []
    graphs = manifest.get("graphs", {})
    for name in GRAPH_FILES:
        if name not in graphs:
            problems.append(f"graph {name} missing from manifest")
    entries = list(graphs.values()) + [dict(file=k, **v) for k, v in manifest.get("files", {}).items()]
    for entry in entries:
        path = bundle_dir / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{entry['file']}: sha256 mismatch (file changed after export?)")
    if problems:
        raise BundleError(f"bundle {bundle_dir} is invalid: " + "; ".join(problems))
    return manifest


# ----------------------------------------------------------------------------------------------
# TensorRT


def engine_cache_key(gpu_name: str, trt_version: str, onnx_sha256: str, precision: str) -> str:
    """Engines are only valid for one GPU model and TensorRT version, so all four go in the key."""
    raw = json.dumps([gpu_name, trt_version, onnx_sha256, precision])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def build_tensorrt_engine(onnx_path: Union[str, Path], cache_dir: Union[str, Path],
                          precision: str = "fp16", max_batch: int = 4,
                          workspace_bytes: int = 1 << 30) -> Path:
    """Build (or reuse from ``cache_dir``) a serialized TensorRT engine for ``onnx_path``.

    Needs the ``tensorrt`` package and a CUDA GPU; the dynamic batch axis gets an optimisation
    profile 1..max_batch (opt 1, the robot's case)."""
    import tensorrt as trt  # optional dependency: only present on GPU machines

    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
    onnx_path = Path(onnx_path)
    gpu = _cuda_device_name()
    key = engine_cache_key(gpu, trt.__version__, sha256_file(onnx_path), precision)
    cache_dir = Path(cache_dir)
    engine_path = cache_dir / f"{onnx_path.stem}-{key}.engine"
    if engine_path.is_file() and engine_path.stat().st_size > 0:
        return engine_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = list(inp.shape)
        fixed = [int(s) for s in shape[1:]]
        if any(s < 0 for s in fixed):
            raise RuntimeError(f"{onnx_path}: input {inp.name} has a dynamic non-batch axis {shape}")
        profile.set_shape(inp.name, [1] + fixed, [1] + fixed, [max_batch] + fixed)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
    return engine_path


def _cuda_device_name() -> str:
    """GPU name without torch (runtime machines may not have it): via nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"no CUDA GPU visible (nvidia-smi failed: {exc})") from None
    if not out:
        raise RuntimeError("no CUDA GPU visible")
    return out.splitlines()[0]
