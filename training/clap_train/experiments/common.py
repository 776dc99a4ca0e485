"""What every experiment of issue 6 shares: scales, cached sim data, training an arm, exporting it,
closed-loop evaluation, and the per-arm results JSON that the report is generated from.

Layout on disk (all relative to the repository root unless ``--root`` says otherwise)::

    data/experiments/<scale>/robot/<task>/{bags,dataset}   scripted FR3 demos, training seeds
    data/experiments/<scale>/human/                          floating-hand clips of every task
    data/experiments/<scale>/shifted/<task>/{bags,dataset}   held-out episodes, shifted look
    runs/experiments/<exp>/<arm>/seed<k>/                    checkpoints, bundle, eval, result.json

Data is generated once per scale (a ``.done`` file marks a finished step) and shared by every
experiment; episodes are then picked per arm in memory (first n of each task), so an arm's recipe
is just counts. Training runs the ``clap-train pipeline`` stages in-process on that in-memory data;
closed-loop evaluation runs ``clap-ros eval-sim`` (the full ROS graph over DDS) as a subprocess,
one task at a time so each task gets its own timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROBOT = "fr3"
TASKS = ("reach", "push", "pick_place", "stack")
# Training data seeds start where `make model` starts theirs, so eval seeds 0, 1, ... are unseen
# layouts; shifted-look data and evaluations use the sim's shifted appearance-seed range.
TRAIN_SEED = 100_000
EVAL_SEED = 0
RESULT_FILE = "result.json"


class ExperimentError(RuntimeError):
    """A step of an experiment failed; the message names the step and where its log is."""


@dataclass(frozen=True)
class Scale:
    """How big one run of the experiments is. Counts are per task."""

    name: str
    preset: str  # clap-train preset (tiny on CPU, paper on a GPU)
    robot_episodes: int  # labelled robot demos per robot task
    few_shot_episodes: int  # robot demos of a task that is mostly seen in human video
    small_robot_episodes: int  # the small fine-tuning set of experiment 2
    pretrain_clips: int  # unlabelled clips per task (human videos or robot videos)
    human_scenes: int  # distinct looks shared across human clips
    heldout_episodes: int  # robot episodes per task kept out of training (probes, NTP acc)
    steps: Dict[str, int]  # training steps per stage
    batch_size: int  # 0: the preset's
    eval_episodes: int  # closed-loop episodes per task and arm
    eval_timeout_s: Dict[str, float]  # sim seconds per episode; empty: eval-sim's defaults
    seeds: int  # training seeds per arm
    real_time_factor: float = 1.0
    extra: Tuple[str, ...] = ()  # further config overrides
    estimate: str = ""  # expected wall-clock cost, written into the report

    def overrides(self) -> List[str]:
        out = ["%s.steps=%d" % kv for kv in sorted(self.steps.items())]
        if self.batch_size:
            out += [
                "%s.batch_size=%d" % (s, self.batch_size)
                for s in ("act_vae", "visual_lam", "lapa", "ntp", "rf")
            ]
            out.append("visual_lam.human_batch_size=%d" % self.batch_size)
        warm = min(self.steps.values()) // 4
        out += ["%s.warmup_steps=%d" % (s, min(20, warm)) for s in self.steps]
        return out + list(self.extra)


SCALES: Dict[str, Scale] = {
    # Minutes: proves every step runs (data -> train -> export -> eval -> tables), measures nothing.
    "smoke": Scale(
        name="smoke",
        preset="tiny",
        robot_episodes=2,
        few_shot_episodes=1,
        small_robot_episodes=1,
        pretrain_clips=1,
        human_scenes=1,
        heldout_episodes=1,
        steps={"act_vae": 4, "visual_lam": 3, "lapa": 3, "ntp": 4, "rf": 4},
        batch_size=8,
        eval_episodes=1,
        eval_timeout_s={t: 2.0 for t in TASKS},
        seeds=1,
        extra=(
            "act_vae.log_every=2",
            "visual_lam.log_every=2",
            "lapa.log_every=2",
            "ntp.log_every=2",
            "rf.log_every=2",
            "probes.classifier_steps=20",
            "export.parity_batches=[1]",
        ),
        estimate="a few minutes",
    ),
    # A few hours on a 2-core machine (1 torch thread). Measured on it (runs/default, tiny preset):
    # s/step act_vae 0.04, visual_lam 0.52, lapa 0.36, ntp 0.05, rf 0.1; eval-sim ~8 s to start
    # the graph per task plus the episodes in real time (a failing episode costs its timeout).
    # So: the tiny architecture, 30 demos per task, ~1 min each of LAM and LAPA and ~2 min of
    # NTP + RF per pipeline (~26 pipelines), and one closed-loop episode per task, arm and seed
    # (3 per arm over the seeds) with timeouts about 1.5x the expert's time (33 bundles x ~1.6 min).
    "cpu": Scale(
        name="cpu",
        preset="tiny",
        robot_episodes=30,
        few_shot_episodes=5,
        small_robot_episodes=10,
        pretrain_clips=30,
        human_scenes=6,
        heldout_episodes=4,
        steps={"act_vae": 500, "visual_lam": 120, "lapa": 120, "ntp": 800, "rf": 600},
        batch_size=0,
        eval_episodes=1,
        eval_timeout_s={"reach": 10.0, "push": 15.0, "pick_place": 15.0, "stack": 20.0},
        seeds=3,
        estimate="measured on this 2-core machine: ~7 min of sim data, then 79 min of wall-clock "
        "for the four experiments as 3 parallel jobs (`--jobs 3`, the default of `make "
        "experiments`), i.e. 2.1 h of training and 0.8 h of closed-loop evaluation summed "
        "over arms and seeds (3 seeds: 12 pipelines in experiment 1, 6 in 2, 3 in 3, 3 "
        "planners + 9 RF fine-tunes in 4; 33 bundles x 4 tasks x 1 episode); about 3 h "
        "one job after another",
    ),
    # The published sizes, for a GPU machine.
    "paper": Scale(
        name="paper",
        preset="paper",
        robot_episodes=200,
        few_shot_episodes=5,
        small_robot_episodes=10,
        pretrain_clips=200,
        human_scenes=12,
        heldout_episodes=20,
        steps={"act_vae": 20000, "visual_lam": 20000, "lapa": 20000, "ntp": 50000, "rf": 50000},
        batch_size=0,
        eval_episodes=20,
        eval_timeout_s={},
        seeds=3,
        estimate="GPU days; not run on this machine",
    ),
}


@dataclass
class Recipe:
    """The data of one arm: robot demos per task (labelled), unlabelled clips per task, and where
    the clips come from (``human`` videos, or ``robot`` episodes with their actions dropped)."""

    robot: Dict[str, int]
    clips: Dict[str, int] = field(default_factory=dict)
    clip_source: str = "human"  # human | robot
    heldout_tasks: Sequence[str] = ()  # tasks whose held-out episodes go into data.heldout

    def describe(self) -> str:
        robot = ", ".join("%s %d" % kv for kv in self.robot.items() if kv[1]) or "none"
        clips = ", ".join("%s %d" % kv for kv in self.clips.items() if kv[1])
        text = "robot demos: %s" % robot
        if clips:
            text += "; %s clips (no actions): %s" % (self.clip_source, clips)
        return text


@dataclass
class Arm:
    name: str
    label: str
    overrides: List[str]
    recipe: Recipe
    stages: Sequence[str] = ("act_vae", "visual_lam", "pseudo_label", "ntp", "rf", "export")
    eval_tasks: Sequence[str] = TASKS
    note: str = ""


@dataclass
class Context:
    """Where one experiment run lives and how big it is."""

    scale: Scale
    root: Path  # repository root (data/ and runs/ live under it)
    experiment: str
    seeds: int
    progress: bool = True
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)

    @property
    def data_dir(self) -> Path:
        return self.root / "data" / "experiments" / self.scale.name

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs" / "experiments" / self.scale.name / self.experiment

    def run_dir(self, arm: str, seed: int) -> Path:
        return self.runs_dir / arm / ("seed%d" % seed)


# ----------------------------------------------------------------------------------------------
# tools (the project's own CLIs, as subprocesses)


def tool(name: str) -> List[str]:
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return [str(exe)]
    found = shutil.which(name)
    if not found:
        raise ExperimentError("%s not found next to %s or on PATH" % (name, sys.executable))
    return [found]


def _run(cmd: List[str], log_path: Path, what: str, env: Optional[Dict[str, str]] = None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    full_env.setdefault("MUJOCO_GL", "egl")
    full_env.update(env or {})
    with open(log_path, "a") as log:
        log.write("$ %s\n" % " ".join(cmd))
        log.flush()
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    if rc != 0:
        tail = log_path.read_text()[-2000:]
        raise ExperimentError("%s failed (exit %d); log %s ends:\n%s" % (what, rc, log_path, tail))


def _done(path: Path) -> bool:
    return (path / ".done").is_file()


def _mark_done(path: Path, info: dict) -> None:
    (path / ".done").write_text(json.dumps(info) + "\n")


# ----------------------------------------------------------------------------------------------
# cached data


def needed_counts(scale: Scale) -> Tuple[int, int]:
    """(robot episodes per task, clips per task) the largest recipe of any experiment reads: the
    labelled demos, plus the episodes experiment 2 turns into action-free robot videos, plus the
    held-out ones."""
    robot = max(scale.robot_episodes, scale.small_robot_episodes + scale.pretrain_clips)
    return robot + scale.heldout_episodes, scale.pretrain_clips


def ensure_robot_data(ctx: Context, task: str, shifted: bool = False) -> Path:
    """Dataset of scripted demos of ``task`` (recorded once per scale); its path."""
    from clap_ros.sim.appearance import SHIFTED_SEEDS_FROM

    n_robot, _ = needed_counts(ctx.scale)
    if shifted:
        n_robot = max(2, ctx.scale.heldout_episodes)
    base = ctx.data_dir / ("shifted" if shifted else "robot") / task
    ds = base / "dataset"
    if _done(base):
        return ds
    seed = TRAIN_SEED + (SHIFTED_SEEDS_FROM if shifted else 0)
    ctx.log(
        "[data] recording %d %s%s demos (seed %d) -> %s"
        % (n_robot, task, " shifted-look" if shifted else "", seed, base)
    )
    shutil.rmtree(base, ignore_errors=True)
    log = base / "log.txt"
    _run(
        tool("clap-ros")
        + [
            "sim",
            "record",
            "--direct",
            "--robot",
            ROBOT,
            "--task",
            task,
            "--episodes",
            str(n_robot),
            "--seed",
            str(seed),
            "--out",
            str(base / "bags"),
            "--quiet",
        ],
        log,
        "sim record %s" % task,
    )
    _run(
        tool("clap-ros")
        + ["bag2dataset", "--bags", str(base / "bags"), "--out", str(ds), "--strict", "--quiet"],
        log,
        "bag2dataset %s" % task,
    )
    shutil.rmtree(base / "bags", ignore_errors=True)  # the dataset holds everything training reads
    _mark_done(base, {"task": task, "episodes": n_robot, "seed": seed, "shifted": shifted})
    return ds


def ensure_human_data(ctx: Context) -> Path:
    base = ctx.data_dir / "human"
    if _done(base):
        return base
    _, n_clips = needed_counts(ctx.scale)
    ctx.log("[data] rendering %d human clips per task -> %s" % (n_clips, base))
    shutil.rmtree(base, ignore_errors=True)
    _run(
        tool("clap-ros")
        + [
            "sim",
            "human-videos",
            "--task",
            "all",
            "--episodes",
            str(n_clips),
            "--scenes",
            str(ctx.scale.human_scenes),
            "--fps",
            "15",
            "--seed",
            str(TRAIN_SEED),
            "--out",
            str(base),
        ],
        ctx.data_dir / "human_log.txt",
        "sim human-videos",
    )
    _mark_done(base, {"clips_per_task": n_clips})
    return base


_CACHE: Dict[Tuple[str, str], Any] = {}


def robot_episodes(ctx: Context, task: str, shifted: bool = False) -> List[dict]:
    key = ("shifted" if shifted else "robot", str(ctx.data_dir / task))
    if key not in _CACHE:
        from clap_train.data import load_robot_episodes

        ds = ensure_robot_data(ctx, task, shifted)
        _CACHE[key] = load_robot_episodes(ds, "observation.images.scene")
    return _CACHE[key]


def human_clips(ctx: Context) -> List[dict]:
    key = ("human", str(ctx.data_dir))
    if key not in _CACHE:
        from clap_train.data import load_human_clips

        _CACHE[key] = load_human_clips(ensure_human_data(ctx))
    return _CACHE[key]


def robot_video_clips(episodes: Sequence[dict]) -> List[dict]:
    """Robot episodes as action-free clips (the human-clip format): frames, task, instruction and a
    scene id from the look, so ConLA's same-scene negatives work as for human videos."""
    out = []
    for i, ep in enumerate(episodes):
        look = ep.get("appearance") or {}
        scene = (
            100 * int(look.get("table_texture") or 0)
            + 10 * int(look.get("wall_texture") or 0)
            + int(look.get("light") or 0)
        )
        task = ep.get("task_name") or "robot"
        out.append(
            {
                "frames": ep["images"]["observation.images.scene"],
                "action_category": task,
                "instruction": ep.get("instruction") or "",
                "scene_id": scene,
                "file": "robot_video/%s_%06d" % (task, i),
            }
        )
    return out


