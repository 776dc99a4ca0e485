"""``clap-ros demo``: the main job on the simulated robot, through the real ROS 2 stack.

By default the shipped CLAP model bundle (models/default) drives the simulated FR3 through the
runtime a user runs (the ``bringup`` graph: sim_driver, encoder_node, planner_node, action_node,
each its own process, over DDS on loopback): the closed loop of ``clap-ros eval-sim`` on every
task, with the typed instruction of each episode, a rosbag per episode, and the success, latency
and rate figures printed and written to ``<robot>/result.json`` and ``report.md``.

With ``--policy expert`` the scripted expert drives instead: for each robot and task, the
``sim_driver`` node and an ``expert_node`` run as separate processes talking over DDS, exactly as
they would against a real driver, and every episode is recorded as an MCAP rosbag. It prints
success and timing per robot and task and writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

DEFAULT_TASKS = "reach,push,pick_place,stack"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the main job on the simulated robot (ROS 2 stack)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--policy",
        default="model",
        choices=("expert", "model"),
        help="who drives the arm: a CLAP model bundle through encoder_node, "
        "planner_node and action_node (default; the `clap-ros eval-sim` loop, "
        "with a bag per episode), or the scripted expert",
    )
    p.add_argument(
        "--model",
        default="models/default",
        help="model bundle for --policy model (default: models/default)",
    )
    p.add_argument(
        "--robots",
        default=None,
        help="comma-separated robot profiles "
        "(default: fr3,ur5e for the expert; the bundle's robot for a model)",
    )
    p.add_argument(
        "--tasks", default=DEFAULT_TASKS, help="comma-separated tasks (default: %s)" % DEFAULT_TASKS
    )
    p.add_argument(
        "--episodes", type=int, default=1, help="episodes per robot and task (default: 1)"
    )
    p.add_argument("--seed", type=int, default=1000, help="first seed (default: 1000)")
    p.add_argument(
        "--out",
        default=None,
        help="output directory for bags and summary (default: out/demo/<timestamp>)",
    )
    p.add_argument(
        "--command-mode",
        default="joint_trajectory",
        choices=("joint_trajectory", "forward_position"),
        help="how the arm is commanded (default: joint_trajectory)",
    )
    p.set_defaults(func=run)


def _rate(counts: Dict[str, int], topic: str, duration_s: float) -> float:
    return counts.get(topic, 0) / duration_s if duration_s > 0 else 0.0


def run(args: argparse.Namespace) -> int:
    # A self-contained sim run: keep DDS on this machine unless the user chose otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    from clap_ros import topics as T
    from clap_ros.nodes.episode_runner import RecordingError, record_episodes_ros
    from clap_ros.robots import load_profile
    from clap_ros.sim import TASKS

    if args.policy == "model":
        return _run_model(args)
    robots = [r.strip() for r in (args.robots or "fr3,ur5e").split(",") if r.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        print(
            "error: unknown task(s) %s; choose from %s" % (bad, ", ".join(TASKS)), file=sys.stderr
        )
        return 2
    if args.episodes < 1:
        print("error: --episodes must be at least 1", file=sys.stderr)
        return 2
    profiles = {r: load_profile(r) for r in robots}
    out = Path(args.out or os.path.join("out", "demo", time.strftime("%Y%m%d-%H%M%S")))
    out.mkdir(parents=True, exist_ok=True)
    print(
        "clap-ros demo: scripted expert through the ROS 2 stack (sim_driver + expert_node over "
        "DDS), %d episode(s) per robot and task; bags in %s" % (args.episodes, out)
    )

    rows: List[dict] = []
    failed_runs = 0
    t_all = time.perf_counter()
    for robot in robots:
        js_topic = profiles[robot].driver.joint_states_topic
        for task in tasks:
            seeds = range(args.seed, args.seed + args.episodes)
            t0 = time.perf_counter()
            try:
                results = record_episodes_ros(
                    robot,
                    task,
                    seeds,
                    out / robot / task,
                    command_mode=args.command_mode,
                    progress=False,
                )
            except RecordingError as e:
                print("  %-5s %-10s FAILED to run: %s" % (robot, task, e), file=sys.stderr)
                failed_runs += 1
                continue
            wall = time.perf_counter() - t0
            ok = sum(r.success for r in results)
            errors = [r.error for r in results if r.error]
            failed_runs += bool(errors)
            dur = sum(r.duration_s for r in results)
            row = {
                "robot": robot,
                "task": task,
                "episodes": len(results),
                "success": ok,
                "success_rate": ok / len(results),
                "episode_sim_s": dur / len(results),
                "wall_s_per_episode": wall / len(results),
                "joint_states_hz": sum(_rate(r.counts, js_topic, r.duration_s) for r in results)
                / len(results),
                "camera_hz": sum(_rate(r.counts, T.CAMERA_IMAGE, r.duration_s) for r in results)
                / len(results),
                "instruction": results[0].instruction,
                "bags": [r.bag for r in results],
                "errors": errors,
            }
            rows.append(row)
            print(
                "  %-5s %-10s success %d/%d  episode %.1f s sim, %.1f s wall  "
                'joint_states %.0f Hz  camera %.1f Hz  "%s"%s'
                % (
                    robot,
                    task,
                    ok,
                    len(results),
                    row["episode_sim_s"],
                    row["wall_s_per_episode"],
                    row["joint_states_hz"],
                    row["camera_hz"],
                    row["instruction"],
                    ("  errors: %s" % errors) if errors else "",
                )
            )
    total = sum(r["episodes"] for r in rows)
    succ = sum(r["success"] for r in rows)
    summary = {
        "rows": rows,
        "episodes": total,
        "success": succ,
        "success_rate": succ / total if total else 0.0,
        "wall_s": time.perf_counter() - t_all,
        "command_mode": args.command_mode,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        "overall: %d/%d episodes succeeded (%.0f %%) in %.0f s; summary: %s"
        % (succ, total, 100.0 * summary["success_rate"], summary["wall_s"], out / "summary.json")
    )
    return 1 if failed_runs or not rows else 0


def _run_model(args: argparse.Namespace) -> int:
    """The model drives: per robot, the closed-loop evaluation of clap_ros.eval.sim_eval (the
    whole bringup graph over DDS) with one bag per episode; its report carries success, latency
    and rate figures."""
    from clap_ros.eval.sim_eval import (
        EvalConfig,
        EvalError,
        SimEvaluator,
        parse_tasks,
        report_markdown,
        resolve_model,
    )
    from clap_ros.inference.bundle import BundleError, load_bundle

    try:
        model = resolve_model(args.model)
        robots = (
            [r.strip() for r in args.robots.split(",") if r.strip()]
            if args.robots
            else [load_bundle(model).robot]
        )
    except (EvalError, BundleError, ValueError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    out = Path(args.out or os.path.join("out", "demo", time.strftime("%Y%m%d-%H%M%S")))
    print(
        "clap-ros demo: model %s drives the simulated arm (sim_driver + encoder_node + "
        "planner_node + action_node over DDS), %d episode(s) per robot and task; results and "
        "bags in %s" % (model, args.episodes, out)
    )
    code = 0
    for robot in robots:
        try:
            ev = SimEvaluator(
                EvalConfig(
                    robot=robot,
                    tasks=parse_tasks([args.tasks]),
                    episodes=args.episodes,
                    model=str(model),
                    command_mode=args.command_mode,
                    seed=args.seed,
                    out=str(out / robot),
                    record_bags=True,
                )
            )
        except (ValueError, EvalError) as e:
            print("error: %s" % e, file=sys.stderr)
            return 2
        result = ev.run()
        print(report_markdown(result))
        code = code or (0 if result["complete"] else 1)
    return code
