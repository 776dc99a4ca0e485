"""The ``clap-train`` command: train one CLAP stage, or the whole pipeline, from a YAML preset.

Works the same under ``torchrun`` (DDP): the process group is initialised from the environment
torchrun sets (gloo on CPU, NCCL on GPU), every rank loads the same data, rank 0 writes
checkpoints, logs and the bundle.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Sequence

from .pipeline import STAGES

STAGE_HELP = {
    "act_vae": "stage 1: Act-VAE (VQ-VAE codebook over robot action chunks)",
    "visual_lam": "stage 2: visual latent actions (CLAP SigLIP + ConLA) on the frozen codebook",
    "lapa": "baseline: LAPA-style latent action quantiser (pixel reconstruction)",
    "probes": "probes on held-out episodes and the CLAP/ConLA vs LAPA table",
    "pseudo_label": "stage 3: human videos -> action tokens (written next to the videos)",
    "ntp": "stage 4: CLAP-NTP, causal transformer emitting <ACT_k> tokens",
    "rf": "stage 5: CLAP-RF rectified-flow head + Knowledge Matching",
    "export": "ONNX bundle + onnxruntime parity from the RF checkpoint (see also clap-export)",
}

DESCRIPTION = """\
Train the CLAP stages of clap_ros from the sim's robot demonstrations and human videos.

Every stage reads the typed config (a preset from training/configs or a YAML path), writes
checkpoints, TensorBoard logs and metrics.jsonl under <out_dir>/<stage>/ and resumes from
<out_dir>/<stage>/last.safetensors unless --no-resume is given.

examples:
  clap-train act_vae --config tiny --set data.robot_dataset=datasets/fr3_pick_place
  clap-train ntp --config tiny --set ntp.human_mix=0.5 --set ntp.steps=500
  clap-train pipeline --config tiny --synthetic 24 --bundle models/smoke
  clap-train experiment all --scale cpu      (issue-6 experiments -> docs/RESULTS.md)
  torchrun --nproc_per_node 2 -m clap_train.cli ntp --config tiny      (DDP; gloo on CPU)
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default="tiny",
        help="preset name in training/configs (tiny, default, paper) or a YAML file",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, repeatable (e.g. --set rf.km_weight=0.01)",
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="train on N synthetic moving-square episodes (+ N human clips) instead "
        "of data.robot_dataset / data.human_videos (smoke tests, CI)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if <out_dir>/<stage>/last.safetensors exists",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--summary",
        default=None,
        metavar="PATH",
        help="also write the stage summary (metrics, checkpoint paths) as JSON here",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (0: torch's default). On a shared or small CPU, 1 "
        "avoids threads spinning against each other",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clap-train",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name in STAGES:
        p = sub.add_parser(name, help=STAGE_HELP[name], description=STAGE_HELP[name])
        _common(p)
        if name == "export":
            p.add_argument(
                "--bundle", default=None, help="bundle directory (default: <out_dir>/bundle)"
            )
    p = sub.add_parser(
        "pipeline",
        help="every stage in order, then export and parity",
        description="Run " + " -> ".join(STAGES) + " with one config; writes "
        "<out_dir>/pipeline.json with every stage's metrics.",
    )
    _common(p)
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma-separated subset of stages to run, in pipeline order",
    )
    p.add_argument("--bundle", default=None, help="bundle directory (default: <out_dir>/bundle)")
    p.add_argument(
        "--command",
        default=None,
        metavar="TEXT",
        help="how to rebuild this bundle, recorded in its manifest (default: this "
        "command line), e.g. 'make model'",
    )
    from .experiments.cli import add_parser as add_experiment_parser

    add_experiment_parser(sub)
    from .oracle import add_parser as add_oracle_parser

    add_oracle_parser(sub)
    from .vision import add_parser as add_vision_parser

    add_vision_parser(sub)
    p = sub.add_parser(
        "show-config",
        help="print the resolved config (preset + overrides) as YAML",
        description="Print the resolved config (preset + overrides) as YAML.",
    )
    p.add_argument("--config", default="tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stage:
        parser.print_help()
        return 2
    if args.stage == "experiment":
        from .experiments.cli import main as experiment_main

        return experiment_main(args)
    if args.stage == "oracle":
        from .oracle import main as oracle_main

        return oracle_main(args)
    if args.stage == "vision":
        from .vision import main as vision_main

        return vision_main(args)
    from .common.dist import init_from_env, is_main
    from .config import ConfigError, load_config
    from .data import DataError
    from .pipeline import RunOptions, load_data, run_pipeline, run_stage

    try:
        cfg = load_config(args.config, args.overrides)
        for name in ("ntp", "rf", "export"):  # resolve registered sections so they are printed
            getattr(cfg, name)
    except ConfigError as exc:
        print(f"clap-train: config error: {exc}", file=sys.stderr)
        return 2
    if args.stage == "show-config":
        print(cfg.to_yaml(), end="")
        return 0
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    init_from_env()
    opt = RunOptions(
        resume=not args.no_resume,
        progress=not args.no_progress,
        bundle_out=getattr(args, "bundle", None),
        command=getattr(args, "command", None),
    )
    try:
        if args.stage == "pipeline":
            stages: List[str] = [s.strip() for s in args.stages.split(",") if s.strip()]
            summary = run_pipeline(cfg, stages=stages, opt=opt, synthetic=args.synthetic)
        else:
            summary = run_stage(args.stage, cfg, load_data(cfg, args.synthetic), opt)
    except (ConfigError, DataError, ValueError, FileNotFoundError, AssertionError) as exc:
        print(f"clap-train {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; resume with the same command", file=sys.stderr)
        return 130
    if is_main():
        from .common.checkpoint import to_jsonable

        text = json.dumps(to_jsonable(summary), indent=1)
        if args.summary:
            with open(args.summary, "w") as f:
                f.write(text + "\n")
        brief = summary.get("stages", {args.stage: summary})
        for name, st in brief.items():
            keys = {
                k: v for k, v in st.items() if k in ("heldout", "checkpoint", "bundle", "seconds")
            }
            print(f"[{name}] {json.dumps(to_jsonable(keys))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