def build_data(ctx: Context, recipe: Recipe):
    """The in-memory TrainingData of a recipe (episodes are never shared mutable state: clip dicts
    are copied because pseudo-labelling writes into them)."""
    from clap_train.data import TrainingData

    s = ctx.scale
    train, held, clips = [], [], []
    for task in TASKS:
        n = int(recipe.robot.get(task, 0))
        n_clips = int(recipe.clips.get(task, 0))
        if n or task in recipe.heldout_tasks or (n_clips and recipe.clip_source == "robot"):
            eps = robot_episodes(ctx, task)
            # held-out episodes are the last ones, so every arm's training set is disjoint from them
            held_part = eps[len(eps) - s.heldout_episodes :]
            pool = eps[: len(eps) - s.heldout_episodes]
            if n > len(pool):
                raise ExperimentError(
                    "recipe wants %d %s demos, the %s data has %d" % (n, task, s.name, len(pool))
                )
            train += pool[:n]
            if task in recipe.heldout_tasks:
                held += held_part
            if n_clips and recipe.clip_source == "robot":
                # robot videos come from episodes no arm trains on with actions
                start = s.small_robot_episodes
                clips += robot_video_clips(pool[start : start + n_clips])
        if n_clips and recipe.clip_source == "human":
            picked = [c for c in human_clips(ctx) if c["action_category"] == task][:n_clips]
            clips += [dict(c) for c in picked]
    if recipe.clip_source not in ("human", "robot"):
        raise ExperimentError("clip_source must be human or robot, not %r" % recipe.clip_source)
    return TrainingData(train, held, clips)


