"""Stage 6 — LAPA-style baseline: a latent action quantiser trained by pixel reconstruction.

Both frames go through a small CNN; a transformer reads their tokens and a few query tokens, which
are quantised with a tiny EMA codebook (8 codes x 4 tokens by default); a decoder predicts the
*pixels* of o_{t+H} from o_t's tokens and the codes. Reconstruction rewards encoding whatever
changed in the image, appearance included, which is the shortcut the contrastive model avoids; it is
trained on the same robot frames and human clips, with the same ``encode_pair`` API, so the probes
can compare the two like for like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .act_vae import transformer
from .common.checkpoint import load_checkpoint
from .common.vq import EMAVectorQuantizer
from .config import LAPAConfig, VisualLAMConfig
from .visual_lam import Backbone, as_float_images

__all__ = ["LAPA", "LAPAConfig", "load_lapa", "train_lapa"]


class LAPA(nn.Module):
    def __init__(self, cfg: LAPAConfig, image_size: int):
        super().__init__()
        self.cfg, self.image_size = cfg, image_size
        C, self.T = cfg.width, cfg.num_tokens
        self.backbone = Backbone(
            VisualLAMConfig(backbone="cnn", width=C, patch=cfg.patch, n_heads=cfg.n_heads),
            image_size,
        )
        self.frame_emb = nn.Parameter(torch.randn(2, C) * 0.02)
        self.queries = nn.Parameter(torch.randn(self.T, C) * 0.02)
        self.enc = transformer(C, cfg.n_heads, cfg.lam_layers, 0.0)
        self.to_code = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.code_dim))
        self.vq = EMAVectorQuantizer(
            cfg.codebook_size,
            cfg.code_dim,
            cfg.ema_decay,
            cfg.commitment,
            cfg.dead_code_threshold,
            cfg.restart_every,
        )
        self.from_code = nn.Linear(cfg.code_dim, C)
        self.dec = transformer(C, cfg.n_heads, cfg.lam_layers, 0.0)
        self.to_pix = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.patch * cfg.patch * 3))

    @property
    def codebook(self) -> nn.Embedding:
        return self.vq.codebook

    def _encode(self, o_t, o_tH):
        f = self.backbone(torch.cat([o_t, o_tH], 0))
        f_t, f_tH = f.chunk(2, 0)
        B = f_t.shape[0]
        h = torch.cat(
            [f_t + self.frame_emb[0], f_tH + self.frame_emb[1], self.queries.expand(B, -1, -1)], 1
        )
        return self.to_code(self.enc(h)[:, -self.T :]), f_t

    def encode_pair_continuous(self, o_t: torch.Tensor, o_tH: torch.Tensor) -> torch.Tensor:
        z_e, _ = self._encode(as_float_images(o_t), as_float_images(o_tH))
        return z_e

    def encode_pair(
        self, o_t: torch.Tensor, o_tH: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frame pair -> (z_q [B,T,D], indices [B,T])."""
        z_q, idx, _ = self.vq(self.encode_pair_continuous(o_t, o_tH))
        return z_q, idx

    def reconstruct(self, o_t: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        """Predicted o_{t+H} in [-1, 1], [B,3,S,S]."""
        f_t = self.backbone(as_float_images(o_t))
        B, N, _ = f_t.shape
        h = self.dec(torch.cat([f_t, self.from_code(z_q)], 1))[:, :N]
        p, g = self.cfg.patch, self.image_size // self.cfg.patch
        pix = self.to_pix(h).reshape(B, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return pix.reshape(B, 3, self.image_size, self.image_size)

    def loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        o_t, o_tH = as_float_images(batch["obs"]), as_float_images(batch["obs_next"])
        if "h_obs" in batch:  # same data as the contrastive model: robot and human pairs
            o_t = torch.cat([o_t, as_float_images(batch["h_obs"])])
            o_tH = torch.cat([o_tH, as_float_images(batch["h_obs_next"])])
        z_e, _ = self._encode(o_t, o_tH)
        z_q, idx, st = self.vq(z_e)
        recon = F.mse_loss(self.reconstruct(o_t, z_q), o_tH)
        return {
            "loss": recon + st["commit"],
            "recon": recon.detach(),
            "commit": st["commit"].detach(),
            "perplexity": st["perplexity"],
            "usage": st["usage"],
        }

    def forward(self, batch):
        return self.loss(batch)

    def after_optimizer_step(self, step: int) -> None:
        self.vq.maybe_restart(step)

    def constructor_meta(self) -> dict:
        return {"stage": "lapa", "image_size": self.image_size}


def load_lapa(path, map_location: str = "cpu"):
    ck = load_checkpoint(Path(path), map_location)
    if ck.cfg is None or ck.meta.get("stage") != "lapa":
        raise ValueError("%s is not a LAPA checkpoint (stage=%r)" % (path, ck.meta.get("stage")))
    model = LAPA(ck.cfg.lapa, int(ck.meta["image_size"]))
    model.load_state_dict(ck.state_dict)
    return model.eval(), ck


def train_lapa(
    cfg,
    train_episodes=None,
    human_clips=None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
):
    from .common.seed import seed_everything
    from .common.trainer import fit
    from .data import (
        HumanPairSource,
        MixedSource,
        RobotPairSource,
        build_human_windows,
        build_robot_windows,
        load_training_data,
    )

    seed_everything(cfg.seed)
    if train_episodes is None:
        data = load_training_data(cfg)
        train_episodes, human_clips = data.train_episodes, data.human_clips
    d = cfg.data
    rw = build_robot_windows(
        train_episodes, d.chunk_len, d.image_size, d.image_key, d.stride, d.action_space, d.robot
    )
    human = (
        HumanPairSource(build_human_windows(human_clips, d.chunk_len, d.image_size, d.stride))
        if human_clips
        else None
    )
    source = MixedSource(RobotPairSource(rw), human, cfg.visual_lam.human_batch_size)
    model = LAPA(cfg.lapa, d.image_size)
    out_dir = Path(out_dir or Path(cfg.out_dir) / "lapa")
    res = fit(
        model,
        source,
        cfg.lapa,
        out_dir,
        cfg=cfg,
        stats={},
        meta=model.constructor_meta(),
        stage="lapa",
        seed=cfg.seed,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
    )
    return model, res
