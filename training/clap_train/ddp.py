"""Multi-process training entry for torchrun, with a per-rank parameter digest.

    python -m torch.distributed.run --nproc_per_node 2 -m clap_train.ddp ntp \\
        --config tiny --digest-dir /tmp/digests [clap-train stage options]

runs one ``clap-train`` stage under DDP (gloo on CPU, NCCL on GPU) and makes every rank write
``rank<r>.json`` with a sha256 over its trained parameters, so a test (or a user debugging a
cluster) can check that the replicas really stayed identical. Plain ``clap-train`` works under
torchrun too; this module only adds the digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch


def param_digest(module: torch.nn.Module) -> Dict[str, object]:
    """sha256 over every parameter's name and float32 bytes (order of named_parameters)."""
    h = hashlib.sha256()
    count = 0
    total = 0.0
    for name, p in module.named_parameters():
        data = p.detach().float().cpu().contiguous()
        h.update(name.encode())
        h.update(data.numpy().tobytes())
        count += data.numel()
        total += float(data.double().abs().sum())
    return {"sha256": h.hexdigest(), "num_params": count, "abs_sum": total}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .cli import STAGES
    from .common.dist import init_from_env, rank, world_size
    from .config import load_config
    from .pipeline import RunOptions, load_data, run_stage

    p = argparse.ArgumentParser(
        prog="python -m clap_train.ddp",
        description="Run one clap-train stage under torchrun and write a per-rank digest of the "
        "trained parameters (rank<r>.json in --digest-dir).",
    )
    p.add_argument(
        "stage", choices=[s for s in STAGES if s not in ("probes", "pseudo_label", "export")]
    )
    p.add_argument("--config", default="tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--synthetic", type=int, default=0, metavar="N")
    p.add_argument("--digest-dir", required=True)
    p.add_argument(
        "--backend", default=None, help="gloo | nccl (default: nccl with CUDA, else gloo)"
    )
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    init_from_env(args.backend)
    opt = RunOptions(resume=False, progress=False)
    summary = run_stage(args.stage, cfg, load_data(cfg, args.synthetic), opt)
    digest = param_digest(opt.models[args.stage])
    digest.update(
        {
            "rank": rank(),
            "world_size": world_size(),
            "stage": args.stage,
            "train": summary.get("train", {}),
        }
    )
    out = Path(args.digest_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank()}.json").write_text(json.dumps(digest, indent=1) + "\n")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
