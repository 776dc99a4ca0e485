"""The experiments of issue 6: one module per experiment, a shared runner (common) and the report
writer (report). ``clap-train experiment NAME --scale smoke|cpu|paper`` runs them."""

from __future__ import annotations

import importlib
from typing import Dict, List

# command-line name -> module
EXPERIMENTS: Dict[str, str] = {
    "human_transfer": "human_transfer",
    "human_vs_robot": "human_vs_robot_pretraining",
    "distractor_shift": "distractor_shift",
    "knowledge_matching": "knowledge_matching",
}


def load(name: str):
    if name not in EXPERIMENTS:
        raise ValueError("unknown experiment %r (known: %s, all)" % (name, ", ".join(EXPERIMENTS)))
    return importlib.import_module("clap_train.experiments.%s" % EXPERIMENTS[name])


def all_modules() -> List:
    return [load(n) for n in EXPERIMENTS]
