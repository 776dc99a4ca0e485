"""Model bundle writing: manifest.yaml with the sha256 of every file.

Verification, sha256 and TensorRT engine building live in the torch-free runtime
(``clap_ros.inference.bundle`` / ``clap_ros.inference.tensorrt_engine``): the exporter and the
robot check bundles with the same code, so they cannot disagree about what a valid bundle is.
The names below are re-exported for the exporter and existing callers. Layout: DESIGN.md
section 5; manifest keys: docs/INTERFACES.md ("Model bundle").
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Union

import yaml

from clap_ros.inference.bundle import (  # noqa: F401  (re-exported)
    FORMAT,
    GRAPH_FILES,
    MANIFEST,
    TOKENIZER_FILE,
    VERSION,
    BundleError,
    load_manifest,
    sha256_file,
    verify_files as verify_bundle,
)
from clap_ros.inference.tensorrt_engine import (  # noqa: F401  (re-exported)
    build_tensorrt_engine,
    cuda_device_name,
    engine_cache_key,
)


def git_commit(repo: Union[str, Path, None] = None) -> Optional[str]:
    """The checkout's HEAD commit (with ``-dirty`` when there are local changes), or None."""
    repo = Path(repo or Path(__file__).resolve().parents[2])
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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
