"""Experiment 3, disentanglement under distractors: the probe table of the training issue and
closed-loop success, both under a stronger visual randomisation at test time than at training.

One model per seed is trained on robot demos of all four tasks + human clips (CLAP + ConLA, with
the LAPA-style baseline trained alongside on the same data). The shift is the sim's shifted
appearance-seed range (``clap_ros.sim.appearance.SHIFTED_SEEDS_FROM``): tables and walls with
textures training never saw and 4 to 6 distractors instead of 0 to 4. Two rows:

* ``in_distribution``: probes on held-out training-look episodes, eval seeds 0, 1, ...;
* ``shifted``: probes on episodes recorded with shifted looks, eval seeds from the shifted range.

Probes (held-out windows, episode-level splits): linear R² from the latent to the motion within
the action chunk (higher is better) and appearance leakage = mean over factors of the logistic
probe's accuracy minus chance (closer to 0 is better), for CLAP/ConLA and the LAPA-style model.
"""

from __future__ import annotations

import shutil
from typing import Dict, List

from .common import (
    TASKS,
    Arm,
    Context,
    Recipe,
    Scale,
    evaluate_closed_loop,
    robot_episodes,
    train_arm,
    write_result,
)
from .report import Claim

NAME = "distractor_shift"
TITLE = "3. Disentanglement and success under a visual shift"
DESCRIPTION = __doc__.split("\n", 2)[2]
TABLE_TASKS = TASKS
STAGES = ("act_vae", "visual_lam", "lapa", "pseudo_label", "ntp", "rf", "export")


def recipe(scale: Scale) -> Recipe:
    return Recipe(
        robot={t: scale.robot_episodes for t in TASKS},
        clips={t: scale.pretrain_clips for t in TASKS},
        heldout_tasks=TASKS,
    )


def arms(scale: Scale) -> List[Arm]:
    r = recipe(scale)
    return [
        Arm("in_distribution", "training look", [], r, stages=STAGES),
        Arm(
            "shifted",
            "shifted look (unseen textures, 4-6 distractors)",
            [],
            r,
            stages=STAGES,
            note="Same trained models as in_distribution; only the test data and eval seeds "
            "differ, so its training cost is counted there.",
        ),
    ]


METRICS = [
    ("clap_r2_motion", "CLAP/ConLA R² motion"),
    ("lapa_r2_motion", "LAPA R² motion"),
    ("clap_leakage", "CLAP/ConLA leakage"),
    ("lapa_leakage", "LAPA leakage"),
]
METRICS_TEXT = (
    "Probes on held-out episodes (continuous latents; R² higher is better, leakage = "
    "accuracy minus chance averaged over appearance factors, lower is better):"
)
CLAIMS = [
    Claim(
        "Under the shift, CLAP/ConLA latents still encode the motion better than LAPA-style "
        "latents (R² motion)",
        ("shifted", "metric:clap_r2_motion"),
        ("shifted", "metric:lapa_r2_motion"),
    ),
    Claim(
        "Under the shift, CLAP/ConLA latents leak less appearance than LAPA-style latents",
        ("shifted", "metric:clap_leakage"),
        ("shifted", "metric:lapa_leakage"),
        lower=True,
    ),
    Claim(
        "The policy keeps its success under the shift (mean over tasks, at most 10 points lower)",
        ("shifted", "success:mean"),
        ("in_distribution", "success:mean"),
        margin=-0.10,
        at_least=True,
        tasks=TASKS,
    ),
    Claim(
        "The policy keeps its goal progress under the shift (mean over tasks, at most 0.1 lower)",
        ("shifted", "progress:mean"),
        ("in_distribution", "progress:mean"),
        margin=-0.10,
        at_least=True,
        tasks=TASKS,
    ),
]


def _probe_metrics(probe: Dict[str, dict]) -> Dict[str, float]:
    out = {}
    for key, name in (("clap", "CLAP/ConLA"), ("lapa", "LAPA-style")):
        r = probe[name]["continuous"]
        out["%s_r2_motion" % key] = r["r2_motion"]
        leaks = [v["accuracy"] - v["chance"] for v in r["leakage"].values()]
        out["%s_leakage" % key] = sum(leaks) / len(leaks) if leaks else None
    return out


def bundle_of(ctx: Context, result: dict):
    """Both rows of a seed evaluate the one model trained for in_distribution."""
    return ctx.run_dir("in_distribution", int(result["seed"])) / "bundle"


def run(ctx: Context):
    from clap_ros.sim.appearance import SHIFTED_SEEDS_FROM
    from clap_train.experiments.common import EVAL_SEED, build_data
    from clap_train.lapa import load_lapa
    from clap_train.probes import run_probes
    from clap_train.visual_lam import load_visual_lam

    ind, shifted = arms(ctx.scale)
    paths = []
    for seed in range(ctx.seeds):
        out_dir = ctx.run_dir(ind.name, seed)
        shift_dir = ctx.run_dir(shifted.name, seed)
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(shift_dir, ignore_errors=True)
        data = build_data(ctx, ind.recipe)
        cfg, summary, t_train = train_arm(ctx, ind, seed, out_dir, data=data)
        models = {
            "CLAP/ConLA": load_visual_lam(out_dir / "visual_lam" / "final.safetensors")[0],
            "LAPA-style": load_lapa(out_dir / "lapa" / "final.safetensors")[0],
        }
        shifted_eps = [ep for t in TASKS for ep in robot_episodes(ctx, t, shifted=True)]
        for arm, d, eps, eval_seed in (
            (ind, out_dir, data.heldout_episodes, EVAL_SEED),
            (shifted, shift_dir, shifted_eps, SHIFTED_SEEDS_FROM + EVAL_SEED),
        ):
            probe = run_probes(cfg, eps, models=models, out_dir=d / "probes_table")
            success, t_eval = evaluate_closed_loop(
                ctx, out_dir / "bundle", arm.eval_tasks, d / "eval", seed=eval_seed
            )
            t_tr = t_train if arm is ind else 0.0
            paths.append(
                write_result(
                    ctx,
                    arm,
                    seed,
                    d,
                    cfg,
                    success=success,
                    metrics=_probe_metrics(probe),
                    wall={"train": t_tr, "eval": t_eval, "total": t_tr + t_eval},
                    extra={"eval_seed": eval_seed, "probes": probe},
                )
            )
    return paths
