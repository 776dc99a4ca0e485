"""``clap-ros bundle check``: verify a model bundle and time one inference per graph."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict

CHECK_HELP = """\
Load a model bundle the way the nodes do (manifest, sha256 of every file, graph inputs/outputs
against the manifest, robot profile and joint names), create a session per graph on the chosen
backend, run each graph on realistic inputs and print output shapes and latency (median and p99
over --runs calls, batch 1). Exit code 0 = usable bundle, 1 = bundle or backend error.

Example:
  clap-ros bundle check models/default --backend cpu --runs 20
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="inspect and verify model bundles",
        description="Inspect and verify CLAP model bundles (models/<name>/).",
    )
    bsub = p.add_subparsers(dest="bundle_command", metavar="ACTION")
    c = bsub.add_parser(
        "check",
        help="verify a bundle and time each graph",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("path", help="bundle directory (with manifest.yaml)")
    c.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        help="inference backend (default: auto, which says why it picked one)",
    )
    c.add_argument("--runs", type=int, default=20, help="timed calls per graph (default: 20)")
    c.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads (0 = all cores; default: 1)",
    )
    c.add_argument("--cache-dir", default=None, help="TensorRT engine cache directory")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_check(args: argparse.Namespace) -> int:
    import numpy as np

    from clap_ros.inference.backends import BackendError
    from clap_ros.inference.bundle import BundleError, load_bundle
    from clap_ros.inference.policy import ClapRuntime, InferenceError

    if args.runs < 1:
        print("error: --runs must be >= 1", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.path)
        rt = ClapRuntime(
            bundle,
            backend=args.backend,
            cache_dir=args.cache_dir,
            intra_op_num_threads=args.threads,
        )
    except (BundleError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    b = bundle
    rng = np.random.default_rng(0)
    state = np.asarray(
        b.manifest.get("normalization", {}).get("state", {}).get("mean") or np.zeros(b.state_dim),
        dtype=np.float32,
    )
    image = rng.integers(0, 256, (b.image_height, b.image_width, 3), dtype=np.uint8)
    try:
        latent = rt.encode(image)
        indices, coarse = rt.plan(latent, "put the red cube in the blue bowl", state)
        chunk = rt.act(latent, indices, state, rng)
    except InferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ids, mask = rt.instruction_ids("put the red cube in the blue bowl")
    feeds = {
        "encoder": {"image": rt.preprocess(image)},
        "planner": {
            "latent": latent[None],
            "instruction_ids": ids,
            "instruction_mask": mask,
            "state": state[None],
        },
        "codebook_decoder": {"indices": indices[None]},
        "rf_policy": {
            "latent": latent[None],
            "plan_indices": indices[None],
            "state": state[None],
            "noise": rng.standard_normal((1, b.chunk_length, b.action_dim), dtype=np.float32),
        },
    }
    result: Dict[str, Any] = {
        "bundle": str(b.path),
        "robot": b.robot,
        "backend": rt.backend,
        "backend_reason": rt.backend_reason,
        "graphs": {},
    }
    for name, sess in rt.sessions.items():
        times = []
        out: Dict[str, np.ndarray] = {}
        for _ in range(args.runs):
            sess.latency_s.clear()
            out = sess.run(feeds[name])
            times.append(sess.latency_s[-1])
        t = np.asarray(times) * 1e3
        result["graphs"][name] = {
            "outputs": {k: list(v.shape) for k, v in out.items()},
            "median_ms": float(np.median(t)),
            "p99_ms": float(np.percentile(t, 99)),
        }
    result["chunk_shape"] = list(chunk.shape)
    result["coarse_shape"] = list(coarse.shape)
    rt.close()
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"bundle {b.path}: OK (robot {b.robot}, {b.action_space}, chunk {b.chunk_length}x"
        f"{b.action_dim} at {b.control_rate_hz:g} Hz, latent {b.latent_tokens}x{b.latent_dim})"
    )
    print(f"backend: {rt.backend} ({rt.backend_reason})")
    print(f"{'graph':18s} {'outputs':40s} {'median ms':>10s} {'p99 ms':>8s}")
    for name, g in result["graphs"].items():
        outs = ", ".join(f"{k}{v}" for k, v in g["outputs"].items())
        print(f"{name:18s} {outs:40s} {g['median_ms']:10.3f} {g['p99_ms']:8.3f}")
    return 0
