"""Vector quantisation with an EMA codebook and dead-code restarts (shared by Act-VAE and LAPA).

The codebook is an ``nn.Embedding`` updated by exponential moving averages of assigned encoder
outputs rather than by gradients (stabler, no codebook loss). Codes whose EMA hit rate falls below a
threshold are restarted on random recent encoder outputs, which is what keeps usage and perplexity
from collapsing to a handful of codes. Under torch.distributed the EMA statistics are summed over
ranks and restarts are decided on rank 0 and broadcast, so every rank keeps the same codebook.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import dist as D


def nearest_codes(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each vector in z [..., D]."""
    flat = z.reshape(-1, z.shape[-1]).float()
    w = weight.float()
    d = flat.pow(2).sum(-1, keepdim=True) - 2.0 * flat @ w.t() + w.pow(2).sum(-1)[None]
    return d.argmin(-1).reshape(z.shape[:-1])


def quantize_frozen(
    z: torch.Tensor, weight: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise with a fixed codebook: (z_q straight-through, indices, commitment loss)."""
    idx = nearest_codes(z, weight)
    q = F.embedding(idx, weight).to(z.dtype)
    commit = F.mse_loss(z, q.detach())
    return z + (q - z).detach(), idx, commit


def perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """exp(entropy) of the code histogram: 1 = collapse, num_codes = uniform use."""
    counts = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
    p = counts / counts.sum().clamp_min(1.0)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


class EMAVectorQuantizer(nn.Module):
    def __init__(
        self,
        num_codes: int,
        dim: int,
        decay: float = 0.99,
        commitment: float = 0.25,
        dead_threshold: float = 0.03,
        restart_every: int = 20,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.commitment, self.eps = decay, commitment, eps
        self.dead_threshold, self.restart_every = dead_threshold, restart_every
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight, std=dim**-0.5)
        self.codebook.weight.requires_grad_(False)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", self.codebook.weight.detach().clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))
        self._recent: torch.Tensor | None = None  # last batch's encoder outputs, for restarts

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        # data-dependent init: codes start on real encoder outputs instead of far-away noise
        if D.is_main():
            idx = torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)
            init = flat[idx] + 0.01 * flat.std() * torch.randn_like(flat[idx])
        else:
            init = torch.empty(self.num_codes, self.dim, device=flat.device)
        D.broadcast_(init)
        self.codebook.weight.copy_(init)
        self.ema_sum.copy_(init)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    def forward(
        self, z: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """z [..., D] -> (z_q straight-through, indices [...], {commit, perplexity, usage})."""
        flat = z.reshape(-1, self.dim).float()
        if self.training and not bool(self.initialized):
            self._init_from(flat.detach())
        idx = nearest_codes(flat, self.codebook.weight)
        q = self.codebook.weight[idx]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(idx, self.num_codes).type(flat.dtype)
                counts = D.all_reduce_sum_(onehot.sum(0))
                sums = D.all_reduce_sum_(onehot.t() @ flat.detach())
                self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
                self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
                n = self.ema_count.sum()
                smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
                self.codebook.weight.copy_(self.ema_sum / smoothed[:, None])
                self._recent = flat.detach()
        commit = F.mse_loss(flat, q.detach())
        zq = flat + (q - flat).detach()
        stats = {
            "commit": commit * self.commitment,
            "perplexity": perplexity(idx.detach(), self.num_codes),
            "usage": (~self._dead()).float().mean(),
        }
        return zq.reshape(z.shape).to(z.dtype), idx.reshape(z.shape[:-1]), stats

    def _dead(self) -> torch.Tensor:
        """Codes whose EMA hit count is below dead_threshold x the mean count (a uniform share),
        so the rule means the same whatever the batch size and codebook size."""
        return self.ema_count < self.dead_threshold * self.ema_count.mean()

    @torch.no_grad()
    def maybe_restart(self, step: int) -> int:
        """Restart dead codes on random recent encoder outputs; returns how many were restarted."""
        if self._recent is None or self.restart_every <= 0 or step % self.restart_every:
            return 0
        dead = self._dead()
        D.broadcast_(dead)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        recent = self._recent
        if D.is_main():
            pick = torch.randint(0, recent.shape[0], (n_dead,), device=recent.device)
            new = recent[pick] + 0.01 * recent.std() * torch.randn(
                n_dead, self.dim, device=recent.device
            )
        else:
            new = torch.empty(n_dead, self.dim, device=recent.device)
        D.broadcast_(new)
        # a restarted code starts at twice the death line: alive now, dead again within ~70 steps
        # (decay 0.99) if nothing is assigned to it, so a short run still gets a second chance
        count = 2.0 * self.dead_threshold * self.ema_count.mean()
        self.codebook.weight[dead] = new
        self.ema_sum[dead] = new * count
        self.ema_count[dead] = count
        self.restarts.add_(n_dead)
        return n_dead
