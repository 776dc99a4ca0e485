"""What `clap-ros eval-sim` evaluates and reports, in both modes: the configuration, one episode's
outcome, the per-task summary (success, time to success, goal distance and progress), and the
result.json / report.md files. Shared by the ROS-mode evaluator (clap_ros.eval.sim_eval) and the
direct one (clap_ros.eval.direct_eval); no rclpy here.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

# Sim-time budget per episode. The expert needs about a third of these; a learned policy gets room
# to correct itself, but not so much that a stuck episode costs minutes.
TASK_TIMEOUT_S = {"reach": 20.0, "push": 30.0, "pick_place": 30.0, "stack": 40.0}
DEFAULT_TIMEOUT_S = 30.0
DRIVER = "sim_driver"
MODES = ("ros", "direct")
POLICIES = ("model", "expert")
ACTION_NODE = "action_node"


class EvalError(RuntimeError):
    """The evaluation could not run (a node died, a service never came up); names the cause."""


@dataclass
class EvalConfig:
    robot: str = "fr3"
    tasks: Sequence[str] = ("pick_place",)
    episodes: int = 20
    model: str = "models/default"
    backend: str = "auto"
    command_mode: str = "joint_trajectory"
    seed: int = 0  # first episode seed; episode i uses seed + i
    out: Optional[str] = None  # result directory (default: eval_results/<stamp>)
    timeout_s: float = 0.0  # sim seconds per episode; 0 = TASK_TIMEOUT_S[task]
    randomize: bool = True
    # The sim driver's reflex emulation: None = the driver's default (sim_driver's schema).
    reflexes: Optional[bool] = None
    real_time_factor: float = 1.0  # other than 1: every node runs on sim time
    settle_s: float = 0.5  # wait after the first post-reset plan before enabling
    plan_timeout_s: float = 60.0  # wall seconds for the first plan of an episode
    startup_timeout_s: float = 120.0  # wall seconds for the graph to come up
    record_bags: bool = False
    domain_id: Optional[int] = None  # None: $ROS_DOMAIN_ID, else a random one
    params_file: str = ""  # ros__parameters for the CLAP nodes ("" = package's)
    progress: bool = True
    mode: str = "ros"  # ros: the bringup graph over DDS; direct: one process
    # model: the bundle; expert: the scripted expert; oracle-expert / oracle-field /
    # oracle:<onnx> / vision:<onnx>: the diagnostic ladder's rungs (clap_ros.eval.oracle_policy,
    # clap_ros.eval.vision_policy; direct mode)
    policy: str = "model"
    jobs: int = 1  # direct mode: episodes run in this many processes
    latency_ms: Optional[float] = None  # direct mode: fixed inference latency (None: measured)

    def timeout_for(self, task: str) -> float:
        if self.timeout_s > 0:
            return float(self.timeout_s)
        return TASK_TIMEOUT_S.get(task, DEFAULT_TIMEOUT_S)

    def validate(self) -> None:
        from clap_ros.sim.tasks import TASKS

        if not self.tasks:
            raise ValueError("no task to evaluate")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(
                "unknown task%s %s (known: %s)"
                % ("s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(sorted(TASKS)))
            )
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("a task is listed twice: %s" % ", ".join(self.tasks))
        if self.episodes < 1:
            raise ValueError("episodes must be >= 1, not %d" % self.episodes)
        if self.command_mode not in ("joint_trajectory", "forward_position"):
            raise ValueError(
                "command_mode must be joint_trajectory or forward_position, not %r"
                % self.command_mode
            )
        if self.backend not in ("auto", "cpu", "cuda", "tensorrt"):
            raise ValueError("backend must be auto, cpu, cuda or tensorrt, not %r" % self.backend)
        if self.mode not in MODES:
            raise ValueError("mode must be one of %s, not %r" % (", ".join(MODES), self.mode))
        from clap_ros.eval.oracle_policy import ORACLE_PREFIX, is_oracle
        from clap_ros.eval.vision_policy import VISION_PREFIX, is_vision

        ladder = is_oracle(self.policy) or is_vision(self.policy)
        if self.policy not in POLICIES and not ladder:
            raise ValueError(
                "policy must be one of %s, oracle-expert, oracle-field, oracle:<file.onnx> or "
                "vision:<file.onnx>, not %r" % (", ".join(POLICIES), self.policy)
            )
        if ladder and self.mode != "direct":
            raise ValueError("the diagnostic ladder's policies run in --mode direct only")
        for prefix in (ORACLE_PREFIX, VISION_PREFIX):
            if self.policy.startswith(prefix):
                from pathlib import Path

                if not Path(self.policy[len(prefix) :]).is_file():
                    raise ValueError("policy model %s not found" % self.policy[len(prefix) :])
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1, not %d" % self.jobs)
        if self.latency_ms is not None and not (0.0 <= self.latency_ms < 60000.0):
            raise ValueError("latency_ms must be in [0, 60000), not %r" % self.latency_ms)
        if self.mode == "ros" and (self.jobs != 1 or self.latency_ms is not None):
            raise ValueError(
                "--jobs and --latency-ms are for --mode direct (ROS mode runs one "
                "stack in real time)"
            )
        if self.real_time_factor <= 0:
            raise ValueError(
                "real_time_factor must be > 0 (the policy runs in real time), not %r"
                % self.real_time_factor
            )


@dataclass
class EpisodeOutcome:
    task: str
    seed: int
    instruction: str = ""
    success: bool = False
    time_to_success_s: Optional[float] = None  # sim seconds from enable to success
    duration_s: float = 0.0  # sim seconds from enable to stop
    wall_s: float = 0.0  # wall seconds for the whole episode
    commands: int = 0  # arm commands the action node sent
    gripper_commands: int = 0
    plans: int = 0  # /clap/plan messages during the episode
    arm_motion_rad: float = 0.0  # max over the episode of max |q - q_enable|
    rejected_commands: int = 0  # commands the driver refused (limits, names)
    # the first reflex of the episode (the driver's reason name, e.g. franka "cartesian_reflex",
    # UR "PROTECTIVE_STOP"; "" none) and its sentence: an episode with a reflex is a failure
    reflex: str = ""
    reflex_detail: str = ""
    # metres from what the task moves to its goal (Task.goal_distance), from /sim/status (2 Hz):
    # at enable, at the stop, and the least seen in between
    goal_distance_start_m: Optional[float] = None
    goal_distance_end_m: Optional[float] = None
    goal_distance_min_m: Optional[float] = None
    worst_diagnostics: Dict[str, dict] = field(default_factory=dict)  # node -> level, message
    # each node's last rates and latencies before the stop (keys *_rate_hz, *_p50_ms, *_p99_ms)
    figures: Dict[str, Dict[str, str]] = field(default_factory=dict)
    # every trajectory the driver received in the episode: |first point - measured| and the
    # implied joint velocity (clap_ros.control.first_point summary, from the driver's status)
    first_point: Optional[dict] = None
    bag: str = ""
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_model(model: str) -> Path:
    """The bundle directory, found as the nodes find it (clap_logic.resolve_model_dir), made
    absolute so every node process gets the same one. EvalError if it holds no manifest."""
    from clap_ros.nodes.clap_logic import resolve_model_dir

    path = Path(resolve_model_dir(model))
    if not (path / "manifest.yaml").is_file():
        raise EvalError("model bundle %s not found (no manifest.yaml in %s)" % (model, path))
    return path.resolve()


def status_goal_distance(status: dict) -> Optional[float]:
    v = status.get("goal_distance_m")
    return None if v is None else float(v)


def goal_progress(e: EpisodeOutcome) -> Optional[float]:
    """Share of the start distance to the goal closed at the stop (1 = at the goal, 0 = no
    closer, negative = further away), None when the driver reported no distance."""
    if (
        e.goal_distance_start_m is None
        or e.goal_distance_end_m is None
        or e.goal_distance_start_m <= 0
    ):
        return None
    return 1.0 - e.goal_distance_end_m / e.goal_distance_start_m


def _median(values) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def summarize(
    cfg: EvalConfig, model: str, episodes: Sequence[EpisodeOutcome], wall_s: float, error: str = ""
) -> dict:
    tasks = {}
    for task in cfg.tasks:
        eps = [e for e in episodes if e.task == task]
        times = [e.time_to_success_s for e in eps if e.success]
        tasks[task] = {
            "episodes": len(eps),
            "successes": sum(e.success for e in eps),
            "success_rate": (sum(e.success for e in eps) / len(eps)) if eps else None,
            "median_time_to_success_s": float(np.median(times)) if times else None,
            "timeout_s": cfg.timeout_for(task),
            "episodes_with_errors": sum(bool(e.error) for e in eps),
            "rejected_commands": sum(e.rejected_commands for e in eps),
            "episodes_with_reflex": sum(bool(e.reflex) for e in eps),
            "reflexes": dict(Counter(e.reflex for e in eps if e.reflex)),
            "median_arm_motion_rad": float(np.median([e.arm_motion_rad for e in eps]))
            if eps
            else None,
            "median_final_goal_distance_m": _median(e.goal_distance_end_m for e in eps),
            "median_min_goal_distance_m": _median(e.goal_distance_min_m for e in eps),
            "median_goal_progress": _median(goal_progress(e) for e in eps),
            "first_point": pooled_first_points(e.first_point for e in eps),
        }
    config = asdict(cfg)
    config["tasks"] = list(cfg.tasks)
    return {
        "format": "clap_ros_sim_eval",
        "version": 1,
        "mode": cfg.mode,
        "policy": cfg.policy,
        "robot": cfg.robot,
        "model": model,
        "config": config,
        "complete": not error and all(t["episodes"] == cfg.episodes for t in tasks.values()),
        "error": error,
        "wall_s": wall_s,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": tasks,
        "episodes": [e.to_dict() for e in episodes],
    }


def report_markdown(result: dict) -> str:
    cfg = result["config"]
    mode = result.get("mode", cfg.get("mode", "ros"))
    expert = result.get("policy", cfg.get("policy", "model")) == "expert"
    if mode == "direct":
        how = (
            "Direct mode (one process, virtual clock; the sim_driver's rules from "
            "SimDriverCore; %s)"
            % (
                "the scripted expert streamed as expert_node streams it"
                if expert
                else "the CLAP cores through VirtualStack, inference latency %s"
                % ("measured" if cfg.get("latency_ms") is None else "%g ms" % cfg["latency_ms"])
            )
        )
    elif expert:
        how = "Scripted expert over DDS (sim_driver + expert_node processes)"
    else:
        how = "Full stack over DDS (sim_driver, encoder_node, planner_node, action_node)"
    lines = [
        "# Closed-loop evaluation: %s, %s %s"
        % (result["robot"], "policy" if expert else "model", result["model"]),
        "",
        "%s, backend %s, command_mode %s, seeds %d..%d, randomisation %s%s."
        % (
            how,
            cfg["backend"],
            cfg["command_mode"],
            cfg["seed"],
            cfg["seed"] + cfg["episodes"] - 1,
            "on" if cfg["randomize"] else "off",
            "" if mode == "direct" else ", real-time factor %g" % cfg["real_time_factor"],
        ),
        "",
        "| task | success | rate | median time to success (s) | final / closest distance "
        "to goal (m) | progress | timeout (s) | rejected commands | episodes with errors | "
        "episodes with a reflex |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, t in result["tasks"].items():
        rate = "-" if t["success_rate"] is None else "%.0f %%" % (100 * t["success_rate"])
        tts = (
            "-" if t["median_time_to_success_s"] is None else "%.1f" % t["median_time_to_success_s"]
        )
        dist = (
            "-"
            if t.get("median_final_goal_distance_m") is None
            else "%.3f / %.3f"
            % (t["median_final_goal_distance_m"], t["median_min_goal_distance_m"])
        )
        prog = (
            "-"
            if t.get("median_goal_progress") is None
            else "%.0f %%" % (100 * t["median_goal_progress"])
        )
        lines.append(
            "| %s | %d/%d | %s | %s | %s | %s | %.0f | %d | %d | %s |"
            % (
                task,
                t["successes"],
                t["episodes"],
                rate,
                tts,
                dist,
                prog,
                t["timeout_s"],
                t["rejected_commands"],
                t["episodes_with_errors"],
                "%d%s"
                % (
                    t.get("episodes_with_reflex", 0),
                    (
                        " (%s)"
                        % ", ".join("%s %d" % kv for kv in sorted(t.get("reflexes", {}).items()))
                    )
                    if t.get("reflexes")
                    else "",
                ),
            )
        )
    lines += [
        "",
        "Distances and progress are medians over episodes: the distance from what the "
        "task moves (TCP or object) to where success puts it, from /sim/status; progress = "
        "share of the distance at enable closed by the stop.",
        "",
    ]
    if result["error"]:
        lines += ["**Incomplete:** %s" % result["error"], ""]
    reflexed = [e for e in result["episodes"] if e.get("reflex")]
    if reflexed:
        lines.append("Episodes ended by a reflex (the real arm would have stopped):")
        lines += [
            "- %s seed %d: %s: %s" % (e["task"], e["seed"], e["reflex"], e.get("reflex_detail", ""))
            for e in reflexed
        ]
        lines.append("")
    errors = [e for e in result["episodes"] if e["error"]]
    if errors:
        lines.append("Episode errors:")
        lines += [
            "- %s seed %d: %s" % (e["task"], e["seed"], e["error"].splitlines()[0]) for e in errors
        ]
        lines.append("")
    lines += first_point_lines(result)
    figures = runtime_figures(result["episodes"])
    if figures:
        lines += [
            "Runtime figures (median over episodes of each node's last 5 s before the "
            "stop, from /clap/diagnostics):",
            "",
        ]
        for node, values in figures.items():
            lines.append("- %s: %s" % (node, ", ".join("%s %.3g" % kv for kv in values.items())))
        lines.append("")
    lines.append("Wall time %.0f s. Per-episode details in result.json." % result["wall_s"])
    return "\n".join(lines) + "\n"


def pooled_first_points(summaries) -> Optional[dict]:
    from clap_ros.control.first_point import pooled

    return pooled(summaries)


def first_point_lines(result: dict) -> List[str]:
    """The report's table of trajectory first points vs the measured state, per task."""
    rows = [(task, t.get("first_point")) for task, t in result["tasks"].items()]
    rows = [(task, fp) for task, fp in rows if fp and fp.get("count")]
    if not rows:
        return []
    lines = [
        "Trajectory first points vs the measured state (every JointTrajectory the driver "
        "received, accepted or rejected; a real JTC starts from the measured state, so "
        "|first - measured| / time_from_start is the joint velocity it asks for):",
        "",
        "| task | trajectories | rejected | abs(first - measured) p50 / p99 / max (rad) | "
        "implied velocity p50 / p99 / max (x limit) | over the limit |",
        "|---|---|---|---|---|---|",
    ]
    for task, fp in rows:
        d, f = fp["deviation_rad"], fp["velocity_fraction"]
        lines.append(
            "| %s | %d | %d | %.3g / %.3g / %.3g | %.3g / %.3g / %.3g | %d |"
            % (
                task,
                fp["count"],
                fp.get("rejected", 0),
                d["p50"],
                d["p99"],
                d["max"],
                f["p50"],
                f["p99"],
                f["max"],
                fp.get("over_limit", 0),
            )
        )
    lines += [
        "",
        "Percentiles pooled over episodes from log histograms (upper bin edge, at most 12 % "
        "above the exact value); per-episode exact figures in result.json.",
        "",
    ]
    return lines


def runtime_figures(episodes: Sequence[dict]) -> Dict[str, Dict[str, float]]:
    """node -> figure -> median over the episodes that report it (non-numbers skipped)."""
    samples: Dict[str, Dict[str, List[float]]] = {}
    for e in episodes:
        for node, values in (e.get("figures") or {}).items():
            for key, text in values.items():
                try:
                    x = float(text)
                except ValueError:
                    continue
                if np.isfinite(x):
                    samples.setdefault(node, {}).setdefault(key, []).append(x)
    return {
        node: {k: float(np.median(v)) for k, v in sorted(keys.items())}
        for node, keys in sorted(samples.items())
    }


def write_result(out: Path, result: dict) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=False, default=str))
    (out / "report.md").write_text(report_markdown(result))