# ----------------------------------------------------------------------------------------------
# training, export, evaluation


# the checkout this code runs from (training/clap_train/experiments/common.py -> repository)
CODE_ROOT = Path(__file__).resolve().parents[3]


def git_commit(repo: Path = CODE_ROOT) -> str:
    """HEAD of the code's checkout, "+dirty" when tracked files differ from it."""
    try:
        sha = subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=repo, text=True, stderr=subprocess.DEVNULL
        ).strip()
        dirty = (
            subprocess.call(["git", "diff", "--quiet", "HEAD"], cwd=repo, stderr=subprocess.DEVNULL)
            != 0
        )
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def arm_config(ctx: Context, arm: Arm, seed: int, out_dir: Path, extra: Sequence[str] = ()):
    from clap_train.config import load_config

    ds = ensure_robot_data(ctx, next((t for t in TASKS if arm.recipe.robot.get(t)), TASKS[0]))
    # data.robot_dataset only tells the stages the robot, fps and joint names (dataset_facts);
    # the episodes themselves come in memory from the recipe. human_videos stays unset so
    # pseudo-labelling never writes into the shared data cache.
    overrides = ctx.scale.overrides() + [
        "seed=%d" % seed,
        "out_dir=%s" % out_dir,
        "device=cpu" if ctx.scale.preset == "tiny" else "device=auto",
        "data.robot_dataset=%s" % ds,
        "data.human_videos=null",
        "ntp.human_mix=%s" % ("0" if not any(arm.recipe.clips.values()) else "0.25"),
    ]
    cfg = load_config(ctx.scale.preset, overrides + list(arm.overrides) + list(extra))
    if cfg.pseudo_label.model == "lapa":
        # LAPA's codes stand in for Act-VAE tokens in NTP: same number per chunk, and a codebook
        # no larger than the Act-VAE's (its 8 codes map onto the first 8 <ACT_k>, meaning nothing)
        cfg.lapa.num_tokens = cfg.act_vae.num_tokens * cfg.act_vae.num_arms
        cfg.lapa.codebook_size = min(cfg.lapa.codebook_size, cfg.act_vae.codebook_size)
    return cfg


