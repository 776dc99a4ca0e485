"""CLAP-RF: a DiT-style rectified-flow action head, plus Knowledge Matching (KM).

Flow convention (the CLAP paper's): ``x_t = (1 - t) * eps + t * a`` with ``eps ~ N(0, I)``, so
``t = 0`` is pure noise and ``t = 1`` the action chunk; the network predicts the velocity
``a - eps``. Training draws ``t = 0.999 * (1 - Beta(1.5, 1))``, which puts most samples near the
noisy end where the velocity is hardest to guess. Sampling integrates ``dx/dt = v`` from noise with
N Euler steps (default 4).

The head cross-attends to the observation latent tokens (the encoder's output, shared with NTP) and
to the planned codebook embeddings (the frozen Act-VAE codebook rows of the NTP's tokens), with the
flow time and the proprioceptive state as adaLN-Zero conditioning. It does not read the
instruction: at run time the action node gets latent + plan + joint states only (DESIGN.md
section 2) and the plan already carries the instruction.

When the NTP backbone is fine-tuned together with the head (``freeze_backbone: false``), the RF loss
moves the shared encoder and therefore the NTP's token distribution; KM adds
``km_weight * KL(p_ref || p_theta)`` on the action-token logits against a frozen copy of the NTP
taken before fine-tuning. ``freeze_backbone: true`` is knowledge insulation: the head learns on
detached features and the NTP does not change at all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from clap_ros.inference.preprocess import to_unit

from .config import StageTrainConfig, register_section
from .ntp import ClapNTP, frozen_copy


@register_section("rf")
@dataclass
class RFConfig(StageTrainConfig):
    """CLAP-RF + Knowledge Matching (stage 5)."""

    d_model: int = 128
    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_steps: int = 4  # Euler steps at inference (unrolled in rf_policy.onnx)
    t_scale: float = 0.999
    beta_a: float = 1.5
    beta_b: float = 1.0
    freeze_backbone: bool = False  # knowledge insulation: RF gradients never reach the NTP
    km_weight: float = 0.005  # Knowledge Matching weight; 0 turns KM off
    ntp_checkpoint: Optional[str] = None  # default: <out_dir>/ntp/final.safetensors
    augment_shift: int = 0  # random image shift of +-N px per training sample (augment.py)


# ----------------------------------------------------------------------------------------------
# building blocks


class Attention(nn.Module):
    """Multi-head attention written out (no fused kernels), so ONNX export is exact and simple."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model {dim} is not divisible by num_heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: Optional[torch.Tensor] = None) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        q = self.q(x).view(b, n, h, dh).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * (dh**-0.5), dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Self-attention over the chunk, cross-attention to the context, MLP; each branch
    adaLN-modulated by the conditioning vector and gated (zero-initialised gates)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = Attention(dim, heads)
        self.ctx_norm = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x, ctx, c):
        s1, sc1, g1, s2, sc2, g2, s3, sc3, g3 = self.ada(c).chunk(9, dim=-1)
        x = x + g1.unsqueeze(1) * self.self_attn(modulate(self.norm1(x), s1, sc1))
        x = x + g2.unsqueeze(1) * self.cross_attn(
            modulate(self.norm2(x), s2, sc2), self.ctx_norm(ctx)
        )
        x = x + g3.unsqueeze(1) * self.mlp(modulate(self.norm3(x), s3, sc3))
        return x


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000 so low frequencies still vary)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = (t.float() * 1000.0).unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class RFHead(nn.Module):
    """Velocity field v(x_t, t | obs tokens, plan embeddings, state) over a chunk ``[B,H,A]``."""

    def __init__(
        self,
        cfg: RFConfig,
        *,
        action_dim: int,
        chunk_len: int,
        obs_width: int,
        code_dim: int,
        num_plan_tokens: int,
        state_dim: int,
    ):
        super().__init__()
        d = cfg.d_model
        self.d_model = d
        self.action_dim = int(action_dim)
        self.chunk_len = int(chunk_len)
        self.in_proj = nn.Linear(action_dim, d)
        self.pos = nn.Parameter(torch.randn(1, chunk_len, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.state_mlp = nn.Sequential(nn.Linear(state_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.obs_proj = nn.Linear(obs_width, d)
        self.plan_proj = nn.Linear(code_dim, d)
        self.plan_pos = nn.Parameter(torch.randn(1, num_plan_tokens, d) * 0.02)
        self.ctx_type = nn.Parameter(torch.randn(3, d) * 0.02)  # obs / plan / state
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, action_dim)
        for lin in (self.final_ada[1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x_t, t, latent, plan_emb, state_norm):
        state_tok = self.state_mlp(state_norm)
        c = self.time_mlp(timestep_embedding(t, self.d_model)) + state_tok
        ctx = torch.cat(
            [
                self.obs_proj(latent) + self.ctx_type[0],
                self.plan_proj(plan_emb) + self.plan_pos + self.ctx_type[1],
                state_tok.unsqueeze(1) + self.ctx_type[2],
            ],
            dim=1,
        )
        x = self.in_proj(x_t) + self.pos
        for blk in self.blocks:
            x = blk(x, ctx, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(x), shift, scale))


# ----------------------------------------------------------------------------------------------
# flow-matching pieces


def sample_flow_time(n: int, cfg: RFConfig, device=None, generator=None) -> torch.Tensor:
    """t = t_scale * (1 - Beta(beta_a, beta_b)): mostly small t, i.e. close to the noise."""
    if generator is None:
        beta = torch.distributions.Beta(torch.tensor(cfg.beta_a), torch.tensor(cfg.beta_b))
        u = beta.sample((n,))
    else:  # Beta via two Gammas is not generator-aware; use the inverse CDF for beta_b == 1
        if cfg.beta_b != 1.0:
            raise ValueError("a seeded generator needs beta_b == 1")
        u = torch.rand(n, generator=generator) ** (1.0 / cfg.beta_a)
    return (cfg.t_scale * (1.0 - u)).to(device)


def knowledge_matching_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) over the action-token vocabulary, summed over tokens of a chunk
    position and averaged over batch and positions."""
    log_p_ref = F.log_softmax(ref_logits.float(), dim=-1)
    log_p = F.log_softmax(logits.float(), dim=-1)
    return (log_p_ref.exp() * (log_p_ref - log_p)).sum(-1).mean()


class ClapPolicy(nn.Module):
    """NTP (observation encoder + planner) + RF head + the frozen Act-VAE codebook.

    Actions inside are normalised chunks (the Act-VAE's space); ``sample`` de-normalises with
    ``action_mean``/``action_std`` so exported graphs output action-space units."""

    def __init__(
        self,
        cfg: RFConfig,
        ntp: ClapNTP,
        codebook: torch.Tensor,
        *,
        action_dim: int,
        chunk_len: int,
    ):
        super().__init__()
        self.cfg = cfg
        self.ntp = ntp
        self.register_buffer("codebook", codebook.detach().clone().float())
        self.head = RFHead(
            cfg,
            action_dim=action_dim,
            chunk_len=chunk_len,
            obs_width=ntp.encoder.width,
            code_dim=codebook.shape[1],
            num_plan_tokens=ntp.num_tokens,
            state_dim=ntp.state_dim,
        )
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))
        # The KM reference is kept out of the module tree: it is not trained, not saved and not
        # wrapped by DDP.
        self.__dict__["_ref"] = None
        self._configure_trainable()

    # -- setup --------------------------------------------------------------------------------
    @property
    def km_active(self) -> bool:
        return (not self.cfg.freeze_backbone) and self.cfg.km_weight > 0

    def _configure_trainable(self) -> None:
        """Which NTP weights the RF stage may change: none (knowledge insulation), the shared
        encoder only (fine-tune without KM, since nothing else gets a gradient), or all of it
        (fine-tune with KM, whose KL reaches the LM)."""
        for p in self.ntp.parameters():
            p.requires_grad_(False)
        if not self.cfg.freeze_backbone:
            for p in self.ntp.parameters() if self.km_active else self.ntp.encoder.parameters():
                p.requires_grad_(True)
        if self.km_active:
            self.__dict__["_ref"] = frozen_copy(self.ntp)

    @property
    def reference(self) -> Optional[ClapNTP]:
        return self.__dict__["_ref"]

    def refresh_reference(self) -> None:
        """Re-take the frozen reference from the current NTP (e.g. after loading a checkpoint of
        the NTP stage into ``self.ntp``)."""
        if self.km_active:
            self.__dict__["_ref"] = frozen_copy(self.ntp)

    def _apply(self, fn, *args, **kwargs):
        # keep the reference on the same device/dtype as the model
        out = super()._apply(fn, *args, **kwargs)
        if self.__dict__.get("_ref") is not None:
            self.__dict__["_ref"]._apply(fn, *args, **kwargs)
        return out

    def set_action_stats(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        self.action_mean.copy_(mean)
        self.action_std.copy_(std.clamp_min(1e-6))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    # -- pieces -------------------------------------------------------------------------------
    def plan_embed(self, indices: torch.Tensor) -> torch.Tensor:
        return self.codebook[indices]

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (state - self.ntp.state_mean) / self.ntp.state_std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.cfg.freeze_backbone:
            with torch.no_grad():
                return self.ntp.encoder(images).detach()
        return self.ntp.encoder(images)

    # -- training -----------------------------------------------------------------------------
    def loss(
        self,
        images,
        instr_ids,
        instr_mask,
        state,
        actions,
        codes,
        generator: Optional[torch.Generator] = None,
    ) -> Dict[str, torch.Tensor]:
        """``actions``: normalised chunk ``[B,H,A]``; ``codes``: its Act-VAE indices ``[B,T]``;
        ``state``: raw proprioception ``[B,S]``."""
        b = actions.shape[0]
        latent = self.encode(images)
        t = sample_flow_time(b, self.cfg, actions.device, generator)
        if generator is None:
            eps = torch.randn_like(actions)
        else:
            eps = torch.randn(actions.shape, generator=generator).to(actions.device)
        tt = t.view(b, 1, 1)
        x_t = (1 - tt) * eps + tt * actions
        v = self.head(x_t, t, latent, self.plan_embed(codes), self.normalize_state(state))
        l_action = F.mse_loss(v, actions - eps)
        out = {"action_loss": l_action.detach()}
        total = l_action
        if self.km_active:
            logits = self.ntp(latent, instr_ids, instr_mask, codes, state)
            with torch.no_grad():
                ref = self.reference
                ref_logits = ref(ref.encoder(images), instr_ids, instr_mask, codes, state)
            kl = knowledge_matching_kl(ref_logits, logits)
            total = total + self.cfg.km_weight * kl
            out["km_kl"] = kl.detach()
        out["loss"] = total
        return out

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Training step for :func:`clap_train.common.fit` (uint8 images in the batch)."""
        return self.loss(
            to_unit(batch["image"]),
            batch["instr_ids"],
            batch["instr_mask"],
            batch["state"],
            batch["actions"],
            batch["codes"],
        )

    # -- inference ----------------------------------------------------------------------------
    def sample(self, latent, plan_indices, state, noise, num_steps: Optional[int] = None):
        """Euler integration from ``noise`` ``[B,H,A]``; returns de-normalised actions."""
        n = int(num_steps or self.cfg.num_steps)
        plan = self.plan_embed(plan_indices)
        s = self.normalize_state(state)
        x = noise
        dt = 1.0 / n
        for i in range(n):
            t = torch.full((x.shape[0],), i * dt, dtype=x.dtype, device=x.device)
            x = x + dt * self.head(x, t, latent, plan, s)
        return x * self.action_std + self.action_mean

    def meta(self) -> Dict[str, int]:
        return {
            "action_dim": self.head.action_dim,
            "chunk_len": self.head.chunk_len,
            "ntp": self.ntp.meta(),
        }


# ----------------------------------------------------------------------------------------------
# evaluation, loading, training


@torch.no_grad()
def evaluate_policy(
    policy: ClapPolicy,
    act_vae,
    windows,
    tokenizer,
    action_norm,
    batch_size: int = 256,
    seed: int = 0,
) -> Dict[str, float]:
    """Held-out action error in action-space units.

    ``rf_*``: RF chunk sampled from the NTP's own greedy plan (the runtime path);
    ``rf_true_plan_*``: RF with the Act-VAE tokens of the true chunk as plan;
    ``ntp_decoded_*``: the plan decoded by the Act-VAE decoder (CLAP-NTP alone);
    ``mean_chunk_mse``: predicting the data-mean chunk, the no-skill reference."""
    from .ntp import evaluate_ntp

    policy.eval()
    ntp = policy.ntp
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode_batch(windows.instructions))
    gen = torch.Generator().manual_seed(seed)
    acc = {"rf_mse": 0.0, "rf_mae": 0.0, "rf_true_plan_mse": 0.0, "mean_chunk_mse": 0.0}
    n = 0
    for i in range(0, len(windows), batch_size):
        sl = slice(i, i + batch_size)
        truth = windows.chunks[sl]
        latent = ntp.encoder(to_unit(windows.frames[windows.i_t[sl]]))
        plan, _ = ntp.decode_greedy(latent, ids[sl], mask[sl], windows.state[sl])
        noise = torch.randn(truth.shape, generator=gen)
        pred = policy.sample(latent, plan, windows.state[sl], noise)
        pred_true = policy.sample(latent, windows.codes[sl], windows.state[sl], noise)
        acc["rf_mse"] += float((pred - truth).pow(2).sum())
        acc["rf_mae"] += float((pred - truth).abs().sum())
        acc["rf_true_plan_mse"] += float((pred_true - truth).pow(2).sum())
        acc["mean_chunk_mse"] += float((policy.action_mean - truth).pow(2).sum())
        n += truth.numel()
    out = {k: v / max(1, n) for k, v in acc.items()}
    out.update(evaluate_ntp(ntp, act_vae, windows, tokenizer, action_norm, batch_size))
    return out


def load_policy(path, map_location: str = "cpu"):
    """(ClapPolicy in eval mode, Checkpoint) from an RF-stage checkpoint."""
    from .common.checkpoint import load_checkpoint

    ck = load_checkpoint(path, map_location)
    if ck.cfg is None or ck.meta.get("stage") != "rf":
        raise ValueError(f"{path} is not an RF-stage checkpoint (stage={ck.meta.get('stage')!r})")
    m = ck.meta["model"]
    n = m["ntp"]
    ntp = ClapNTP(
        ck.cfg.ntp,
        image_size=n["image_size"],
        codebook_size=n["codebook_size"],
        num_tokens=n["num_tokens"],
        state_dim=n["state_dim"],
        vocab_size=n["vocab_size"],
    )
    # the KM reference only matters while training: do not build one for inference
    rf_cfg = dataclasses.replace(ck.cfg.rf, km_weight=0.0)
    policy = ClapPolicy(
        rf_cfg,
        ntp,
        torch.zeros(n["codebook_size"], m["code_dim"]),
        action_dim=m["action_dim"],
        chunk_len=m["chunk_len"],
    )
    policy.load_state_dict(ck.state_dict)
    return policy.eval(), ck


def train_rf(
    cfg,
    data=None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
    ntp_checkpoint: Optional[str] = None,
):
    """Stage 5: train the RF head on robot chunks, starting from the NTP checkpoint, with
    Knowledge Matching (``rf.km_weight``) or a frozen backbone (``rf.freeze_backbone``).

    Returns (policy, FitResult, metrics)."""
    from pathlib import Path

    from clap_ros.inference.tokenizer import InstructionTokenizer

    from .common.checkpoint import save_checkpoint
    from .common.dist import barrier, is_main
    from .common.seed import seed_everything
    from .common.trainer import fit
    from .data import load_training_data
    from .ntp import PolicySource, load_ntp, per_task_metrics, prepare_policy_data, write_metrics

    seed_everything(cfg.seed)
    data = data if data is not None else load_training_data(cfg)
    ntp_path = str(
        ntp_checkpoint or cfg.rf.ntp_checkpoint or Path(cfg.out_dir) / "ntp" / "final.safetensors"
    )
    ntp, ntp_ck = load_ntp(ntp_path)
    tokenizer = InstructionTokenizer.from_dict(ntp_ck.meta["tokenizer"])
    prep = prepare_policy_data(cfg, data, ntp_ck.meta.get("act_vae_checkpoint"), tokenizer)
    av = prep["act_vae"]
    train = prep["train"]
    policy = ClapPolicy(
        cfg.rf,
        ntp,
        av.codebook.weight,
        action_dim=train.chunks.shape[-1],
        chunk_len=train.chunks.shape[1],
    )
    stats = dict(ntp_ck.stats)  # the NTP's state normalisation is baked into its weights' inputs
    policy.set_action_stats(stats["action_mean"], stats["action_std"])
    from .augment import ShiftedSource

    source = ShiftedSource(
        PolicySource(train, tokenizer, prep["action_norm"]), cfg.rf.augment_shift
    )
    out_dir = Path(out_dir or Path(cfg.out_dir) / "rf")
    meta = {
        "stage": "rf",
        "model": {**policy.meta(), "code_dim": int(av.codebook.weight.shape[1])},
        "tokenizer": tokenizer.to_dict(),
        "act_vae_checkpoint": prep["act_vae_checkpoint"],
        "ntp_checkpoint": ntp_path,
        "data": {
            "robot_dataset": cfg.data.robot_dataset,
            "human_videos": cfg.data.human_videos,
            "train_windows": len(train),
            "heldout_windows": 0 if prep["heldout"] is None else len(prep["heldout"]),
        },
    }
    res = fit(
        policy,
        source,
        cfg.rf,
        out_dir,
        cfg=cfg,
        stats=stats,
        meta=meta,
        stage="rf",
        seed=cfg.seed,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
    )
    metrics: Dict[str, float] = {}
    policy = policy.cpu()
    if prep["heldout"] is not None and res.step >= cfg.rf.steps:

        def evaluate(w):
            return evaluate_policy(policy, av, w, tokenizer, prep["action_norm"], seed=cfg.seed)

        metrics = evaluate(prep["heldout"])
        metrics.update(per_task_metrics(evaluate, prep["heldout"], data.heldout_episodes))
        write_metrics(out_dir, metrics)
        if is_main():  # the metrics travel with the final checkpoint into the bundle manifest
            save_checkpoint(
                out_dir / "final.safetensors",
                policy,
                cfg,
                stats,
                res.step,
                None,
                {**meta, "metrics": metrics},
                save_rng=False,
            )
        barrier()
    return policy, res, metrics
