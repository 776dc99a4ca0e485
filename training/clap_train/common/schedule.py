"""Learning-rate schedule: linear warm-up then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def cosine_lr_factor(
    step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> float:
    """Multiplier of the base lr at ``step`` (0-based): ramps 1/warmup .. 1, then cosine to
    min_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.0,
    last_step: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR following :func:`cosine_lr_factor`, positioned at ``last_step`` for resume."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: cosine_lr_factor(s, warmup_steps, total_steps, min_ratio),
        last_epoch=last_step - 1,
    )
    if last_step > 0:
        # LambdaLR with last_epoch >= 0 does not apply the factor until the next step()
        for group, base in zip(optimizer.param_groups, sched.base_lrs):
            group["lr"] = base * cosine_lr_factor(last_step, warmup_steps, total_steps, min_ratio)
    return sched
