"""Experiment 2, human-video-only vs robot-video pretraining (ConLA's claim that the first wins).

Both arms see the same small labelled robot set (the scale's ``small_robot_episodes`` per task:
10 at cpu and paper) and the same number of unlabelled clips per task; they differ only in where
those clips come from:

* ``human_video``: floating-hand human videos (another embodiment, randomised looks);
* ``robot_video``: robot episodes of the same tasks with their actions dropped (never part of
  the labelled set).

The latent-action model is pretrained on robot pairs + these clips, the clips are pseudo-labelled
with it and mixed into the NTP planner's batches, then RF is trained on the small robot set.
"""

from __future__ import annotations

from typing import List

from .common import TASKS, Arm, Context, Recipe, Scale, run_arms
from .report import Claim

NAME = "human_vs_robot"
TITLE = "2. Human-video-only vs robot-video pretraining"
DESCRIPTION = __doc__.split("\n", 2)[2]
TABLE_TASKS = TASKS


def recipe(scale: Scale, source: str) -> Recipe:
    return Recipe(
        robot={t: scale.small_robot_episodes for t in TASKS},
        clips={t: scale.pretrain_clips for t in TASKS},
        clip_source=source,
        heldout_tasks=TASKS,
    )


def arms(scale: Scale) -> List[Arm]:
    return [
        Arm("human_video", "pretrained on human video", [], recipe(scale, "human")),
        Arm("robot_video", "pretrained on robot video", [], recipe(scale, "robot")),
    ]


CLAIMS = [
    Claim(
        "Human-video pretraining reaches at least the success of robot-video pretraining "
        "(mean over the four tasks)",
        ("human_video", "success:mean"),
        ("robot_video", "success:mean"),
        at_least=True,
        tasks=TASKS,
    ),
    Claim(
        "Closed loop: human-video pretraining closes at least as much of the distance to the "
        "goal as robot-video pretraining (goal progress, mean over the four tasks)",
        ("human_video", "progress:mean"),
        ("robot_video", "progress:mean"),
        at_least=True,
        tasks=TASKS,
    ),
    Claim(
        "Human-video pretraining gives at least the held-out NTP token accuracy of robot video",
        ("human_video", "metric:ntp_token_acc"),
        ("robot_video", "metric:ntp_token_acc"),
        at_least=True,
    ),
]
METRICS = [("ntp_token_acc", "held-out NTP token acc"), ("ntp_decoded_mae", "decoded chunk MAE")]
METRICS_TEXT = "Held-out robot episodes of all four tasks (offline, the NTP alone):"


def run(ctx: Context):
    return run_arms(ctx, arms(ctx.scale))
