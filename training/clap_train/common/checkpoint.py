"""safetensors checkpoints that carry everything needed to rebuild, resume and export a stage.

One file per checkpoint. Tensors: ``model/<name>`` (the state dict), ``optim/<param>/<key>``
(optimizer state tensors), ``rng/torch`` (CPU generator state, so a resumed run draws the same
numbers as an uninterrupted one). Metadata (JSON strings): ``config`` (the full typed config),
``stats`` (normalisation statistics), ``step``, ``meta`` (model constructor arguments and anything
else the stage needs to rebuild itself) and ``optim`` (param groups and non-tensor state).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from clap_ros.data.jsonable import json_default

from ..config import Config, config_from_json

FORMAT = "clap_train_checkpoint"
VERSION = "1"


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from nested dicts/lists of numbers, numpy values and torch tensors (numpy
    and paths through the runtime's one ``json_default``)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, (np.ndarray, np.generic)):
        return json_default(obj)
    return obj


def _stats_from_json(obj: Any) -> Any:
    """Numeric lists become float32 arrays again; everything else is kept as is."""
    if isinstance(obj, dict):
        return {k: _stats_from_json(v) for k, v in obj.items()}
    if isinstance(obj, list) and obj and all(isinstance(v, (int, float, list)) for v in obj):
        try:
            return np.asarray(obj, dtype=np.float32)
        except ValueError:
            return [_stats_from_json(v) for v in obj]
    return obj


class Checkpoint(NamedTuple):
    state_dict: Dict[str, torch.Tensor]
    cfg: Optional[Config]
    stats: Dict[str, Any]
    step: int
    meta: Dict[str, Any]
    optimizer_state: Optional[Dict[str, Any]]
    rng_state: Optional[torch.Tensor]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return (
        model.module
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module)
        else model
    )


def save_checkpoint(
    path,
    model: torch.nn.Module,
    cfg: Optional[Config],
    stats: Optional[dict] = None,
    step: int = 0,
    optimizer: Optional[torch.optim.Optimizer] = None,
    meta: Optional[dict] = None,
    save_rng: bool = True,
) -> Path:
    """Write ``path`` atomically (temp file + rename) so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: Dict[str, torch.Tensor] = {}
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    for k, v in _unwrap(model).state_dict().items():
        tensors["model/" + k] = v.detach().cpu().contiguous().clone()
    optim_meta = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        plain_state: Dict[str, Dict[str, Any]] = {}
        for pid, st in sd["state"].items():
            plain_state[str(pid)] = {}
            for key, val in st.items():
                if isinstance(val, torch.Tensor):
                    tensors["optim/%s/%s" % (pid, key)] = val.detach().cpu().contiguous().clone()
                else:
                    plain_state[str(pid)][key] = val
        optim_meta = {"param_groups": sd["param_groups"], "state": plain_state}
    if save_rng:
        tensors["rng/torch"] = torch.get_rng_state().clone()
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_json() if cfg is not None else "null",
        "stats": json.dumps(to_jsonable(stats or {})),
        "step": str(int(step)),
        "meta": json.dumps(to_jsonable(meta or {})),
        "optim": json.dumps(optim_meta),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_checkpoint(path, map_location: str = "cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("checkpoint not found: %s" % path)
    model_sd: Dict[str, torch.Tensor] = {}
    optim_tensors: Dict[str, Dict[str, torch.Tensor]] = {}
    rng = None
    with safe_open(str(path), framework="pt", device=map_location) as f:
        md = f.metadata() or {}
        if md.get("format") != FORMAT:
            raise ValueError(
                "%s is not a clap_train checkpoint (format=%r)" % (path, md.get("format"))
            )
        for key in f.keys():
            t = f.get_tensor(key)
            if key.startswith("model/"):
                model_sd[key[len("model/") :]] = t
            elif key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                optim_tensors.setdefault(pid, {})[name] = t
            elif key == "rng/torch":
                rng = t.cpu()
    cfg_json = md.get("config", "null")
    cfg = None if cfg_json == "null" else config_from_json(cfg_json)
    optim_meta = json.loads(md.get("optim", "null"))
    optim_state = None
    if optim_meta is not None:
        state = {}
        for pid, plain in optim_meta["state"].items():
            entry = dict(plain)
            entry.update(optim_tensors.get(pid, {}))
            state[int(pid)] = entry
        for pid, tens in optim_tensors.items():
            state.setdefault(int(pid), {}).update(tens)
        optim_state = {"state": state, "param_groups": optim_meta["param_groups"]}
    return Checkpoint(
        state_dict=model_sd,
        cfg=cfg,
        stats=_stats_from_json(json.loads(md.get("stats", "{}"))),
        step=int(md.get("step", "0")),
        meta=json.loads(md.get("meta", "{}")),
        optimizer_state=optim_state,
        rng_state=rng,
    )
