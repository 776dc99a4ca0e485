"""``clap-ros bench`` (``make bench``): the speed figures the project tracks, measured in one run.

1. the simulated world per robot: scene-camera images/s at 224x224, physics steps/s and
   real-time factor while the expert drives the arm;
2. forward_position command streaming at 500 Hz (ChunkQueue + SafetyFilter, with a worker thread
   pushing chunks as inference would): achieved rate and period error;
3. per-graph ONNX Runtime CPU latency of the model bundle (batch 1, 1 thread);
4. per-graph torch eager vs ONNX Runtime CPU, as a ratio measured in alternating calls (in a
   subprocess: python -m clap_train.latency; skipped when the training package is absent);
5. closed loop, the same fr3 reach episodes (seeds 0..N-1, --episodes, default 20) in both
   eval-sim modes: ROS mode (sim_driver + encoder + planner + action node over DDS) and direct
   mode (one process, virtual clock): wall time per episode in each and the ratio (target >= 10);
6. the running stack of those ROS-mode episodes: camera frame stamp -> first command computed
   from that frame, p50 and p99 pooled over every chunk of the run (with the sample count), plus
   frame -> latent / plan / chunk and the action node's tick period error.

Machines are shared and noisy: compare figures from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="print the benchmark figures (make bench)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--robots", default="fr3,ur5e", help="robots for the sim figures")
    p.add_argument("--frames", type=int, default=300, help="images rendered per robot")
    p.add_argument("--steps", type=int, default=10000, help="physics steps per robot")
    p.add_argument(
        "--stream-seconds", type=float, default=5.0, help="length of the 500 Hz streaming run, s"
    )
    p.add_argument("--model", default="models/default", help="bundle for the inference figures")
    p.add_argument(
        "--episodes",
        "--closed-loop-episodes",
        dest="episodes",
        type=int,
        default=20,
        help="fr3 reach episodes per eval-sim mode for the closed-loop "
        "figures (default 20; 0 skips them)",
    )
    p.add_argument(
        "--modes",
        default="ros,direct,direct-jobs",
        help="eval-sim modes of the closed-loop figures: ros, direct (one process) and "
        "direct-jobs (direct mode in 2 processes: run wall time / episodes); default all three",
    )
    p.add_argument(
        "--command-mode",
        default="joint_trajectory",
        choices=("forward_position", "joint_trajectory"),
        help="action node command mode for the closed-loop figures",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="sim seconds per closed-loop episode (default 0: the reach task's own)",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated sections to run (sim, stream, inference, torch, "
        "closed_loop); default all",
    )
    p.add_argument("--json", type=Path, default=None, help="also write all figures as JSON")
    p.set_defaults(func=run)


SECTIONS = ("sim", "stream", "inference", "torch", "closed_loop")


def run(args: argparse.Namespace) -> int:
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(SECTIONS)
    unknown = [x for x in only if x not in SECTIONS]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from clap_ros.bench_closed_loop import MODES

    bad_modes = [m for m in modes if m not in MODES]
    problem = (
        "unknown section %s (known: %s)" % (", ".join(unknown), ", ".join(SECTIONS))
        if unknown
        else "unknown mode %s (known: %s)" % (", ".join(bad_modes), ", ".join(MODES))
        if bad_modes
        else "--episodes must be >= 0"
        if args.episodes < 0
        else "--timeout must be >= 0"
        if args.timeout < 0
        else ""
    )
    if problem:
        print("clap-ros bench: error: %s" % problem)
        return 2
    robots = [r.strip() for r in args.robots.split(",") if r.strip()]
    figures: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    }
    from clap_ros.nodes.clap_logic import resolve_model_dir

    model = str(resolve_model_dir(args.model))
    if "sim" in only:
        from clap_ros.sim.bench import bench_robot

        figures["sim"] = []
        print("== simulated world (pick_place, expert driving, scene camera 224x224)")
        print(
            "%-8s %12s %12s %16s %16s"
            % ("robot", "images/s", "ms/image", "physics steps/s", "real-time factor")
        )
        for robot in robots:
            r = bench_robot(robot, "pick_place", (224, 224), args.frames, args.steps)
            figures["sim"].append(r)
            print(
                "%-8s %12.1f %12.2f %16.0f %16.1f"
                % (
                    robot,
                    r["images_per_s"],
                    1000.0 / r["images_per_s"],
                    r["physics_steps_per_s"],
                    r["real_time_factor"],
                )
            )
    if "stream" in only:
        from clap_ros.control.chunking import bench_stream

        print(
            "\n== forward_position streaming (fr3, ChunkQueue + SafetyFilter, chunks pushed "
            "at 10 Hz)"
        )
        st = bench_stream(rate_hz=500.0, seconds=args.stream_seconds, robot="fr3")
        figures["stream"] = st
        print(
            "target 500 Hz: achieved %.1f Hz; period error median %.3f ms, p99 %.3f ms, "
            "max %.3f ms (target p99 <= 1 ms)"
            % (
                st["achieved_rate_hz"],
                1e3 * st["period_error_median_s"],
                1e3 * st["period_error_p99_s"],
                1e3 * st["period_error_max_s"],
            )
        )
    if "inference" in only:
        from clap_ros.inference.cli import run_check

        print("\n== model bundle inference, onnxruntime CPU, batch 1, 1 thread")
        run_check(
            argparse.Namespace(
                path=model, backend="cpu", cache_dir=None, threads=1, runs=100, json=False
            )
        )
    if "torch" in only:
        print("\n== torch eager vs onnxruntime CPU per graph (same weights, batch 1, 1 thread)")
        figures["torch_vs_onnxruntime"] = torch_vs_onnxruntime(model)
    if "closed_loop" in only and args.episodes > 0:
        from clap_ros.bench_closed_loop import closed_loop

        print(
            "\n== closed loop: fr3 reach, the same %d episodes (seeds 0..%d) per mode, "
            "bundle %s, %s, onnxruntime CPU"
            % (args.episodes, args.episodes - 1, args.model, args.command_mode)
        )
        figures["closed_loop"] = closed_loop(
            model, args.episodes, args.command_mode, modes=modes, timeout_s=args.timeout
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def torch_vs_onnxruntime(model: str) -> dict:
    """Runs clap_train.latency in a subprocess (torch stays out of this process)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("clap_train") is None:
        print("skipped: the training package (clap_train, torch) is not installed")
        return {"skipped": "clap_train not installed"}
    res = subprocess.run(
        [sys.executable, "-m", "clap_train.latency", "--bundle", model, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode != 0:
        print("failed: %s" % res.stderr.strip()[-500:])
        return {"error": res.stderr.strip()[-500:]}
    from clap_train.latency import format_table  # table only; torch is imported lazily there

    out = json.loads(res.stdout)
    print(format_table(out))
    return out
