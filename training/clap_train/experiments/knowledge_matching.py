"""Experiment 4, Knowledge Matching vs forgetting.

A base NTP planner is trained on the pretraining tasks (reach, push, pick_place). Then CLAP-RF is
trained from it on a new task, ``stack`` (the scale's ``robot_episodes``), plus a small rehearsal
set of the old tasks (``few_shot_episodes`` each; the RF head starts from scratch and must output
their actions too), in three ways:

* ``none``: the shared observation encoder is fine-tuned by the action loss, nothing holds the
  planner back (``rf.km_weight=0``);
* ``km``: the whole planner is trainable and Knowledge Matching adds
  ``0.005 * KL(p_ref || p_theta)`` against the frozen base planner;
* ``insulated``: knowledge insulation, the planner is frozen (``rf.freeze_backbone=true``).

Forgetting = greedy token accuracy of the planner inside the fine-tuned policy on held-out windows
of the pretraining tasks, against the base planner's on the same windows. No sim scene holds two
tasks' objects (each task builds its own objects), so instruction following is measured as the
closed-loop success of the instructed pretraining task in its own scene after fine-tuning, and
new-task success as closed-loop success on stack.
"""

from __future__ import annotations

import shutil
from typing import List

from .common import (
    TASKS,
    Arm,
    Context,
    Recipe,
    Scale,
    build_data,
    evaluate_closed_loop,
    train_arm,
    write_result,
)
from .report import Claim

NAME = "knowledge_matching"
TITLE = "4. Knowledge Matching vs forgetting"
DESCRIPTION = __doc__.split("\n", 2)[2]
OLD_TASKS = ("reach", "push", "pick_place")
NEW_TASK = "stack"
TABLE_TASKS = TASKS


def base_recipe(scale: Scale) -> Recipe:
    return Recipe(robot={t: scale.robot_episodes for t in OLD_TASKS}, heldout_tasks=OLD_TASKS)


def finetune_recipe(scale: Scale) -> Recipe:
    robot = {t: scale.few_shot_episodes for t in OLD_TASKS}
    robot[NEW_TASK] = scale.robot_episodes
    return Recipe(robot=robot, heldout_tasks=OLD_TASKS)


def base_arm(scale: Scale) -> Arm:
    return Arm(
        "base",
        "base planner (pretraining tasks)",
        ["ntp.human_mix=0"],
        base_recipe(scale),
        stages=("act_vae", "ntp"),
    )


def arms(scale: Scale) -> List[Arm]:
    r = finetune_recipe(scale)
    st = ("rf", "export")
    return [
        Arm("none", "no KM", ["rf.km_weight=0", "rf.freeze_backbone=false"], r, stages=st),
        Arm(
            "km", "KM (λ = 0.005)", ["rf.km_weight=0.005", "rf.freeze_backbone=false"], r, stages=st
        ),
        Arm(
            "insulated",
            "knowledge insulation (frozen planner)",
            ["rf.km_weight=0", "rf.freeze_backbone=true"],
            r,
            stages=st,
        ),
    ]


METRICS = [
    ("pretrain_token_acc", "token acc, pretraining tasks"),
    ("base_token_acc", "base planner's token acc"),
    ("token_acc_retained", "retained (ratio)"),
    ("rf_mae", "RF chunk MAE (held-out)"),
]
METRICS_TEXT = (
    "Forgetting (held-out windows of reach/push/pick_place, greedy decoding; the base "
    "planner is the same for every arm of a seed):"
)
CLAIMS = [
    Claim(
        "KM forgets less than fine-tuning without it (token accuracy retained)",
        ("km", "metric:token_acc_retained"),
        ("none", "metric:token_acc_retained"),
    ),
    Claim(
        "Knowledge insulation retains the base token accuracy exactly",
        ("insulated", "metric:token_acc_retained"),
        ("insulated", "metric:one"),
        at_least=True,
    ),
    Claim(
        "KM reaches at least the new-task (stack) success of knowledge insulation",
        ("km", "success:stack"),
        ("insulated", "success:stack"),
        at_least=True,
    ),
    Claim(
        "KM keeps instruction following on the pretraining tasks at least as well as no KM",
        ("km", "success:mean"),
        ("none", "success:mean"),
        at_least=True,
        tasks=OLD_TASKS,
    ),
    Claim(
        "KM reaches at least the new-task (stack) goal progress of knowledge insulation",
        ("km", "progress:stack"),
        ("insulated", "progress:stack"),
        at_least=True,
    ),
    Claim(
        "KM keeps at least the goal progress of no KM on the pretraining tasks (mean)",
        ("km", "progress:mean"),
        ("none", "progress:mean"),
        at_least=True,
        tasks=OLD_TASKS,
    ),
]


def run(ctx: Context):
    base = base_arm(ctx.scale)
    paths = []
    for seed in range(ctx.seeds):
        base_dir = ctx.run_dir("_base", seed)
        shutil.rmtree(base_dir, ignore_errors=True)
        base_cfg, base_summary, t_base = train_arm(ctx, base, seed, base_dir)
        base_acc = base_summary["stages"]["ntp"]["heldout"]["ntp_token_acc"]
        ntp_ckpt = base_dir / "ntp" / "final.safetensors"
        data = build_data(ctx, finetune_recipe(ctx.scale))
        for arm in arms(ctx.scale):
            out_dir = ctx.run_dir(arm.name, seed)
            shutil.rmtree(out_dir, ignore_errors=True)
            cfg, summary, t_train = train_arm(
                ctx, arm, seed, out_dir, data=data, extra=["rf.ntp_checkpoint=%s" % ntp_ckpt]
            )
            held = summary["stages"]["rf"]["heldout"]
            success, t_eval = evaluate_closed_loop(
                ctx, out_dir / "bundle", arm.eval_tasks, out_dir / "eval"
            )
            acc = held.get("ntp_token_acc")
            metrics = {
                "pretrain_token_acc": acc,
                "base_token_acc": base_acc,
                "one": 1.0,
                "token_acc_retained": (acc / base_acc) if acc is not None and base_acc else None,
                "rf_mae": held.get("rf_mae"),
            }
            # the base planner's cost is shared by the three arms of a seed: a third each
            t_tr = t_train + t_base / 3.0
            paths.append(
                write_result(
                    ctx,
                    arm,
                    seed,
                    out_dir,
                    cfg,
                    success=success,
                    metrics=metrics,
                    wall={"train": t_tr, "eval": t_eval, "total": t_tr + t_eval},
                    extra={"base_checkpoint": str(ntp_ckpt)},
                )
            )
    return paths
