"""Stage 2 — visual latent-action model: CLAP (robot data) + ConLA (human videos).

A frame pair (o_t, o_{t+H}) goes through a visual backbone (a small CNN or ViT from scratch, or any
``transformers`` vision model). A transformer reads both frames' tokens plus T action queries and a
few action-irrelevant queries:

* action queries -> z_e [B, T, D], quantised with the FROZEN Act-VAE codebook, so the visual tokens
  are the same vocabulary as the robot's action tokens (and decode to executable chunks);
* irrelevant queries -> u [B, M, d_u] with an L1 penalty, a small, sparse channel for whatever else
  changed (lighting flicker, distractor motion) so it does not have to go through the action codes;
* a predictor maps (features of o_t, z_q, u) to the EMA-teacher features of o_{t+H}: prediction in
  feature space, not pixels, so appearance need not be encoded to lower the loss.

Robot data: a SigLIP sigmoid loss (learnable temperature and bias) between the visual action latent
and the Act-VAE latent of the true chunk, plus a token-wise pull onto those codes. Human videos (no
actions): an EMA-teacher view (photometric jitter) is the positive; ConLA pairs: same action
category in a different scene = positive, same scene with a different category = (hard) negative;
and the time-reversed pair must not map onto the same latent.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .act_vae import ActVAE, transformer
from .common.checkpoint import load_checkpoint
from .common.vq import quantize_frozen
from .config import VisualLAMConfig

__all__ = [
    "VisualLAM",
    "VisualLAMConfig",
    "Backbone",
    "siglip_loss",
    "load_visual_lam",
    "train_visual_lam",
]


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] (0..255) or float already in [-1, 1] -> float [-1, 1]."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


# ----------------------------------------------------------------------------------------------
# backbones: images [B,3,H,W] -> tokens [B,N,C]


class CNNBackbone(nn.Module):
    def __init__(self, width: int, patch: int, image_size: int):
        super().__init__()
        n_down = int(round(math.log2(patch)))
        if 2**n_down != patch or image_size % patch:
            raise ValueError("cnn backbone: patch must be a power of 2 dividing image_size")
        chans = [3] + [max(16, width // 2 ** (n_down - 1 - i)) for i in range(n_down)]
        layers = []
        for i in range(n_down):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1),
                nn.GroupNorm(8 if chans[i + 1] % 8 == 0 else 1, chans[i + 1]),
                nn.GELU(),
            ]
        layers += [nn.Conv2d(chans[-1], width, 3, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.randn((image_size // patch) ** 2, width) * 0.02)

    def forward(self, x):
        return self.net(x).flatten(2).transpose(1, 2) + self.pos


class ViTBackbone(nn.Module):
    def __init__(self, width: int, patch: int, image_size: int, layers: int, heads: int):
        super().__init__()
        if image_size % patch:
            raise ValueError(
                "vit backbone: patch %d does not divide image_size %d" % (patch, image_size)
            )
        self.embed = nn.Conv2d(3, width, patch, patch)
        self.pos = nn.Parameter(torch.randn((image_size // patch) ** 2, width) * 0.02)
        self.blocks = transformer(width, heads, layers, 0.0)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        return self.norm(self.blocks(self.embed(x).flatten(2).transpose(1, 2) + self.pos))


class HFBackbone(nn.Module):
    """Any transformers vision model; ``last_hidden_state`` projected to the LAM width.

    ``hf_model`` loads weights by name or local path (never downloads: local_files_only); without it
    ``hf_config`` (e.g. ``{"model_type": "dinov2", "hidden_size": 32, ...}``) builds the
    architecture
    from scratch, which is also how a checkpoint rebuilds it before loading its own weights.
    """

    def __init__(self, width: int, hf_model: Optional[str], hf_config: Optional[dict]):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if hf_config:
            conf = AutoConfig.for_model(**hf_config)
            self.model = AutoModel.from_config(conf)
        elif hf_model:
            self.model = AutoModel.from_pretrained(hf_model, local_files_only=True)
        else:
            raise ValueError("backbone hf needs visual_lam.hf_model or visual_lam.hf_config")
        conf = self.model.config
        hidden = getattr(conf, "hidden_size", None) or conf.vision_config.hidden_size
        self.proj = nn.Linear(hidden, width)

    def resolved_config(self) -> dict:
        d = self.model.config.to_dict()
        return {
            k: v
            for k, v in d.items()
            if not k.startswith("_") and k not in ("transformers_version", "architectures")
        }

    def forward(self, x):
        out = self.model(pixel_values=x)
        return self.proj(out.last_hidden_state)


class Backbone(nn.Module):
    """images [B,3,H,W] (uint8 or float in [-1,1]) -> tokens [B,N,C]."""

    def __init__(self, cfg: VisualLAMConfig, image_size: int):
        super().__init__()
        if cfg.backbone == "cnn":
            self.net = CNNBackbone(cfg.width, cfg.patch, image_size)
        elif cfg.backbone == "vit":
            self.net = ViTBackbone(cfg.width, cfg.patch, image_size, cfg.vit_layers, cfg.n_heads)
        elif cfg.backbone == "hf":
            self.net = HFBackbone(cfg.width, cfg.hf_model, cfg.hf_config)
        else:
            raise ValueError("unknown backbone %r (cnn | vit | hf)" % cfg.backbone)
        self.width = cfg.width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(as_float_images(images))


# ----------------------------------------------------------------------------------------------
# losses


def siglip_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    log_scale: torch.Tensor,
    bias: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Pairwise sigmoid loss (SigLIP). x [B,E], y [B',E] are L2-normalised inside.

    ``labels`` [B,B'] in {+1, -1, 0}: 0 pairs are ignored; default: +1 on the diagonal, -1
    elsewhere.
    """
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    logits = x @ y.t() * log_scale.exp() + bias
    if labels is None:
        labels = 2 * torch.eye(x.shape[0], y.shape[0], device=x.device) - 1
    w = (labels != 0).float() if weights is None else weights * (labels != 0).float()
    return -(F.logsigmoid(labels * logits) * w).sum() / max(1, x.shape[0])


