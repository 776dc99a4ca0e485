"""Closed-loop validation for model selection: the policy in ``clap-ros eval-sim --mode direct``
on fixed seeds. Trainers choose their checkpoint by this, never by the loss."""

from __future__ import annotations

import math
from typing import Dict

import numpy as np


def success_on(robot: str, task: str, model: str, policy: str, seed0: int, episodes: int) -> Dict:
    """Success count, median goal progress and median closest distance over ``episodes``
    episodes from seed ``seed0`` (reflexes off: the ladder measures learning, not fidelity)."""
    from clap_ros.eval import direct_eval
    from clap_ros.eval.sim_results import EvalConfig

    ec = EvalConfig(
        robot=robot,
        tasks=(task,),
        episodes=episodes,
        model=model,
        backend="cpu",
        seed=seed0,
        progress=False,
        mode="direct",
        policy=policy,
        reflexes=False,
    )
    eps = direct_eval.run_episodes(ec)["episodes"]
    prog = [
        1.0 - e["goal_distance_end_m"] / e["goal_distance_start_m"]
        for e in eps
        if e.get("goal_distance_start_m") and e.get("goal_distance_end_m") is not None
    ]
    closest = [e["goal_distance_min_m"] for e in eps if e.get("goal_distance_min_m") is not None]
    return {
        "success": sum(bool(e["success"]) for e in eps),
        "episodes": len(eps),
        "median_progress": float(np.median(prog)) if prog else math.nan,
        "median_closest_m": float(np.median(closest)) if closest else math.nan,
        "errors": [e["error"] for e in eps if e.get("error")][:3],
    }
