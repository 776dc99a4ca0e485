"""A generic, resumable training loop shared by every stage.

A stage gives :func:`fit` a model whose ``forward(batch)`` returns a dict of losses/metrics with a
scalar ``"loss"``, and a batch source with ``sample(batch_size, generator) -> dict of tensors``.
Batches are drawn with a generator seeded by (seed, step, rank): a resumed run sees exactly the
batches an uninterrupted one would, and under torchrun every rank draws its own shard (the role a
DistributedSampler plays for epoch-based loaders). Optional model hooks:
``after_optimizer_step(step)`` (EMA teachers, dead-code restarts) and
``param_groups(weight_decay)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ..config import Config, StageTrainConfig
from . import dist as D
from .checkpoint import load_checkpoint, save_checkpoint
from .schedule import cosine_with_warmup


def resolve_device(device: str = "auto") -> torch.device:
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(device)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked (fp16 where bf16 is missing); nothing on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63))
    return g


def default_param_groups(model: torch.nn.Module, weight_decay: float) -> List[dict]:
    """No weight decay on biases, norms, embeddings' 1-D params and scalar temperatures."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class MetricLogger:
    """Rank-0 TensorBoard scalars plus a metrics.jsonl file that tests and reports can read."""

    def __init__(self, log_dir: Path, enabled: bool = True):
        self.enabled = enabled and D.is_main()
        self.writer = None
        self.jsonl = None
        if self.enabled:
            log_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir / "tb"))
            self.jsonl = open(log_dir / "metrics.jsonl", "a")

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


@dataclass
class FitResult:
    step: int
    checkpoint: Optional[Path]
    history: List[Dict[str, float]] = field(default_factory=list)  # metrics at each log step
    resumed_from: int = 0
    seconds: float = 0.0

    @property
    def last(self) -> Dict[str, float]:
        return self.history[-1] if self.history else {}


def _scalars(out: Dict[str, Any]) -> Dict[str, float]:
    res = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            res[k] = float(v.detach().float().item())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            res[k] = float(v)
    return res


def fit(
    model: torch.nn.Module,
    source: Any,
    train_cfg: StageTrainConfig,
    out_dir,
    *,
    cfg: Optional[Config] = None,
    stats: Optional[dict] = None,
    meta: Optional[dict] = None,
    stage: str = "train",
    seed: int = 0,
    device: Optional[torch.device] = None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
) -> FitResult:
    """Train ``model`` for ``train_cfg.steps`` optimizer steps; checkpoints go to ``out_dir``.

    ``out_dir/last.safetensors`` is written every ``ckpt_every`` steps and at the end, and
    ``out_dir/final.safetensors`` when all steps are done. With ``resume`` an existing
    ``last.safetensors`` is continued from (model, optimizer, RNG, step). ``stop_after`` ends the
    run early after that many total steps (as if interrupted), keeping the schedule of the full run.
    """
    out_dir = Path(out_dir)
    device = device or resolve_device(cfg.device if cfg is not None else "auto")
    total = int(train_cfg.steps)
    model.to(device)
    groups = (
        model.param_groups(train_cfg.weight_decay)
        if hasattr(model, "param_groups")
        else default_param_groups(model, train_cfg.weight_decay)
    )
    optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(0.9, 0.99))
    start = 0
    last_path = out_dir / "last.safetensors"
    if resume and last_path.is_file():
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck.state_dict)
        if ck.optimizer_state is not None:
            optimizer.load_state_dict(ck.optimizer_state)
        if ck.rng_state is not None:
            torch.set_rng_state(ck.rng_state)
        start = ck.step
    sched = cosine_with_warmup(
        optimizer, train_cfg.warmup_steps, total, train_cfg.min_lr_ratio, last_step=start
    )
    train_model: torch.nn.Module = model
    if D.is_dist():
        # EMA/codebook buffers are synchronised by the modules themselves (all-reduced statistics)
        train_model = DDP(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
            broadcast_buffers=False,
        )
    amp_ctx, scaler = autocast_context(device, train_cfg.amp)
    logger = MetricLogger(out_dir, enabled=True)
    result = FitResult(step=start, checkpoint=None, resumed_from=start)
    end = total if stop_after is None else min(total, int(stop_after))
    bar = tqdm(
        total=total,
        initial=start,
        desc=stage,
        disable=not (progress and D.is_main()),
        dynamic_ncols=True,
        leave=False,
    )
    t0 = time.time()
    model.train()
    try:
        for step in range(start, end):
            batch = source.sample(train_cfg.batch_size, step_generator(seed, step, D.rank()))
            batch = to_device(batch, device)
            with amp_ctx:
                out = train_model(batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    "%s: non-finite loss %s at step %d" % (stage, loss.item(), step)
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            grad_norm = None
            if train_cfg.grad_clip and train_cfg.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            sched.step()
            if hasattr(model, "after_optimizer_step"):
                model.after_optimizer_step(step + 1)
            done = step + 1
            bar.update(1)
            if done % max(1, train_cfg.log_every) == 0 or done == end:
                metrics = _scalars(out)
                metrics["lr"] = optimizer.param_groups[0]["lr"]
                if grad_norm is not None:
                    metrics["grad_norm"] = float(grad_norm)
                metrics = {
                    k: float(D.all_reduce_mean(torch.tensor(v)).item()) for k, v in metrics.items()
                }
                result.history.append({"step": done, **metrics})
                logger.log(done, metrics)
                bar.set_postfix(loss="%.4f" % metrics["loss"])
            if train_cfg.ckpt_every and done % train_cfg.ckpt_every == 0 and done < end:
                if D.is_main():
                    save_checkpoint(last_path, model, cfg, stats, done, optimizer, meta)
                D.barrier()
            result.step = done
    finally:
        bar.close()
        logger.close()
    if D.is_main():
        save_checkpoint(last_path, model, cfg, stats, result.step, optimizer, meta)
        result.checkpoint = last_path
        if result.step >= total:
            final = out_dir / "final.safetensors"
            save_checkpoint(final, model, cfg, stats, result.step, None, meta, save_rng=False)
            result.checkpoint = final
    D.barrier()
    result.seconds = time.time() - t0
    model.eval()
    return result
