"""The closed-loop part of ``make bench``: the same reach episodes (same seeds, same bundle, fr3)
run over DDS (``eval-sim --mode ros``) and in one process on a virtual clock (``--mode direct``);
wall time per episode in each mode and their ratio, and the running stack's latency figures.

Frame -> first command is pooled over every chunk of the whole ROS-mode run: the action node keeps
each sample (diagnostics ``frame_to_command_run_*``), so the figure does not depend on a chunk
having landed in the node's last 5 s window before a stop. The other stack figures are the nodes'
windowed diagnostics (median over episodes of each node's last 5 s before the stop).

The formatting and pooling functions take result dicts only (no ROS, no sim) and are unit-tested.
"""

from __future__ import annotations

import os
import resource
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ROBOT = "fr3"
TASK = "reach"
SPEED_TARGET = 10.0  # issue 12: direct mode >= 10x faster per episode than ROS mode
DIRECT_JOBS = 2  # processes of the "direct-jobs" row (this machine has 2 cores)
MODES = ("ros", "direct", "direct-jobs")
F2C_TARGET_MS = 50.0  # frame -> first command p50 on CPU

# (node, diagnostic key, label) of the windowed running-stack figures
STACK_FIGURES = [
    ("encoder_node", "frame_to_latent", "camera frame -> latent"),
    ("planner_node", "frame_to_plan", "camera frame -> plan"),
    ("action_node", "frame_to_chunk", "camera frame -> action chunk"),
    ("action_node", "inference", "RF inference"),
    ("action_node", "tick_period_error", "command tick period error"),
]


@dataclass
class ModeFigures:
    """Wall time of one mode's run. Per-episode wall time is what each episode itself took
    (reset to stop); the graph start-up (ROS) or world/model set-up (direct) is in ``run_wall_s``
    only."""

    mode: str
    episodes: int
    successes: int
    wall_per_episode_mean_s: Optional[float]
    wall_per_episode_median_s: Optional[float]
    run_wall_s: float
    sim_per_episode_mean_s: Optional[float] = None  # sim seconds from enable to stop
    # CPU seconds (user + sys) of this process and its node processes over the whole run, per
    # episode: what an episode costs the machine, less sensitive than wall time to other load
    cpu_per_episode_s: Optional[float] = None
    load_average: Optional[float] = None  # 1-min load average when the run began
    error: str = ""


def mode_figures(
    mode: str, result: dict, cpu_s: Optional[float] = None, load_average: Optional[float] = None
) -> ModeFigures:
    eps = result.get("episodes") or []
    walls = [float(e["wall_s"]) for e in eps if e.get("wall_s") is not None]
    if result.get("throughput") and eps:
        # episodes ran side by side: what each cost is the run's wall time shared out
        walls = [float(result.get("wall_s") or 0.0) / len(eps)] * len(eps)
    sims = [float(e["duration_s"]) for e in eps if e.get("duration_s") is not None]
    return ModeFigures(
        mode=mode,
        episodes=len(eps),
        successes=sum(bool(e.get("success")) for e in eps),
        wall_per_episode_mean_s=float(np.mean(walls)) if walls else None,
        wall_per_episode_median_s=float(np.median(walls)) if walls else None,
        run_wall_s=float(result.get("wall_s") or 0.0),
        sim_per_episode_mean_s=float(np.mean(sims)) if sims else None,
        cpu_per_episode_s=cpu_s / len(eps) if cpu_s is not None and eps else None,
        load_average=load_average,
        error=str(result.get("error") or ""),
    )


def speed_ratio(ros: ModeFigures, direct: ModeFigures) -> Optional[float]:
    """ROS-mode over direct-mode mean wall time per episode; None unless both ran episodes."""
    if not ros.wall_per_episode_mean_s or not direct.wall_per_episode_mean_s:
        return None
    return ros.wall_per_episode_mean_s / direct.wall_per_episode_mean_s


def _f(x: Optional[float], fmt: str = "%.2f") -> str:
    return "-" if x is None else fmt % x


