"""Per-graph latency of a bundle's networks: torch eager vs onnxruntime CPU, in one run.

``python -m clap_train.latency --bundle models/default`` (``make bench`` runs it in a subprocess,
so the runtime package itself never imports torch). The torch modules are the bundle's own when
its training checkpoint (``provenance.checkpoint``) is on disk; otherwise they are built from the
architecture recorded in the manifest (``provenance.config`` and the graph sizes) with fresh
weights, which is what latency depends on for these dense networks. Both sides then run the same
weights: each graph is exported to a temporary ONNX file exactly as ``clap-export`` does, and
batch-1 calls alternate between torch and onnxruntime so machine noise hits both alike. One
thread each (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np


def bundle_modules(bundle_dir: Path):
    """(policy, act_vae, action_mean, action_std, num_steps, weights) for the bundle at
    ``bundle_dir``; ``weights`` says whether they are the trained ones or fresh."""
    import torch
    import yaml

    from .act_vae import ActVAE, load_act_vae
    from .config import config_from_dict
    from .ntp import ClapNTP
    from .rf import ClapPolicy, load_policy

    m = yaml.safe_load((Path(bundle_dir) / "manifest.yaml").read_text())
    prov = m.get("provenance") or {}
    norm = m["normalization"]["action"]
    num_steps = int(m["rf"]["num_steps"])
    ck_path, av_path = prov.get("checkpoint"), prov.get("act_vae_checkpoint")
    if ck_path and av_path and Path(ck_path).is_file() and Path(av_path).is_file():
        policy, ck = load_policy(ck_path)
        # a relative checkpoint path may name another run's file (runs/default of an older
        # bundle): only a checkpoint at the bundle's own step counts as its weights
        if prov.get("step") is None or int(ck.step) == int(prov["step"]):
            act_vae, _ = load_act_vae(av_path)
            return policy, act_vae, norm["mean"], norm["std"], num_steps, "trained (%s)" % ck_path
    if not prov.get("config"):
        raise ValueError(
            "%s: the manifest records no training config to rebuild the networks from" % bundle_dir
        )
    cfg = config_from_dict(prov["config"])
    torch.manual_seed(0)
    ntp = ClapNTP(
        cfg.ntp,
        image_size=int(m["image"]["height"]),
        codebook_size=int(m["codebook"]["size"]),
        num_tokens=int(m["codebook"]["tokens_per_chunk"]),
        state_dim=int(m["state"]["dim"]),
        vocab_size=int(m["instruction"]["vocab_size"]),
    )
    a_dim, h = int(m["action_space"]["dim"]), int(m["chunk_length"])
    act_vae = ActVAE(cfg.act_vae, a_dim, h)
    import dataclasses

    policy = ClapPolicy(
        dataclasses.replace(cfg.rf, km_weight=0.0),
        ntp,
        act_vae.codebook.weight,
        action_dim=a_dim,
        chunk_len=h,
    )
    return (
        policy.eval(),
        act_vae.eval(),
        norm["mean"],
        norm["std"],
        num_steps,
        "fresh weights, architecture of the bundle (its checkpoint is not on this machine)",
    )


def measure(
    bundle_dir: Path, runs: int = 200, warmup: int = 20, threads: int = 1
) -> Dict[str, Any]:
    import onnxruntime as ort
    import torch

    from .export import export_graph, graph_specs

    torch.set_num_threads(threads)
    policy, act_vae, mean, std, num_steps, weights = bundle_modules(bundle_dir)
    specs = graph_specs(policy, act_vae, mean, std, num_steps)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    graphs: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="clap_latency_") as tmp:
        for spec in specs:
            path = export_graph(spec, Path(tmp) / (spec.name + ".onnx"))
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            args = spec.make_inputs(1, torch.Generator().manual_seed(0))
            feeds = {n: x.numpy() for (n, _, _), x in zip(spec.inputs, args)}
            module = spec.module.eval()
            t_torch, t_ort = [], []
            with torch.inference_mode():
                for i in range(warmup + runs):
                    t0 = time.perf_counter()
                    module(*args)
                    t1 = time.perf_counter()
                    sess.run(None, feeds)
                    t2 = time.perf_counter()
                    if i >= warmup:
                        t_torch.append(t1 - t0)
                        t_ort.append(t2 - t1)
            tt, to = float(np.median(t_torch)) * 1e3, float(np.median(t_ort)) * 1e3
            graphs[spec.name] = {
                "torch_eager_ms": tt,
                "onnxruntime_ms": to,
                "torch_eager_p99_ms": float(np.percentile(t_torch, 99)) * 1e3,
                "onnxruntime_p99_ms": float(np.percentile(t_ort, 99)) * 1e3,
                "speedup": tt / to if to > 0 else float("nan"),
            }
    return {
        "bundle": str(bundle_dir),
        "weights": weights,
        "threads": threads,
        "runs": runs,
        "batch": 1,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "graphs": graphs,
    }


def format_table(res: Dict[str, Any]) -> str:
    lines = ["%-18s %14s %14s %12s" % ("graph", "torch eager ms", "onnxruntime ms", "torch / ORT")]
    for name, g in res["graphs"].items():
        lines.append(
            "%-18s %14.3f %14.3f %11.2fx"
            % (name, g["torch_eager_ms"], g["onnxruntime_ms"], g["speedup"])
        )
    lines.append(
        "(medians of %d alternating batch-1 calls, %d thread; weights: %s)"
        % (res["runs"], res["threads"], res["weights"])
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m clap_train.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bundle", default="models/default", help="model bundle directory")
    p.add_argument("--runs", type=int, default=200, help="timed calls per graph and side")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    try:
        res = measure(Path(args.bundle), runs=args.runs, threads=args.threads)
    except (OSError, ValueError, KeyError) as e:
        print("clap_train.latency: error: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(res) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