def conla_labels(category: torch.Tensor, scene: torch.Tensor, hard_weight: float = 2.0):
    """ConLA pair labels: +1 same category & different scene, -1 different category; same-scene
    different-category pairs weigh ``hard_weight`` (the shortcut a reconstruction model takes);
    same category & same scene are ignored (they could share appearance as well as action)."""
    same_c = category[:, None] == category[None]
    same_s = scene[:, None] == scene[None]
    labels = torch.zeros(same_c.shape, device=category.device)
    labels[same_c & ~same_s] = 1.0
    labels[~same_c] = -1.0
    weights = torch.ones_like(labels)
    weights[~same_c & same_s] = hard_weight
    return labels, weights


def photometric_jitter(x: torch.Tensor, strength: float = 0.2) -> torch.Tensor:
    """Per-sample channel gains and brightness offset (same for both frames of a pair)."""
    B = x.shape[0]
    gain = 1.0 + strength * (2 * torch.rand(B, 3, 1, 1, device=x.device) - 1)
    offset = strength * (2 * torch.rand(B, 1, 1, 1, device=x.device) - 1)
    return gain, offset


# ----------------------------------------------------------------------------------------------
# model


class LAMHead(nn.Module):
    """o_t tokens, change tokens + T action queries + M irrelevant queries ->
    (z_e [B,T,D], u [B,M,d_u])."""

    def __init__(self, cfg: VisualLAMConfig, num_tokens: int, code_dim: int):
        super().__init__()
        C = cfg.width
        self.frame_emb = nn.Parameter(torch.randn(2, C) * 0.02)
        self.act_q = nn.Parameter(torch.randn(num_tokens, C) * 0.02)
        self.irr_q = nn.Parameter(torch.randn(cfg.num_irrelevant, C) * 0.02)
        self.blocks = transformer(C, cfg.n_heads, cfg.lam_layers, 0.0)
        self.to_code = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, code_dim))
        self.to_irr = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.irrelevant_dim))
        self.T, self.M = num_tokens, cfg.num_irrelevant

    def forward(self, f_t: torch.Tensor, f_tH: torch.Tensor):
        B = f_t.shape[0]
        # the second stream is the feature change: it flips sign when time is reversed, so order is
        # explicit from the start instead of resting on a small learned frame embedding
        h = torch.cat(
            [
                f_t + self.frame_emb[0],
                (f_tH - f_t) + self.frame_emb[1],
                self.act_q.expand(B, -1, -1),
                self.irr_q.expand(B, -1, -1),
            ],
            dim=1,
        )
        h = self.blocks(h)
        n = h.shape[1] - self.T - self.M
        return self.to_code(h[:, n : n + self.T]), self.to_irr(h[:, n + self.T :])


class Predictor(nn.Module):
    """(features of o_t, z_q, u) -> predicted features of o_{t+H}."""

    def __init__(self, cfg: VisualLAMConfig, code_dim: int):
        super().__init__()
        C = cfg.width
        self.from_code = nn.Linear(code_dim, C)
        self.from_irr = nn.Linear(cfg.irrelevant_dim, C)
        self.blocks = transformer(C, cfg.n_heads, max(1, cfg.predictor_layers), 0.0)
        self.out = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, C))

    def forward(self, f_t, z_q, u):
        N = f_t.shape[1]
        h = self.blocks(torch.cat([f_t, self.from_code(z_q), self.from_irr(u)], dim=1))
        return self.out(h[:, :N])