def format_comparison(rows: Sequence[ModeFigures]) -> str:
    row = "%-7s %8s %9s %14s %14s %13s %13s %10s %9s"
    lines = [
        row
        % (
            "mode",
            "episodes",
            "successes",
            "wall s/episode",
            "wall s/episode",
            "sim s/episode",
            "CPU s/episode",
            "run wall s",
            "load avg",
        ),
        row % ("", "", "", "(mean)", "(median)", "(mean)", "(run/episodes)", "(total)", "(start)"),
    ]
    for r in rows:
        lines.append(
            row
            % (
                r.mode,
                r.episodes,
                "%d/%d" % (r.successes, r.episodes),
                _f(r.wall_per_episode_mean_s),
                _f(r.wall_per_episode_median_s),
                _f(r.sim_per_episode_mean_s),
                _f(r.cpu_per_episode_s),
                "%.1f" % r.run_wall_s,
                _f(r.load_average, "%.1f"),
            )
        )
        if r.error:
            lines.append("        %s run incomplete: %s" % (r.mode, r.error.splitlines()[0]))
    by_mode = {r.mode: r for r in rows}
    for other in ("direct", "direct-jobs"):
        if "ros" not in by_mode or other not in by_mode:
            continue
        ratio = speed_ratio(by_mode["ros"], by_mode[other])
        if ratio is None:
            lines.append("speed-up ros/%s: - (a mode ran no episode)" % other)
        else:
            lines.append(
                "speed-up ros/%s (mean wall s per episode): %.1fx (target >= %gx: %s)"
                % (other, ratio, SPEED_TARGET, "met" if ratio >= SPEED_TARGET else "NOT met")
            )
    return "\n".join(lines)


def pooled_frame_to_command(episodes: Sequence[dict]) -> Optional[Dict[str, float]]:
    """The action node's run-long pooled frame -> first command figures, from the episode whose
    diagnostics had seen the most samples (the node stays up across a task's episodes, so that
    one covers the run up to its stop). None when no episode reported a sample."""
    best: Optional[Dict[str, float]] = None
    for e in episodes:
        vals = (e.get("figures") or {}).get("action_node", {})
        try:
            n = int(vals["frame_to_command_run_n"])
            p50 = float(vals["frame_to_command_run_p50_ms"])
            p99 = float(vals["frame_to_command_run_p99_ms"])
        except (KeyError, ValueError):
            continue
        if n > 0 and (best is None or n > best["n"]):
            best = {"n": n, "p50_ms": p50, "p99_ms": p99}
    return best


def format_stack_table(episodes: Sequence[dict]) -> str:
    from clap_ros.eval.sim_eval import runtime_figures

    fig = runtime_figures(episodes)
    pooled = pooled_frame_to_command(episodes)
    lines = ["%-32s %10s %10s  %s" % ("figure", "p50 ms", "p99 ms", "samples")]
    if pooled is None:
        lines.append(
            "%-32s %10s %10s  %s"
            % ("camera frame -> first command", "-", "-", "none: no chunk reached a command")
        )
    else:
        lines.append(
            "%-32s %10.1f %10.1f  %d, pooled over the run"
            % ("camera frame -> first command", pooled["p50_ms"], pooled["p99_ms"], pooled["n"])
        )
    for node, key, label in STACK_FIGURES:
        vals = fig.get(node, {})
        p50, p99 = vals.get(key + "_p50_ms"), vals.get(key + "_p99_ms")
        lines.append(
            "%-32s %10s %10s  %s"
            % (
                label,
                _f(p50, "%.1f"),
                _f(p99, "%.1f"),
                "median over episodes of the last 5 s" if p50 is not None else "none reported",
            )
        )
    if pooled is not None:
        lines.append(
            "frame -> first command p50 %.1f ms over %d samples (target <= %g ms on CPU)"
            % (pooled["p50_ms"], pooled["n"], F2C_TARGET_MS)
        )
    return "\n".join(lines)


# --- the runs ---------------------------------------------------------------------------------
def _config(model: str, episodes: int, command_mode: str, out: Path, timeout_s: float):
    from clap_ros.eval.sim_eval import EvalConfig

    return EvalConfig(
        robot=ROBOT,
        tasks=(TASK,),
        episodes=episodes,
        model=model,
        backend="cpu",
        command_mode=command_mode,
        seed=0,
        out=str(out),
        timeout_s=timeout_s,
        progress=False,
        # Speed over full-length episodes: the shipped bundle trips the sim FR3's motion-
        # discontinuity reflex within about 0.5 s (issue 13 item 4), which would end both
        # modes' episodes there and leave nothing to compare.
        reflexes=False,
    )


