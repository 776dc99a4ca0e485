"""``clap-ros bench`` (``make bench``): the speed figures the project tracks, measured in one run.

Now: the simulated world per robot (scene-camera images/s at 224x224, physics steps/s and
real-time factor while the expert drives the arm); forward_position command streaming at 500 Hz
(ChunkQueue + SafetyFilter, with a worker thread pushing chunks as inference would); per-graph
ONNX Runtime CPU latency of a model bundle. Still to come: frame-to-command latency of the running
nodes and the ONNX Runtime vs torch ratio. Machines are shared and noisy: compare
figures from the same run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="print the benchmark figures (make bench)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", default="fr3,ur5e", help="robots for the sim figures")
    p.add_argument("--frames", type=int, default=300, help="images rendered per robot")
    p.add_argument("--steps", type=int, default=10000, help="physics steps per robot")
    p.add_argument("--stream-seconds", type=float, default=5.0,
                   help="length of the 500 Hz streaming run, s")
    p.add_argument("--model", default="models/default", help="bundle for the inference figures")
    p.add_argument("--json", type=Path, default=None, help="also write all figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clap_ros.sim.bench import bench_robot

    robots = [r.strip() for r in args.robots.split(",") if r.strip()]
    figures = {"machine": {"cpu": platform.processor() or platform.machine(),
                           "python": platform.python_version(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
               "sim": []}
    print("== simulated world (pick_place, expert driving, scene camera 224x224)")
    print("%-8s %12s %12s %16s %16s" % ("robot", "images/s", "ms/image", "physics steps/s",
                                        "real-time factor"))
    for robot in robots:
        r = bench_robot(robot, "pick_place", (224, 224), args.frames, args.steps)
        figures["sim"].append(r)
        print("%-8s %12.1f %12.2f %16.0f %16.1f" % (robot, r["images_per_s"],
                                                    1000.0 / r["images_per_s"],
                                                    r["physics_steps_per_s"],
                                                    r["real_time_factor"]))
    from clap_ros.control.chunking import bench_stream
    print("\n== forward_position streaming (fr3, ChunkQueue + SafetyFilter, chunks pushed at 10 Hz)")
    st = bench_stream(rate_hz=500.0, seconds=args.stream_seconds, robot="fr3")
    figures["stream"] = st
    print("target 500 Hz: achieved %.1f Hz; period error median %.3f ms, p99 %.3f ms, max %.3f ms "
          "(target p99 <= 1 ms)" % (st["achieved_rate_hz"], 1e3 * st["period_error_median_s"],
                                     1e3 * st["period_error_p99_s"],
                                     1e3 * st["period_error_max_s"]))
    from clap_ros.inference.cli import run_check
    from clap_ros.nodes.clap_logic import resolve_model_dir
    print("\n== model bundle inference, onnxruntime CPU, batch 1, 1 thread")
    run_check(argparse.Namespace(path=str(resolve_model_dir(args.model)), backend="cpu",
                                 cache_dir=None, threads=1, runs=100, json=False))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0