def train_arm(
    ctx: Context, arm: Arm, seed: int, out_dir: Path, data=None, extra: Sequence[str] = ()
) -> Tuple[Any, Dict[str, Any], float]:
    """(config, pipeline summary, seconds) of the arm's stages, export included."""
    from clap_train.pipeline import RunOptions, run_pipeline

    cfg = arm_config(ctx, arm, seed, out_dir, extra)
    data = data if data is not None else build_data(ctx, arm.recipe)
    opt = RunOptions(
        resume=False,
        progress=ctx.progress,
        bundle_out=str(out_dir / "bundle"),
        command="clap-train experiment %s --scale %s" % (ctx.experiment, ctx.scale.name),
    )
    t0 = time.time()
    summary = run_pipeline(cfg, data=data, stages=list(arm.stages), opt=opt)
    return cfg, summary, time.time() - t0


def evaluate_closed_loop(
    ctx: Context, bundle: Path, tasks: Sequence[str], out_dir: Path, seed: int = EVAL_SEED
) -> Tuple[Dict[str, Dict[str, Any]], float]:
    """Closed-loop success per task through the full ROS stack (``clap-ros eval-sim``); one
    subprocess per task. Returns ({task: {successes, episodes, rate, complete}}, seconds)."""
    s = ctx.scale
    out: Dict[str, Dict[str, Any]] = {}
    t0 = time.time()
    for task in tasks:
        d = out_dir / task
        if (d / "result.json").is_file():  # eval-sim never overwrites: a re-run starts clean
            shutil.rmtree(d)
        cmd = tool("clap-ros") + [
            "eval-sim",
            "--robot",
            ROBOT,
            "--task",
            task,
            "--episodes",
            str(s.eval_episodes),
            "--model",
            str(bundle),
            "--backend",
            "cpu",
            "--seed",
            str(seed),
            "--out",
            str(d),
            "--real-time-factor",
            repr(s.real_time_factor),
            "--no-progress",
        ]
        if task in s.eval_timeout_s:
            cmd += ["--timeout", repr(s.eval_timeout_s[task])]
        ctx.log("[eval] %s on %s (%d episodes, seed %d)" % (bundle, task, s.eval_episodes, seed))
        log = out_dir / ("%s.log" % task)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            rc = subprocess.call(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1")
            )
        if not (d / "result.json").is_file():
            raise ExperimentError(
                "eval-sim on %s wrote no result (exit %d); log %s ends:\n%s"
                % (task, rc, log, log.read_text()[-2000:])
            )
        res = json.loads((d / "result.json").read_text())
        t = res["tasks"][task]
        out[task] = {
            "successes": int(t["successes"]),
            "episodes": int(t["episodes"]),
            "rate": t["success_rate"],
            "complete": bool(res["complete"]),
            "error": res.get("error", ""),
            "wall_s": round(res.get("wall_s", 0.0), 1),
            # graded closed-loop figures: where every arm fails, how close each came
            "final_goal_distance_m": t.get("median_final_goal_distance_m"),
            "goal_progress": t.get("median_goal_progress"),
        }
    return out, time.time() - t0


