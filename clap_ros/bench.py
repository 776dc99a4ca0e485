"""``clap-ros bench`` (``make bench``): the speed figures the project tracks, measured in one run.

1. the simulated world per robot: scene-camera images/s at 224x224, physics steps/s and
   real-time factor while the expert drives the arm;
2. forward_position command streaming at 500 Hz (ChunkQueue + SafetyFilter, with a worker thread
   pushing chunks as inference would): achieved rate and period error;
3. per-graph ONNX Runtime CPU latency of the model bundle (batch 1, 1 thread);
4. per-graph torch eager vs ONNX Runtime CPU, as a ratio measured in alternating calls (in a
   subprocess: python -m clap_train.latency; skipped when the training package is absent);
5. the running stack: sim_driver + encoder + planner + action node over DDS (clap-ros eval-sim
   machinery, reach episodes), camera frame stamp -> first command computed from that frame,
   p50 and p99, plus frame -> latent / plan / chunk and the action node's tick period error.

Machines are shared and noisy: compare figures from the same run, not across runs.
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
    p.add_argument("--closed-loop-episodes", type=int, default=2,
                   help="reach episodes of the running-stack figures (0 skips them)")
    p.add_argument("--command-mode", default="joint_trajectory",
                   choices=("forward_position", "joint_trajectory"),
                   help="action node command mode for the running-stack figures")
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
    model = str(resolve_model_dir(args.model))
    run_check(argparse.Namespace(path=model, backend="cpu",
                                 cache_dir=None, threads=1, runs=100, json=False))
    print("\n== torch eager vs onnxruntime CPU per graph (same weights, batch 1, 1 thread)")
    figures["torch_vs_onnxruntime"] = torch_vs_onnxruntime(model)
    if args.closed_loop_episodes > 0:
        print("\n== running stack over DDS (fr3 reach, %d episodes, %s, onnxruntime CPU)"
              % (args.closed_loop_episodes, args.command_mode))
        figures["closed_loop"] = closed_loop(model, args.closed_loop_episodes, args.command_mode)
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
    res = subprocess.run([sys.executable, "-m", "clap_train.latency", "--bundle", model,
                          "--json"], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        print("failed: %s" % res.stderr.strip()[-500:])
        return {"error": res.stderr.strip()[-500:]}
    from clap_train.latency import format_table  # table only; torch is imported lazily there
    out = json.loads(res.stdout)
    print(format_table(out))
    return out


# (diagnostic key of the node, label) for the running-stack figures
STACK_FIGURES = [
    ("action_node", "frame_to_command", "camera frame -> first command"),
    ("encoder_node", "frame_to_latent", "camera frame -> latent"),
    ("planner_node", "frame_to_plan", "camera frame -> plan"),
    ("action_node", "frame_to_chunk", "camera frame -> action chunk"),
    ("action_node", "inference", "RF inference"),
    ("action_node", "tick_period_error", "command tick period error"),
]


def closed_loop(model: str, episodes: int, command_mode: str) -> dict:
    import tempfile

    from clap_ros.eval.sim_eval import EvalConfig, SimEvaluator, runtime_figures
    with tempfile.TemporaryDirectory(prefix="clap_bench_") as tmp:
        cfg = EvalConfig(robot="fr3", tasks=("reach",), episodes=episodes, model=model,
                         backend="cpu", command_mode=command_mode, seed=0,
                         out=str(Path(tmp) / "eval"), progress=False)
        result = SimEvaluator(cfg, log=lambda text: None).run()
    if result["error"]:
        print("failed: %s" % result["error"])
        return {"error": result["error"]}
    fig = runtime_figures(result["episodes"])
    out = {"episodes": episodes, "successes": result["tasks"]["reach"]["successes"],
           "command_mode": command_mode, "figures": fig}
    print("%-32s %10s %10s" % ("figure (median over episodes)", "p50 ms", "p99 ms"))
    for node, key, label in STACK_FIGURES:
        vals = fig.get(node, {})
        p50, p99 = vals.get(key + "_p50_ms"), vals.get(key + "_p99_ms")
        if p50 is None:
            print("%-32s %10s %10s" % (label, "-", "-"))
            continue
        print("%-32s %10.1f %10.1f" % (label, p50, p99))
    f2c = fig.get("action_node", {}).get("frame_to_command_p50_ms")
    if f2c is not None:
        print("frame -> first command p50 %.1f ms (target <= 50 ms on CPU); reach %d/%d"
              % (f2c, out["successes"], episodes))
    return out
