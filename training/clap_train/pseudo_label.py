"""Stage 3 — pseudo-labelling: human videos -> action tokens, written next to the videos.

Every window (o_t, o_{t+H}) of every clip goes through the visual latent-action model; its token
indices are in the Act-VAE codebook, so NTP can train on them exactly like on robot codes. Output:
``DIR/pseudo_actions.json``::

    {"format": "clap_pseudo_actions", "version": 1, "chunk_len": H, "stride": s,
     "codebook_size": K, "tokens_per_chunk": T, "image_size": S, "checkpoint": "...",
     "clips": [{"file": "videos/000000.mp4", "action_category": "...", "instruction": "...",
                "start_frames": [t, ...], "tokens": [[k_1..k_T], ...]}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import resize_frames, window_starts

FORMAT = "clap_pseudo_actions"


@torch.no_grad()
def label_clip(
    model,
    frames: np.ndarray,
    chunk_len: int,
    image_size: int,
    stride: int = 1,
    batch_size: int = 64,
    device: str = "cpu",
) -> Dict[str, list]:
    """One clip's frames uint8 [T,H,W,3] -> {"start_frames": [...], "tokens": [[...], ...]}."""
    fr = torch.from_numpy(resize_frames(frames, image_size))
    starts = window_starts(len(fr), chunk_len, stride)
    tokens: List[List[int]] = []
    for s in range(0, len(starts), batch_size):
        t = torch.as_tensor(starts[s : s + batch_size])
        _, idx = model.encode_pair(fr[t].to(device), fr[t + chunk_len].to(device))
        tokens += idx.cpu().tolist()
    return {"start_frames": [int(t) for t in starts], "tokens": tokens}


def label_clips(
    model,
    clips: Sequence[Dict[str, Any]],
    chunk_len: int,
    image_size: int,
    stride: int = 1,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> List[Dict[str, Any]]:
    model.eval().to(device)
    out = []
    for c in tqdm(clips, desc="pseudo-label", disable=not progress, leave=False):
        entry = {k: c[k] for k in ("file", "action_category", "instruction", "scene_id") if k in c}
        entry.update(
            label_clip(model, c["frames"], chunk_len, image_size, stride, batch_size, device)
        )
        out.append(entry)
    return out


def pseudo_label_directory(
    model,
    directory,
    chunk_len: int,
    image_size: int,
    stride: int = 1,
    batch_size: int = 64,
    filename: str = "pseudo_actions.json",
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Label every clip of a human-video directory and write DIR/<filename> (atomically)."""
    from .data import load_human_clips

    directory = Path(directory)
    clips = load_human_clips(directory)
    labelled = label_clips(
        model, clips, chunk_len, image_size, stride, batch_size, device, progress
    )
    doc = {
        "format": FORMAT,
        "version": 1,
        "chunk_len": chunk_len,
        "stride": stride,
        "codebook_size": int(model.codebook.weight.shape[0]),
        "tokens_per_chunk": int(len(labelled[0]["tokens"][0]))
        if labelled and labelled[0]["tokens"]
        else 0,
        "image_size": image_size,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "clips": labelled,
    }
    path = directory / filename
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return path


def load_pseudo_labels(directory, filename: str = "pseudo_actions.json") -> Dict[str, Any]:
    doc = json.loads((Path(directory) / filename).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError("%s/%s is not a %s file" % (directory, filename, FORMAT))
    return doc


LABELLERS = ("visual_lam", "lapa")


def labeller_path(cfg, checkpoint: Optional[str] = None) -> Path:
    """The labelling checkpoint: explicit, else pseudo_label.checkpoint, else
    <out_dir>/<pseudo_label.model>/final.safetensors."""
    kind = cfg.pseudo_label.model
    if kind not in LABELLERS:
        raise ValueError(
            "pseudo_label.model must be one of %s, not %r" % (", ".join(LABELLERS), kind)
        )
    return Path(
        checkpoint or cfg.pseudo_label.checkpoint or Path(cfg.out_dir) / kind / "final.safetensors"
    )


def load_labeller(cfg, checkpoint: Optional[str] = None):
    """(model, Checkpoint, path) of the model named by pseudo_label.model. A LAPA model's codes
    are its own (no tie to the Act-VAE codebook): that is the baseline's whole point."""
    path = labeller_path(cfg, checkpoint)
    if cfg.pseudo_label.model == "lapa":
        from .lapa import load_lapa as load
    else:
        from .visual_lam import load_visual_lam as load
    model, ck = load(path)
    return model, ck, path


def run_pseudo_label(
    cfg,
    checkpoint: Optional[str] = None,
    directory: Optional[str] = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    directory = directory or cfg.data.human_videos
    if not directory:
        raise ValueError("no human-video directory: set data.human_videos")
    model, ck, ckpt = load_labeller(cfg, checkpoint)
    return pseudo_label_directory(
        model,
        directory,
        ck.cfg.data.chunk_len,
        int(ck.meta["image_size"]),
        cfg.pseudo_label.stride,
        cfg.pseudo_label.batch_size,
        cfg.pseudo_label.filename,
        str(ckpt),
        device,
        progress,
    )