class VisualLAM(nn.Module):
    def __init__(self, cfg: VisualLAMConfig, act_vae: ActVAE, image_size: int):
        super().__init__()
        self.cfg, self.image_size = cfg, image_size
        self.act_vae = act_vae.eval()
        for p in self.act_vae.parameters():
            p.requires_grad_(False)
        self.T, self.D = act_vae.tokens_per_chunk, act_vae.codebook.weight.shape[1]
        self.backbone = Backbone(cfg, image_size)
        if cfg.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        self.head = LAMHead(cfg, self.T, self.D)
        self.predictor = Predictor(cfg, self.D)
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.siglip_init_temp)))
        self.bias = nn.Parameter(torch.tensor(float(cfg.siglip_init_bias)))
        # EMA teacher (backbone + head): stable targets for the predictor and the human-video view
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = copy.deepcopy(self.head)
        for p in list(self.teacher_backbone.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.act_vae.eval()  # frozen: its EMA codebook must never move
        self.teacher_backbone.eval()
        self.teacher_head.eval()
        return self

    @property
    def codebook(self) -> nn.Embedding:
        return self.act_vae.codebook

    # ---- public API -------------------------------------------------------------------------
    def encode_pair_continuous(self, o_t: torch.Tensor, o_tH: torch.Tensor):
        """-> (z_e [B,T,D] before quantisation, u [B,M,d_u], features of o_t [B,N,C])."""
        f = self.backbone(torch.cat([o_t, o_tH], 0))
        f_t, f_tH = f.chunk(2, 0)
        z_e, u = self.head(f_t, f_tH)
        return z_e, u, f_t

    def encode_pair(
        self, o_t: torch.Tensor, o_tH: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frame pair (uint8 [B,3,S,S] or float in [-1,1]) -> (z_q [B,T,D], indices [B,T])."""
        z_e, _, _ = self.encode_pair_continuous(o_t, o_tH)
        z_q, idx, _ = quantize_frozen(z_e, self.codebook.weight)
        return z_q, idx

    # ---- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def _teacher(self, o_t, o_tH):
        f = self.teacher_backbone(torch.cat([o_t, o_tH], 0))
        f_t, f_tH = f.chunk(2, 0)
        z_e, _ = self.teacher_head(f_t, f_tH)
        return z_e, f_tH

    def _pair_losses(self, o_t, o_tH):
        z_e, u, f_t = self.encode_pair_continuous(o_t, o_tH)
        z_q, idx, commit = quantize_frozen(z_e, self.codebook.weight)
        _, target = self._teacher(o_t, o_tH)
        pred = F.mse_loss(self.predictor(f_t, z_q, u), target)
        return z_e, z_q, idx, commit, pred, u.abs().mean()

    def _flat(self, z: torch.Tensor) -> torch.Tensor:
        # centred on the codebook mean: otherwise the shared offset of all codes dominates cosines
        return (z - self.codebook.weight.mean(0)).flatten(1)

    def _reverse_loss(self, z_e, o_t, o_tH):
        z_rev, _, _ = self.encode_pair_continuous(o_tH, o_t)
        cos = F.cosine_similarity(self._flat(z_e), self._flat(z_rev), dim=-1)
        return F.relu(cos - self.cfg.reverse_margin).mean()

    def loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        o_t, o_tH = as_float_images(batch["obs"]), as_float_images(batch["obs_next"])
        z_e, z_q, idx, commit, pred, l1 = self._pair_losses(o_t, o_tH)
        with torch.no_grad():
            a_q, a_idx = self.act_vae.encode(batch["actions"])
        sig = siglip_loss(self._flat(z_e), self._flat(a_q), self.log_scale, self.bias)
        align = F.mse_loss(z_e, a_q)
        total = (
            cfg.w_siglip * sig
            + cfg.w_align * align
            + cfg.w_commit * commit
            + cfg.w_pred * pred
            + cfg.w_l1 * l1
        )
        out = {
            "siglip": sig.detach(),
            "align": align.detach(),
            "pred": pred.detach(),
            "l1": l1.detach(),
            "token_acc": (idx == a_idx).float().mean(),
            "temperature": self.log_scale.exp().detach(),
        }
        if "h_obs" in batch:
            h_t, h_tH = as_float_images(batch["h_obs"]), as_float_images(batch["h_obs_next"])
            hz_e, _, _, h_commit, h_pred, h_l1 = self._pair_losses(h_t, h_tH)
            gain, offset = photometric_jitter(h_t)
            tz, _ = self._teacher(
                (h_t * gain + offset).clamp(-1, 1), (h_tH * gain + offset).clamp(-1, 1)
            )
            teach = siglip_loss(self._flat(hz_e), self._flat(tz), self.log_scale, self.bias)
            labels, weights = conla_labels(batch["h_category"], batch["h_scene"])
            conla = siglip_loss(
                self._flat(hz_e), self._flat(hz_e), self.log_scale, self.bias, labels, weights
            )
            rev = self._reverse_loss(hz_e, h_t, h_tH)
            total = (
                total
                + cfg.w_teacher * teach
                + cfg.w_conla * conla
                + cfg.w_reverse * rev
                + cfg.w_commit * h_commit
                + cfg.w_pred * h_pred
                + cfg.w_l1 * h_l1
            )
            out.update(
                {"teacher": teach.detach(), "conla": conla.detach(), "reverse": rev.detach()}
            )
        else:
            rev = self._reverse_loss(z_e, o_t, o_tH)
            total = total + cfg.w_reverse * rev
            out["reverse"] = rev.detach()
        out["loss"] = total
        return out

    def forward(self, batch):
        return self.loss(batch)

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        d = self.cfg.teacher_decay
        for s_mod, t_mod in (
            (self.backbone, self.teacher_backbone),
            (self.head, self.teacher_head),
        ):
            for ps, pt in zip(s_mod.parameters(), t_mod.parameters()):
                pt.mul_(d).add_(ps.detach(), alpha=1 - d)

    def constructor_meta(self) -> dict:
        meta = {
            "stage": "visual_lam",
            "image_size": self.image_size,
            "action_dim": self.act_vae.action_dim,
            "chunk_len": self.act_vae.chunk_len,
        }
        if isinstance(self.backbone.net, HFBackbone):
            meta["hf_config"] = self.backbone.net.resolved_config()
        return meta


def load_visual_lam(path, map_location: str = "cpu"):
    """Rebuild a VisualLAM (with its frozen Act-VAE) from its checkpoint: (model in eval,
    Checkpoint)."""
    ck = load_checkpoint(Path(path), map_location)
    if ck.cfg is None or ck.meta.get("stage") != "visual_lam":
        raise ValueError(
            "%s is not a visual_lam checkpoint (stage=%r)" % (path, ck.meta.get("stage"))
        )
    vcfg = copy.deepcopy(ck.cfg.visual_lam)
    if vcfg.backbone == "hf":
        # rebuild the architecture from the stored config; the weights come from the checkpoint
        vcfg.hf_config, vcfg.hf_model = ck.meta["hf_config"], None
    act = ActVAE(ck.cfg.act_vae, int(ck.meta["action_dim"]), int(ck.meta["chunk_len"]))
    model = VisualLAM(vcfg, act, int(ck.meta["image_size"]))
    model.load_state_dict(ck.state_dict)
    return model.eval(), ck


def train_visual_lam(
    cfg,
    act_vae: Optional[ActVAE] = None,
    act_stats: Optional[dict] = None,
    train_episodes=None,
    human_clips=None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
):
    """Train stage 2; the Act-VAE (and its action normalisation) comes from stage 1's checkpoint."""
    from .act_vae import load_act_vae
    from .common.seed import seed_everything
    from .common.trainer import fit
    from .data import (
        HumanPairSource,
        MixedSource,
        Normalizer,
        RobotPairSource,
        build_human_windows,
        build_robot_windows,
        load_training_data,
    )

    seed_everything(cfg.seed)
    if act_vae is None:
        path = (
            cfg.visual_lam.act_vae_checkpoint or Path(cfg.out_dir) / "act_vae" / "final.safetensors"
        )
        act_vae, ck = load_act_vae(path)
        act_stats = ck.stats
    if train_episodes is None:
        data = load_training_data(cfg)
        train_episodes, human_clips = data.train_episodes, data.human_clips
    d = cfg.data
    rw = build_robot_windows(
        train_episodes, d.chunk_len, d.image_size, d.image_key, d.stride, d.action_space, d.robot
    )
    norm = Normalizer.from_dict(act_stats["action"])
    human = None
    if human_clips:
        human = HumanPairSource(
            build_human_windows(human_clips, d.chunk_len, d.image_size, d.stride)
        )
    source = MixedSource(RobotPairSource(rw, norm), human, cfg.visual_lam.human_batch_size)
    model = VisualLAM(cfg.visual_lam, act_vae, d.image_size)
    out_dir = Path(out_dir or Path(cfg.out_dir) / "visual_lam")
    res = fit(
        model,
        source,
        cfg.visual_lam,
        out_dir,
        cfg=cfg,
        stats=act_stats,
        meta=model.constructor_meta(),
        stage="visual_lam",
        seed=cfg.seed,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
    )
    return model, res
