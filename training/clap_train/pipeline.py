"""Every CLAP stage in order, plus export and parity: what ``clap-train pipeline`` runs.

Stages are a registry (name -> runner), not an if-chain; each runner takes the typed config and
the loaded data once, so a pipeline run reads the dataset and the videos a single time. Each stage
writes its checkpoints under ``<out_dir>/<stage>/`` and resumes from ``last.safetensors`` there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

STAGES = ("act_vae", "visual_lam", "lapa", "probes", "pseudo_label", "ntp", "rf", "export")


@dataclass
class RunOptions:
    resume: bool = True
    progress: bool = True
    bundle_out: Optional[str] = None  # export target; default <out_dir>/bundle
    models: Dict[str, Any] = field(default_factory=dict)  # trained modules by stage (DDP checks)
    command: Optional[str] = None  # how to rebuild the bundle, recorded in its manifest


def load_data(cfg, synthetic: int = 0):
    """The training data: ``synthetic`` > 0 makes that many moving-square episodes (and as many
    human clips) instead of reading ``data.robot_dataset`` / ``data.human_videos``."""
    from .data import (
        TrainingData,
        load_training_data,
        make_synthetic_episodes,
        make_synthetic_human_clips,
        split_episodes,
    )

    if synthetic and synthetic > 0:
        size = cfg.data.image_size
        eps = make_synthetic_episodes(
            synthetic, length=max(3 * cfg.data.chunk_len, 40), image_size=size, seed=cfg.seed
        )
        clips = make_synthetic_human_clips(
            synthetic, length=max(2 * cfg.data.chunk_len + 8, 40), image_size=size, seed=cfg.seed
        )
        for c in clips:  # the human renderer writes an instruction per clip; mimic it
            c.setdefault("instruction", f"move {c['action_category']}")
        tr, ho = split_episodes(len(eps), cfg.data.heldout_fraction, cfg.seed)
        return TrainingData([eps[i] for i in tr], [eps[i] for i in ho], clips)
    return load_training_data(cfg)


def _last(res) -> Dict[str, float]:
    return {k: v for k, v in (getattr(res, "last", None) or {}).items() if k != "step"}


def _act_vae(cfg, data, opt: RunOptions):
    from .act_vae import train_act_vae

    opt.models["act_vae"], res, _ = train_act_vae(
        cfg, data.train_episodes, resume=opt.resume, progress=opt.progress
    )
    return {"train": _last(res), "checkpoint": str(res.checkpoint)}


def _visual_lam(cfg, data, opt: RunOptions):
    from .visual_lam import train_visual_lam

    opt.models["visual_lam"], res = train_visual_lam(
        cfg,
        train_episodes=data.train_episodes,
        human_clips=data.human_clips,
        resume=opt.resume,
        progress=opt.progress,
    )
    return {"train": _last(res), "checkpoint": str(res.checkpoint)}


def _lapa(cfg, data, opt: RunOptions):
    from .lapa import train_lapa

    opt.models["lapa"], res = train_lapa(
        cfg,
        train_episodes=data.train_episodes,
        human_clips=data.human_clips,
        resume=opt.resume,
        progress=opt.progress,
    )
    return {"train": _last(res), "checkpoint": str(res.checkpoint)}


def _probes(cfg, data, opt: RunOptions):
    from .probes import run_probes

    if not data.heldout_episodes:
        raise ValueError("probes need held-out episodes (data.heldout_fraction > 0)")
    return {
        "results": run_probes(cfg, data.heldout_episodes),
        "table": str(Path(cfg.out_dir) / "probes"),
    }


def _pseudo_label(cfg, data, opt: RunOptions):
    from .common.dist import is_main
    from .ntp import attach_pseudo_codes
    from .pseudo_label import label_clips, load_labeller, run_pseudo_label

    if not data.human_clips:
        return {"skipped": "no human clips"}
    written = None
    if cfg.data.human_videos and is_main():
        written = str(run_pseudo_label(cfg, progress=opt.progress))
    # the in-memory clips get the same labels, so later stages of this run need not re-read
    model, ck, _ = load_labeller(cfg)
    labelled = label_clips(
        model,
        data.human_clips,
        ck.cfg.data.chunk_len,
        int(ck.meta["image_size"]),
        cfg.pseudo_label.stride,
        cfg.pseudo_label.batch_size,
        progress=opt.progress,
    )
    attach_pseudo_codes(data.human_clips, labelled)
    return {
        "clips": len(labelled),
        "windows": sum(len(e["tokens"]) for e in labelled),
        "file": written,
    }


def _ntp(cfg, data, opt: RunOptions):
    from .ntp import train_ntp

    opt.models["ntp"], res, metrics = train_ntp(cfg, data, resume=opt.resume, progress=opt.progress)
    return {"train": _last(res), "heldout": metrics, "checkpoint": str(res.checkpoint)}


def _rf(cfg, data, opt: RunOptions):
    from .rf import train_rf

    opt.models["rf"], res, metrics = train_rf(cfg, data, resume=opt.resume, progress=opt.progress)
    return {"train": _last(res), "heldout": metrics, "checkpoint": str(res.checkpoint)}


def _export(cfg, data, opt: RunOptions):
    from .common.dist import is_main
    from .export import export_from_checkpoint

    if not is_main():
        return {"skipped": "not rank 0"}
    out = opt.bundle_out or str(Path(cfg.out_dir) / "bundle")
    e = cfg.export
    manifest = export_from_checkpoint(
        Path(cfg.out_dir) / "rf" / "final.safetensors",
        out,
        opset=e.opset,
        atol=e.parity_atol,
        parity_batches=e.parity_batches,
        tensorrt=e.tensorrt,
        progress=opt.progress,
        command=opt.command,
    )
    return {"bundle": out, "parity": manifest["provenance"]["parity"]}


RUNNERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "act_vae": _act_vae,
    "visual_lam": _visual_lam,
    "lapa": _lapa,
    "probes": _probes,
    "pseudo_label": _pseudo_label,
    "ntp": _ntp,
    "rf": _rf,
    "export": _export,
}


def run_stage(name: str, cfg, data, opt: Optional[RunOptions] = None) -> Dict[str, Any]:
    if name not in RUNNERS:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    t0 = time.time()
    out = RUNNERS[name](cfg, data, opt or RunOptions())
    out["seconds"] = round(time.time() - t0, 2)
    return out


def run_pipeline(
    cfg,
    data=None,
    stages: Optional[Sequence[str]] = None,
    opt: Optional[RunOptions] = None,
    synthetic: int = 0,
) -> Dict[str, Any]:
    """Run ``stages`` (default: all, in order) and write ``<out_dir>/pipeline.json``."""
    from .common.checkpoint import to_jsonable
    from .common.dist import is_main
    from .common.seed import seed_everything

    opt = opt or RunOptions()
    stages = list(stages or STAGES)
    unknown = [s for s in stages if s not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    seed_everything(cfg.seed)
    data = data if data is not None else load_data(cfg, synthetic)
    summary: Dict[str, Any] = {"config": cfg.to_dict(), "stages": {}}
    t0 = time.time()
    for name in stages:
        summary["stages"][name] = run_stage(name, cfg, data, opt)
    summary["seconds"] = round(time.time() - t0, 2)
    if is_main():
        path = Path(cfg.out_dir) / "pipeline.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_jsonable(summary), indent=1) + "\n")
    return summary
