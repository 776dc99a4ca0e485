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
  human_transfer      1. stack seen (almost) only in human video:
                         no human / LAPA / CLAP / CLAP+ConLA
  human_vs_robot      2. pretraining on human video vs robot video, same small labelled robot set
  distractor_shift    3. probes and success under unseen textures and more distractors
  knowledge_matching  4. fine-tune RF on a new task: no KM / KM 0.005 / frozen planner
  all                 the four in order (--jobs N: as N parallel processes)
  data                only record/render the scale's sim data that the experiments share

scales: smoke (minutes, checks that every step runs), cpu (a few hours on a 2-core CPU; the
numbers of docs/RESULTS.md), paper (GPU sizes).

examples:
  clap-train experiment human_transfer --scale smoke
  clap-train experiment all --scale cpu --jobs 3        (= make experiments)
  clap-train experiment all --scale cpu --report-only   (tables from existing results only)
  clap-train experiment knowledge_matching --scale cpu --seeds 1
  clap-train experiment all --scale cpu --eval-only --jobs 2   (re-run closed-loop evaluation)
"""


def add_parser(sub) -> None:
    from .common import SCALES

    p = sub.add_parser(
        "experiment",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        choices=[
            "human_transfer",
            "human_vs_robot",
            "distractor_shift",
            "knowledge_matching",
            "all",
            "data",
        ],
        help="which experiment to run (all: the four; data: only the sim data)",
    )
    p.add_argument(
        "--scale",
        default="smoke",
        choices=sorted(SCALES),
        help="sizes of data, training, evaluation (default smoke)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=0,
        metavar="N",
        help="training seeds per arm (default: the scale's, 3 for cpu and paper)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="do not train or evaluate: regenerate the report from existing results",
    )
    p.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="repository root holding data/, runs/ and docs/ (default: .)",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="where to write the report (default: ROOT/docs/RESULTS.md)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the machine is shared)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="do not train: evaluate every finished arm's bundle closed-loop again and "
        "rewrite its success in result.json (a changed evaluator, more episodes)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="with `all`: record the data once, then run the experiments as N parallel "
        "processes of one thread each, balanced by their expected cost, logs under "
        "runs/experiments/<scale>/<name>.log (default 1: one after another)",
    )


# relative cost of one experiment at any scale (pipelines + closed-loop evaluations), to balance
# parallel jobs: 1 = 12 pipelines + 12 evals, 2 = 6 + 6, 3 = 3 + 6 evals, 4 = 3 planners + 9 RF + 9
COST = {
    "human_transfer": 4.0,
    "human_vs_robot": 2.0,
    "distractor_shift": 1.4,
    "knowledge_matching": 1.8,
}


def balance(names, jobs: int):
    """Groups of experiment names, one per job, longest first onto the least loaded job."""
    groups = [[] for _ in range(max(1, min(jobs, len(names))))]
    load = [0.0] * len(groups)
    for name in sorted(names, key=lambda n: -COST.get(n, 1.0)):
        k = load.index(min(load))
        groups[k].append(name)
        load[k] += COST.get(name, 1.0)
    return [g for g in groups if g]


def run_parallel(args, names, scale, root: Path) -> int:
    """Each group of experiments in its own chain of `clap-train experiment NAME` processes; the
    data they share must exist first (they would otherwise race to record it)."""
    import subprocess
    import threading

    from .common import tool

    logs = root / "runs" / "experiments" / scale.name
    logs.mkdir(parents=True, exist_ok=True)
    failed = []

    def chain(group):
        for name in group:
            cmd = tool("clap-train") + [
                "experiment",
                name,
                "--scale",
                scale.name,
                "--root",
                str(root),
                "--threads",
                "1",
                "--no-progress",
                "--report",
                str(logs / ("%s.report.md" % name)),
            ]
            if args.eval_only:
                cmd.append("--eval-only")
            if args.seeds:
                cmd += ["--seeds", str(args.seeds)]
            log = logs / ("%s.log" % name)
            print("[jobs] %s -> %s" % (name, log), flush=True)
            with open(log, "w") as f:
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            print("[jobs] %s finished (exit %d)" % (name, rc), flush=True)
            if rc != 0:
                failed.append(name)

    threads = [threading.Thread(target=chain, args=(g,)) for g in balance(names, args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print(
            "clap-train experiment: error: %s failed; see their logs under %s"
            % (", ".join(failed), logs),
            file=sys.stderr,
        )
        return 1
    return 0


def ensure_all_data(ctx) -> None:
    from .common import TASKS, ensure_human_data, ensure_robot_data

    for task in TASKS:
        ensure_robot_data(ctx, task)
        ensure_robot_data(ctx, task, shifted=True)
    ensure_human_data(ctx)


def main(args) -> int:
    from . import EXPERIMENTS, all_modules, load
    from .common import SCALES, Context, ExperimentError, reevaluate
    from .report import write_report

    if args.seeds < 0 or args.jobs < 1:
        print("clap-train experiment: error: --seeds must be >= 0 and --jobs >= 1", file=sys.stderr)
        return 2
    scale = SCALES[args.scale]
    root = Path(args.root).resolve()
    names = list(EXPERIMENTS) if args.name in ("all", "data") else [args.name]
    if args.name == "data" or (args.jobs > 1 and not args.report_only and not args.eval_only):
        try:
            ensure_all_data(Context(scale=scale, root=root, experiment="data", seeds=1))
        except ExperimentError as exc:
            print("clap-train experiment: error: %s" % exc, file=sys.stderr)
            return 1
        if args.name == "data":
            print("data: %s" % (root / "data" / "experiments" / scale.name))
            return 0
    if args.jobs > 1 and not args.report_only:
        t0 = time.time()
        rc = run_parallel(args, names, scale, root)
        print("[jobs] %d experiment(s) in %.0f s" % (len(names), time.time() - t0))
        if rc:
            return rc
    elif not args.report_only:
        import torch

        torch.set_num_threads(max(1, args.threads))
        for name in names:
            module = load(name)
            ctx = Context(
                scale=scale,
                root=root,
                experiment=name,
                seeds=args.seeds or scale.seeds,
                progress=not args.no_progress,
            )
            t0 = time.time()
            try:
                paths = (
                    reevaluate(ctx, getattr(module, "bundle_of", None))
                    if args.eval_only
                    else module.run(ctx)
                )
            except (ExperimentError, ValueError, FileNotFoundError) as exc:
                print("clap-train experiment %s: error: %s" % (name, exc), file=sys.stderr)
                return 1
            print(
                "[%s] %d result(s) in %.0f s: %s"
                % (name, len(paths), time.time() - t0, ctx.runs_dir)
            )
    out = write_report(
        root, scale.name, all_modules(), Path(args.report).resolve() if args.report else None
    )
    print("report: %s" % out)
    return 0
