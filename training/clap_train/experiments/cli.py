"""``clap-train experiment``: run the issue-6 experiments and regenerate docs/RESULTS.md."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "run an issue-6 experiment (train arms, export, closed-loop eval) and write docs/RESULTS.md"
DESCRIPTION = """\
Run one experiment of issue 6 (or all of them), then regenerate docs/RESULTS.md from every
result.json under runs/experiments/<scale>/.

Each experiment defines its arms as config overrides + a data recipe. Sim data is generated once
per scale under data/experiments/<scale>/ (scripted FR3 demos via `clap-ros sim record --direct`
+ `bag2dataset`, floating-hand clips via `clap-ros sim human-videos`); every arm and seed is
trained into runs/experiments/<scale>/<experiment>/<arm>/seed<k>/, exported to an ONNX bundle and
evaluated closed-loop through the full ROS stack (`clap-ros eval-sim`), and its result.json holds
success per task, metrics, the exact config, the git commit and the wall-clock cost.

experiments:
  human_transfer      1. stack seen (almost) only in human video: no human / LAPA / CLAP / CLAP+ConLA
  human_vs_robot      2. pretraining on human video vs robot video, same small labelled robot set
  distractor_shift    3. probes and success under unseen textures and more distractors
  knowledge_matching  4. fine-tune RF on a new task: no KM / KM 0.005 / frozen planner
  all                 the four in order

scales: smoke (minutes, checks that every step runs), cpu (a few hours on a 2-core CPU; the
numbers of docs/RESULTS.md), paper (GPU sizes).

examples:
  clap-train experiment human_transfer --scale smoke
  clap-train experiment all --scale cpu                 (= make experiments)
  clap-train experiment all --scale cpu --report-only   (tables from existing results only)
  clap-train experiment knowledge_matching --scale cpu --seeds 1
"""


def add_parser(sub) -> None:
    from .common import SCALES

    p = sub.add_parser("experiment", help=HELP, description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=["human_transfer", "human_vs_robot", "distractor_shift",
                                    "knowledge_matching", "all"],
                   help="which experiment to run (all: the four in order)")
    p.add_argument("--scale", default="smoke", choices=sorted(SCALES),
                   help="sizes of data, training, evaluation (default smoke)")
    p.add_argument("--seeds", type=int, default=0, metavar="N",
                   help="training seeds per arm (default: the scale's, 3 for cpu and paper)")
    p.add_argument("--report-only", action="store_true",
                   help="do not train or evaluate: regenerate the report from existing results")
    p.add_argument("--root", default=".", metavar="DIR",
                   help="repository root holding data/, runs/ and docs/ (default: .)")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="where to write the report (default: ROOT/docs/RESULTS.md)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: the machine is shared)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main(args) -> int:
    from . import EXPERIMENTS, all_modules, load
    from .common import SCALES, Context, ExperimentError
    from .report import write_report

    if args.seeds < 0:
        print("clap-train experiment: error: --seeds must be >= 0", file=sys.stderr)
        return 2
    scale = SCALES[args.scale]
    root = Path(args.root).resolve()
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if not args.report_only:
        import torch

        torch.set_num_threads(max(1, args.threads))
        for name in names:
            module = load(name)
            ctx = Context(scale=scale, root=root, experiment=name,
                          seeds=args.seeds or scale.seeds, progress=not args.no_progress)
            t0 = time.time()
            try:
                paths = module.run(ctx)
            except (ExperimentError, ValueError, FileNotFoundError) as exc:
                print("clap-train experiment %s: error: %s" % (name, exc), file=sys.stderr)
                return 1
            print("[%s] %d result(s) in %.0f s: %s" % (name, len(paths), time.time() - t0,
                                                        ctx.runs_dir))
    out = write_report(root, scale.name, all_modules(),
                       Path(args.report).resolve() if args.report else None)
    print("report: %s" % out)
    return 0
