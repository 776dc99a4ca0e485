"""Trainer utilities shared by every stage: config, seeding, schedule, checkpoints, the fit loop."""

from ..config import Config, ConfigError, StageTrainConfig, load_config, register_section
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint, to_jsonable
from .dist import (
    all_reduce_mean,
    all_reduce_sum_,
    barrier,
    init_from_env,
    is_dist,
    is_main,
    rank,
    world_size,
)
from .schedule import cosine_lr_factor, cosine_with_warmup
from .seed import seed_everything
from .trainer import (
    FitResult,
    MetricLogger,
    autocast_context,
    fit,
    resolve_device,
    step_generator,
    to_device,
)

__all__ = [
    "Config",
    "ConfigError",
    "StageTrainConfig",
    "load_config",
    "register_section",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "to_jsonable",
    "all_reduce_mean",
    "all_reduce_sum_",
    "barrier",
    "init_from_env",
    "is_dist",
    "is_main",
    "rank",
    "world_size",
    "cosine_lr_factor",
    "cosine_with_warmup",
    "seed_everything",
    "FitResult",
    "MetricLogger",
    "autocast_context",
    "fit",
    "resolve_device",
    "step_generator",
    "to_device",
]