def load_results(runs_dir: Path) -> List[dict]:
    """Every result.json under ``runs_dir`` (runs/experiments/<scale>/<exp>), sorted."""
    out = []
    for path in sorted(Path(runs_dir).glob("*/seed*/" + RESULT_FILE)):
        doc = json.loads(path.read_text())
        if doc.get("format") != "clap_experiment_result":
            continue
        doc["_path"] = str(path)
        out.append(doc)
    return out


def reevaluate(
    ctx: Context, bundle_of: Optional[Callable[[Context, dict], Path]] = None
) -> List[Path]:
    """Closed-loop evaluation again for every finished arm of the experiment, with its bundle and
    eval seed, rewriting success and eval cost in its result.json (training is left alone): for
    a changed evaluator, or more episodes, without retraining."""
    paths = []
    for doc in load_results(ctx.runs_dir):
        if doc.get("scale") != ctx.scale.name:
            continue
        path = Path(doc.pop("_path"))
        bundle = bundle_of(ctx, doc) if bundle_of else path.parent / "bundle"
        if not (bundle / "manifest.yaml").is_file():
            raise ExperimentError("%s: no bundle at %s to evaluate" % (path, bundle))
        tasks = list(doc.get("success") or TASKS)
        success, t_eval = evaluate_closed_loop(
            ctx, bundle, tasks, path.parent / "eval", seed=int(doc.get("eval_seed", EVAL_SEED))
        )
        wall = dict(doc.get("wall_s") or {})
        wall["eval"] = round(t_eval, 1)
        wall["total"] = round(wall.get("train", 0.0) + t_eval, 1)
        doc.update(
            success=success,
            wall_s=wall,
            reevaluated={
                "git_commit": git_commit(),
                "episodes_per_task": ctx.scale.eval_episodes,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        path.write_text(json.dumps(doc, indent=1) + "\n")
        paths.append(path)
    return paths


def write_result(
    ctx: Context,
    arm: Arm,
    seed: int,
    out_dir: Path,
    cfg,
    *,
    success=None,
    metrics=None,
    wall: Optional[Dict[str, float]] = None,
    extra=None,
) -> Path:
    doc = {
        "format": "clap_experiment_result",
        "version": 1,
        "experiment": ctx.experiment,
        "arm": arm.name,
        "label": arm.label,
        "seed": seed,
        "scale": ctx.scale.name,
        "recipe": arm.recipe.describe(),
        "overrides": list(arm.overrides),
        "note": arm.note,
        "config": cfg.to_dict() if cfg is not None else None,
        "git_commit": git_commit(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "success": success or {},
        "metrics": metrics or {},
        "wall_s": {k: round(v, 1) for k, v in (wall or {}).items()},
        "scale_sizes": asdict(ctx.scale),
    }
    doc.update(extra or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT_FILE
    from clap_train.common.checkpoint import to_jsonable

    path.write_text(json.dumps(to_jsonable(doc), indent=1) + "\n")
    return path


def heldout_metrics(summary: Dict[str, Any]) -> Dict[str, float]:
    """The held-out figures of a pipeline run: the NTP stage's (token accuracy, decoded chunk) and
    the RF stage's own (``rf_*``, ``mean_chunk_*``: the RF stage also re-reports the NTP inside the
    policy, which the NTP stage's figures already cover for planners it did not fine-tune)."""
    stages = summary.get("stages", {})
    out = dict(stages.get("ntp", {}).get("heldout") or {})
    out.update(
        {
            k: v
            for k, v in (stages.get("rf", {}).get("heldout") or {}).items()
            if k.startswith(("rf_", "mean_chunk"))
        }
    )
    return out


def run_standard_arm(ctx: Context, arm: Arm, seed: int) -> Path:
    """Train the arm's pipeline, export its bundle, evaluate it closed-loop, write result.json."""
    out_dir = ctx.run_dir(arm.name, seed)
    shutil.rmtree(out_dir, ignore_errors=True)
    ctx.log("[%s] arm %s seed %d: %s" % (ctx.experiment, arm.name, seed, arm.recipe.describe()))
    cfg, summary, t_train = train_arm(ctx, arm, seed, out_dir)
    success, t_eval = evaluate_closed_loop(
        ctx, out_dir / "bundle", arm.eval_tasks, out_dir / "eval"
    )
    metrics = heldout_metrics(summary)
    return write_result(
        ctx,
        arm,
        seed,
        out_dir,
        cfg,
        success=success,
        metrics=metrics,
        wall={"train": t_train, "eval": t_eval, "total": t_train + t_eval},
    )


def run_arms(
    ctx: Context,
    arms: Sequence[Arm],
    run_one: Callable[[Context, Arm, int], Path] = run_standard_arm,
) -> List[Path]:
    paths = []
    for seed in range(ctx.seeds):
        for arm in arms:
            paths.append(run_one(ctx, arm, seed))
    return paths