def run_ros(
    model: str, episodes: int, command_mode: str, out: Path, timeout_s: float = 0.0
) -> dict:
    from clap_ros.eval.sim_eval import SimEvaluator

    cfg = _config(model, episodes, command_mode, out, timeout_s)
    return SimEvaluator(cfg, log=lambda text: None).run()


def run_direct(
    model: str, episodes: int, command_mode: str, out: Path, timeout_s: float = 0.0
) -> dict:
    """``eval-sim --mode direct`` on the same seeds, one process (no --jobs: per-episode wall time
    must compare like with like)."""
    from clap_ros.eval import direct_eval

    cfg = _config(model, episodes, command_mode, out, timeout_s)
    return direct_eval.run_direct(cfg, log=lambda text: None)


def run_direct_jobs(
    model: str, episodes: int, command_mode: str, out: Path, timeout_s: float = 0.0
) -> dict:
    """The same episodes in direct mode spread over ``DIRECT_JOBS`` processes: what a user running
    many episodes gets per episode (run wall time / episodes; the episodes overlap)."""
    import dataclasses

    from clap_ros.eval import direct_eval

    cfg = dataclasses.replace(
        _config(model, episodes, command_mode, out, timeout_s), jobs=DIRECT_JOBS
    )
    result = direct_eval.run_direct(cfg, log=lambda text: None)
    result["throughput"] = True
    return result


def cpu_seconds() -> float:
    """User + sys CPU seconds of this process and of its finished, waited-for child processes
    (the ROS graph's nodes once the run stopped them)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def direct_mode_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("clap_ros.eval.direct_eval") is not None


def closed_loop(
    model: str,
    episodes: int,
    command_mode: str,
    print_: Callable[[str], None] = print,
    modes: Sequence[str] = ("ros", "direct"),
    timeout_s: float = 0.0,
) -> dict:
    """Runs the modes one after the other on the same seeds (``timeout_s``: sim seconds per
    episode, 0 = the task's own); prints the comparison and the running-stack figures; returns
    everything as JSON-able data."""
    runners = {"ros": run_ros, "direct": run_direct, "direct-jobs": run_direct_jobs}
    results: Dict[str, dict] = {}
    rows: List[ModeFigures] = []
    out: dict = {
        "robot": ROBOT,
        "task": TASK,
        "episodes": episodes,
        "seeds": [0, episodes - 1],
        "command_mode": command_mode,
        "timeout_s": timeout_s,
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="clap_bench_") as tmp:
        for mode in modes:
            if mode.startswith("direct") and not direct_mode_available():
                print_("direct mode: skipped (clap_ros.eval.direct_eval is not installed)")
                out["modes"][mode] = {"skipped": "clap_ros.eval.direct_eval not available"}
                continue
            load, cpu0 = os.getloadavg()[0], cpu_seconds()
            results[mode] = runners[mode](
                model, episodes, command_mode, Path(tmp) / mode, timeout_s
            )
            rows.append(
                mode_figures(mode, results[mode], cpu_s=cpu_seconds() - cpu0, load_average=load)
            )
            out["modes"][mode] = asdict(rows[-1])
    print_(format_comparison(rows))
    print_(
        "(%d CPUs; wall time per episode: reset to stop, graph start-up / model loading "
        "excluded; CPU time: the whole run)" % (os.cpu_count() or 0)
    )
    by_mode = {r.mode: r for r in rows}
    if "ros" in by_mode and "direct" in by_mode:
        out["speed_ratio"] = speed_ratio(by_mode["ros"], by_mode["direct"])
    if "ros" in by_mode and "direct-jobs" in by_mode:
        out["speed_ratio_jobs"] = speed_ratio(by_mode["ros"], by_mode["direct-jobs"])
    if "ros" in results:
        eps = results["ros"]["episodes"]
        print_("\nrunning stack over DDS (the ROS-mode episodes above):")
        print_(format_stack_table(eps))
        out["frame_to_command_pooled"] = pooled_frame_to_command(eps)
        from clap_ros.eval.sim_eval import runtime_figures

        out["figures"] = runtime_figures(eps)
    return out
