"""Stage 1 — Act-VAE: a transformer VQ-VAE that turns a robot action chunk into T discrete tokens.

Each arm's part of the normalised chunk [B, H, A] is encoded separately: per-step linear embedding
plus position, T learned query tokens appended, a transformer encoder, and the query outputs
projected to the code dimension D and quantised with a K x D EMA codebook. The decoder reads the T
(per arm) code vectors and H position queries and regresses the chunk back. The codebook is what the
visual latent-action model quantises onto (frozen), and what NTP's <ACT_k> tokens index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common.checkpoint import load_checkpoint
from .common.vq import EMAVectorQuantizer
from .config import ActVAEConfig

__all__ = ["ActVAE", "ActVAEConfig", "load_act_vae", "train_act_vae"]


def transformer(d_model: int, n_heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ActVAE(nn.Module):
    def __init__(self, cfg: ActVAEConfig, action_dim: int, chunk_len: int):
        super().__init__()
        if action_dim % cfg.num_arms:
            raise ValueError(
                "action_dim %d is not divisible by num_arms %d" % (action_dim, cfg.num_arms)
            )
        self.cfg, self.action_dim, self.chunk_len = cfg, action_dim, chunk_len
        self.arms, self.arm_dim, self.T = cfg.num_arms, action_dim // cfg.num_arms, cfg.num_tokens
        d = cfg.d_model
        self.in_proj = nn.Linear(self.arm_dim, d)
        self.step_pos = nn.Parameter(torch.randn(chunk_len, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(self.T, d) * 0.02)
        self.arm_emb = nn.Parameter(torch.zeros(self.arms, d))
        self.encoder = transformer(d, cfg.n_heads, cfg.enc_layers, cfg.dropout)
        self.to_code = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.code_dim))
        self.vq = EMAVectorQuantizer(
            cfg.codebook_size,
            cfg.code_dim,
            cfg.ema_decay,
            cfg.commitment,
            cfg.dead_code_threshold,
            cfg.restart_every,
        )
        self.from_code = nn.Linear(cfg.code_dim, d)
        self.code_pos = nn.Parameter(torch.randn(self.T, d) * 0.02)
        self.out_queries = nn.Parameter(torch.randn(chunk_len, d) * 0.02)
        self.decoder = transformer(d, cfg.n_heads, cfg.dec_layers, cfg.dropout)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, self.arm_dim))

    # ---- public API -------------------------------------------------------------------------
    @property
    def codebook(self) -> nn.Embedding:
        """The K x D codebook (``.weight``); frozen for every later stage."""
        return self.vq.codebook

    @property
    def tokens_per_chunk(self) -> int:
        return self.arms * self.T

    def encode_continuous(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised chunk [B, H, A] -> pre-quantisation latents [B, arms*T, D]."""
        B, H, A = actions.shape
        if H != self.chunk_len or A != self.action_dim:
            raise ValueError(
                "expected chunks [B, %d, %d], got %s"
                % (self.chunk_len, self.action_dim, tuple(actions.shape))
            )
        x = (
            actions.reshape(B, H, self.arms, self.arm_dim)
            .permute(0, 2, 1, 3)
            .reshape(B * self.arms, H, -1)
        )
        h = self.in_proj(x) + self.step_pos
        arm = self.arm_emb.repeat(B, 1)[:, None, :]
        h = torch.cat([h + arm, self.queries.expand(B * self.arms, -1, -1) + arm], dim=1)
        h = self.encoder(h)[:, H:]
        return self.to_code(h).reshape(B, self.arms * self.T, -1)

    def encode(self, actions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised chunk [B, H, A] -> (z_q [B, arms*T, D], indices [B, arms*T])."""
        z_q, idx, _ = self.vq(self.encode_continuous(actions))
        return z_q, idx

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook.weight)

    def decode_latent(self, z_q: torch.Tensor) -> torch.Tensor:
        """Code vectors [B, arms*T, D] -> normalised chunk [B, H, A]."""
        B = z_q.shape[0]
        h = self.from_code(z_q.reshape(B * self.arms, self.T, -1)) + self.code_pos
        arm = self.arm_emb.repeat(B, 1)[:, None, :]
        q = self.out_queries[None] + arm
        h = self.decoder(torch.cat([h + arm, q], dim=1))[:, self.T :]
        y = self.out(h).reshape(B, self.arms, self.chunk_len, self.arm_dim).permute(0, 2, 1, 3)
        return y.reshape(B, self.chunk_len, self.action_dim)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices [B, arms*T] -> normalised chunk [B, H, A]."""
        return self.decode_latent(self.embed_indices(indices))

    def loss(self, actions: torch.Tensor) -> Dict[str, torch.Tensor]:
        z_q, idx, st = self.vq(self.encode_continuous(actions))
        recon = F.mse_loss(self.decode_latent(z_q), actions)
        return {
            "loss": recon + st["commit"],
            "recon": recon.detach(),
            "commit": st["commit"].detach(),
            "perplexity": st["perplexity"],
            "usage": st["usage"],
        }

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return self.loss(batch["actions"])

    def after_optimizer_step(self, step: int) -> None:
        self.vq.maybe_restart(step)

    def constructor_meta(self) -> dict:
        return {"stage": "act_vae", "action_dim": self.action_dim, "chunk_len": self.chunk_len}


def load_act_vae(path, map_location: str = "cpu"):
    """Rebuild an Act-VAE from its checkpoint: (model in eval mode, Checkpoint)."""
    ck = load_checkpoint(Path(path), map_location)
    if ck.cfg is None or ck.meta.get("stage") != "act_vae":
        raise ValueError(
            "%s is not an Act-VAE checkpoint (stage=%r)" % (path, ck.meta.get("stage"))
        )
    model = ActVAE(ck.cfg.act_vae, int(ck.meta["action_dim"]), int(ck.meta["chunk_len"]))
    model.load_state_dict(ck.state_dict)
    return model.eval(), ck


def train_act_vae(
    cfg,
    episodes=None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
):
    """Train stage 1 on the training episodes' action chunks; returns (model, FitResult, stats)."""
    from .common.seed import seed_everything
    from .common.trainer import fit
    from .data import ChunkSource, Normalizer, action_chunks, load_training_data

    seed_everything(cfg.seed)
    if episodes is None:
        episodes = load_training_data(cfg).train_episodes
    chunks = action_chunks(
        episodes,
        cfg.data.chunk_len,
        action_space=cfg.data.action_space,
        stride=1,
        robot=cfg.data.robot,
    )
    norm = Normalizer.fit(chunks.reshape(-1, chunks.shape[-1]))
    stats = {
        "action": norm.to_dict(),
        "action_space": cfg.data.action_space,
        "chunk_len": cfg.data.chunk_len,
    }
    model = ActVAE(cfg.act_vae, chunks.shape[-1], cfg.data.chunk_len)
    out_dir = Path(out_dir or Path(cfg.out_dir) / "act_vae")
    res = fit(
        model,
        ChunkSource(norm.normalize(chunks)),
        cfg.act_vae,
        out_dir,
        cfg=cfg,
        stats=stats,
        meta=model.constructor_meta(),
        stage="act_vae",
        seed=cfg.seed,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
    )
    return model, res, stats
