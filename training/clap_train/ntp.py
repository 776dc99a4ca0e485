"""CLAP-NTP: a causal transformer (built with ``transformers``) that plans action-codebook tokens.

Sequence fed to the language model (as ``inputs_embeds``)::

    [obs_1 .. obs_N] [word_1 .. word_L] [state] [<BOS_ACT>] [<ACT_a0> .. <ACT_a(T-2)>]
     image tokens     instruction ids   proprio   start      teacher-forced codes
     via projector    (padding masked)  (optional)

and the hidden state at ``<BOS_ACT>`` and after each code predicts the next code; only the K
``<ACT_k>`` rows of the output embedding are scored, so decoding is constrained to actions.

The LM is either a tiny from-scratch ``LlamaConfig``/``GPT2Config`` (offline default) or any causal
LM by name/path through ``AutoModelForCausalLM.from_pretrained`` when its weights are present; in
both cases the K action tokens plus ``<BOS_ACT>`` are appended to its vocabulary. Instruction words
come from the word-level :class:`clap_ros.inference.tokenizer.InstructionTokenizer` (shared with the
runtime), embedded by a table of their own, so a pretrained LM's tokenizer is never needed on the
robot.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clap_ros.inference.preprocess import ENCODER_MEAN, ENCODER_STD, to_unit

from .config import StageTrainConfig, register_section


@register_section("ntp")
@dataclass
class NTPConfig(StageTrainConfig):
    """CLAP-NTP (stage 4)."""

    lm: str = "tiny-llama"  # tiny-llama | tiny-gpt2 (from scratch) | name/path of a causal LM
    lm_overrides: Dict[str, Any] = field(default_factory=dict)  # extra from-scratch config kwargs
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    obs_width: int = 64  # C: width of the encoder's latent tokens (the /clap/latent image width)
    obs_stride: int = 16  # total CNN stride: N = (image_size / obs_stride)^2 latent tokens
    max_instruction_len: int = 16
    use_proprio: bool = True
    human_mix: float = 0.3  # fraction of each batch drawn from human pseudo-labelled clips
    augment_shift: int = 0  # random image shift of +-N px per training sample (augment.py)
    dropout: float = 0.0
    act_vae_checkpoint: Optional[str] = None  # default: <out_dir>/act_vae/final.safetensors


# ----------------------------------------------------------------------------------------------
# Observation encoder: image -> latent tokens (exported as encoder.onnx)


class ObsEncoder(nn.Module):
    """Small strided CNN: float RGB in [0, 1] ``[B,3,H,W]`` -> latent tokens ``[B,N,C]``.

    ImageNet-style mean/std normalisation happens inside, so the runtime only resizes and scales
    to [0, 1] (recorded in the bundle manifest)."""

    MEAN = ENCODER_MEAN
    STD = ENCODER_STD

    def __init__(self, image_size: int, width: int = 64, stride: int = 16):
        super().__init__()
        n_down = int(round(math.log2(stride)))
        if 2**n_down != stride or n_down < 1:
            raise ValueError(f"obs_stride must be a power of two >= 2, got {stride}")
        if image_size % stride:
            raise ValueError(f"image_size {image_size} is not divisible by obs_stride {stride}")
        self.image_size = image_size
        self.grid = image_size // stride
        self.num_tokens = self.grid * self.grid
        self.width = width
        layers = []
        ch_in = 3
        for i in range(n_down):
            ch_out = width if i == n_down - 1 else max(16, width // 2 ** (n_down - 1 - i))
            layers += [
                nn.Conv2d(ch_in, ch_out, 4, stride=2, padding=1),
                nn.GroupNorm(min(8, ch_out), ch_out),
                nn.GELU(),
            ]
            ch_in = ch_out
        self.net = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.randn(1, self.num_tokens, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.net((image - self.mean) / self.std)  # [B, C, g, g]
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]
        return self.norm(x + self.pos)


# ----------------------------------------------------------------------------------------------
# Language model construction


def build_causal_lm(cfg: NTPConfig, extra_tokens: int, max_positions: int):
    """(lm, action_token_offset): a transformers causal LM with ``extra_tokens`` new vocabulary
    rows appended (the K ``<ACT_k>`` plus ``<BOS_ACT>``) starting at ``action_token_offset``."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    # the new vocabulary has only <ACT_k> and <BOS_ACT>: no text special tokens
    common = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    common.update(cfg.lm_overrides)
    if cfg.lm == "tiny-llama":
        lm_cfg = LlamaConfig(
            vocab_size=extra_tokens,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            max_position_embeddings=max_positions,
            attention_dropout=cfg.dropout,
            tie_word_embeddings=False,
            **common,
        )
    elif cfg.lm == "tiny-gpt2":
        lm_cfg = GPT2Config(
            vocab_size=extra_tokens,
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_layers,
            n_head=cfg.num_heads,
            n_inner=cfg.intermediate_size,
            n_positions=max_positions,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            tie_word_embeddings=False,
            **common,
        )
    else:
        # A pretrained LM by name or local path; eager attention keeps the graph ONNX-traceable.
        lm = AutoModelForCausalLM.from_pretrained(cfg.lm, attn_implementation="eager")
        offset = lm.get_input_embeddings().num_embeddings
        lm.resize_token_embeddings(offset + extra_tokens)
        return lm, offset
    lm = AutoModelForCausalLM.from_config(lm_cfg, attn_implementation="eager")
    return lm, 0


# ----------------------------------------------------------------------------------------------
# The model


class ClapNTP(nn.Module):
    """Observation encoder + projector + causal LM emitting ``<ACT_k>`` tokens."""

    def __init__(
        self,
        cfg: NTPConfig,
        *,
        image_size: int,
        codebook_size: int,
        num_tokens: int,
        state_dim: int,
        vocab_size: int,
    ):
        super().__init__()
        self.cfg = cfg
        self.codebook_size = int(codebook_size)
        self.num_tokens = int(num_tokens)
        self.state_dim = int(state_dim)
        self.vocab_size = int(vocab_size)
        self.max_instruction_len = int(cfg.max_instruction_len)
        self.use_proprio = bool(cfg.use_proprio)
        self.encoder = ObsEncoder(image_size, cfg.obs_width, cfg.obs_stride)
        self.num_obs_tokens = self.encoder.num_tokens
        self.prefix_len = self.num_obs_tokens + self.max_instruction_len + int(self.use_proprio)
        seq_len = self.prefix_len + self.num_tokens
        self.lm, self.act_offset = build_causal_lm(cfg, self.codebook_size + 1, seq_len + 8)
        d = self.lm.get_input_embeddings().embedding_dim
        self.hidden_size = d
        self.projector = nn.Sequential(nn.Linear(cfg.obs_width, d), nn.GELU(), nn.Linear(d, d))
        self.word_embed = nn.Embedding(self.vocab_size, d)
        if self.use_proprio:
            self.state_proj = nn.Sequential(
                nn.Linear(self.state_dim, d), nn.GELU(), nn.Linear(d, d)
            )
            # human clips have no proprioception: they get this learned token instead
            self.no_state = nn.Parameter(torch.zeros(1, 1, d))
        # normalisation of the raw state, set from dataset stats (part of the exported graph)
        self.register_buffer("state_mean", torch.zeros(self.state_dim))
        self.register_buffer("state_std", torch.ones(self.state_dim))

    # -- pieces -------------------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        return self.act_offset + self.codebook_size

    def set_state_stats(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.state_dim or std.numel() != self.state_dim:
            raise ValueError(
                f"state stats have {mean.numel()} dims, model expects {self.state_dim}"
            )
        self.state_mean.copy_(mean)
        self.state_std.copy_(std.clamp_min(1e-6))

    def _token_embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of the K ``<ACT_k>`` tokens only (constrained output)."""
        head = self.lm.get_output_embeddings()
        w = head.weight[self.act_offset : self.act_offset + self.codebook_size]
        b = (
            None
            if getattr(head, "bias", None) is None
            else head.bias[self.act_offset : self.act_offset + self.codebook_size]
        )
        return F.linear(hidden, w, b)

    def embed_prefix(
        self,
        latent: torch.Tensor,
        instr_ids: torch.Tensor,
        instr_mask: torch.Tensor,
        state: Optional[torch.Tensor] = None,
        has_state: Optional[torch.Tensor] = None,
    ):
        """(embeddings [B,P,d], attention mask [B,P]) for obs tokens + instruction + state."""
        b = latent.shape[0]
        parts = [self.projector(latent), self.word_embed(instr_ids)]
        mask = [
            torch.ones(b, self.num_obs_tokens, dtype=torch.long, device=latent.device),
            instr_mask.long(),
        ]
        if self.use_proprio:
            null = self.no_state.expand(b, 1, -1)
            if state is None:
                tok = null
            else:
                tok = self.state_proj(((state - self.state_mean) / self.state_std)).unsqueeze(1)
                if has_state is not None:
                    keep = has_state.to(tok.dtype).view(b, 1, 1)
                    tok = keep * tok + (1 - keep) * null
            parts.append(tok)
            mask.append(torch.ones(b, 1, dtype=torch.long, device=latent.device))
        return torch.cat(parts, 1), torch.cat(mask, 1)

    def _run(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.lm.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return out.last_hidden_state

    # -- training -----------------------------------------------------------------------------
    def forward(self, latent, instr_ids, instr_mask, codes, state=None, has_state=None):
        """Teacher-forced logits ``[B,T,K]``: entry t scores code t given codes < t."""
        prefix, pmask = self.embed_prefix(latent, instr_ids, instr_mask, state, has_state)
        b = latent.shape[0]
        bos = self._token_embed(
            torch.full((b, 1), self.bos_id, dtype=torch.long, device=latent.device)
        )
        prev = self._token_embed(codes[:, :-1] + self.act_offset)
        embeds = torch.cat([prefix, bos, prev], 1)
        mask = torch.cat(
            [pmask, torch.ones(b, self.num_tokens, dtype=torch.long, device=latent.device)], 1
        )
        hidden = self._run(embeds, mask)
        return self.action_logits(hidden[:, prefix.shape[1] :])

    def loss(
        self,
        images,
        instr_ids,
        instr_mask,
        codes,
        state=None,
        has_state=None,
        weight: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        logits = self(self.encoder(images), instr_ids, instr_mask, codes, state, has_state)
        ce = F.cross_entropy(
            logits.reshape(-1, self.codebook_size), codes.reshape(-1), reduction="none"
        ).view(codes.shape)
        if weight is not None:
            loss = (ce.mean(1) * weight).sum() / weight.sum().clamp_min(1e-8)
        else:
            loss = ce.mean()
        acc = (logits.argmax(-1) == codes).float().mean()
        return {"loss": loss, "ce": ce.mean().detach(), "token_acc": acc.detach()}

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, latent, instr_ids, instr_mask, state=None):
        return self.decode_greedy(latent, instr_ids, instr_mask, state)

    def decode_greedy(self, latent, instr_ids, instr_mask, state=None):
        """(indices [B,T] int64, logits [B,T,K]): T greedy steps, no KV cache, so the loop
        unrolls into a static ONNX graph."""
        prefix, pmask = self.embed_prefix(latent, instr_ids, instr_mask, state)
        b = latent.shape[0]
        one = torch.ones(b, 1, dtype=torch.long, device=latent.device)
        embeds = torch.cat([prefix, self._token_embed(one * self.bos_id)], 1)
        mask = torch.cat([pmask, one], 1)
        indices, logits = [], []
        for _ in range(self.num_tokens):
            hidden = self._run(embeds, mask)
            step_logits = self.action_logits(hidden[:, -1])
            idx = step_logits.argmax(-1)
            indices.append(idx)
            logits.append(step_logits)
            embeds = torch.cat([embeds, self._token_embed(idx + self.act_offset).unsqueeze(1)], 1)
            mask = torch.cat([mask, one], 1)
        return torch.stack(indices, 1), torch.stack(logits, 1)

    def meta(self) -> Dict[str, Any]:
        """Constructor arguments besides the config (stored in checkpoints)."""
        return {
            "image_size": self.encoder.image_size,
            "codebook_size": self.codebook_size,
            "num_tokens": self.num_tokens,
            "state_dim": self.state_dim,
            "vocab_size": self.vocab_size,
        }


def frozen_copy(model: nn.Module) -> nn.Module:
    """A detached, eval-mode, grad-free copy (the Knowledge Matching reference)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


# ----------------------------------------------------------------------------------------------
# data: (frame, instruction, state, chunk, codes) windows for NTP and RF


@dataclass
class PolicyWindows:
    """Robot windows with everything the policy stages need; tensors indexed by window."""

    frames: torch.Tensor  # uint8 [F,3,S,S]
    i_t: torch.Tensor  # long [N] frame of the observation
    state: torch.Tensor  # float [N,S] raw proprioception at t
    chunks: torch.Tensor  # float [N,H,A] raw chunk in the configured action space
    instructions: list  # str per window
    episode: torch.Tensor  # long [N]
    codes: Optional[torch.Tensor] = None  # long [N,T] Act-VAE indices of the chunk

    def __len__(self) -> int:
        return int(self.i_t.shape[0])


@dataclass
class HumanCodeWindows:
    """Human clip windows with pseudo action codes (from stage 3); no state, no actions."""

    frames: torch.Tensor  # uint8 [F,3,S,S]
    i_t: torch.Tensor  # long [M]
    codes: torch.Tensor  # long [M,T]
    instructions: list

    def __len__(self) -> int:
        return int(self.i_t.shape[0])


def build_policy_windows(episodes, cfg) -> PolicyWindows:
    """Windows over robot episodes using the data layer's chunking (``cfg.data``)."""
    from .data import build_robot_windows

    d = cfg.data
    w = build_robot_windows(
        episodes, d.chunk_len, d.image_size, d.image_key, d.stride, d.action_space, d.robot
    )
    states = [torch.tensor(np.asarray(ep["state"], np.float32)) for ep in episodes]
    state = torch.stack([states[int(e)][int(t)] for e, t in zip(w.episode, w.t)])
    instr = [str(episodes[int(e)].get("instruction") or "") for e in w.episode]
    return PolicyWindows(w.frames, w.i_t, state, w.chunks, instr, w.episode)


def human_code_windows(clips, pseudo, image_size: int) -> Optional[HumanCodeWindows]:
    """Join human clips with their pseudo labels: ``pseudo[i]`` is a list of (start frame,
    token indices) for clip i (see :func:`load_pseudo_codes`)."""
    from .data import resize_frames

    frames, i_t, codes, instr = [], [], [], []
    offset = 0
    for clip, labels in zip(clips, pseudo):
        fr = resize_frames(clip["frames"], image_size)
        for t, idx in labels:
            if 0 <= int(t) < len(fr):
                i_t.append(offset + int(t))
                codes.append(list(idx))
                instr.append(str(clip.get("instruction") or clip.get("action_category") or ""))
        frames.append(fr)
        offset += len(fr)
    if not i_t:
        return None
    return HumanCodeWindows(
        torch.from_numpy(np.concatenate(frames)),
        torch.tensor(i_t),
        torch.tensor(codes, dtype=torch.long),
        instr,
    )


def load_pseudo_codes(clips, directory=None, filename: str = "pseudo_actions.json"):
    """Per clip a list of (start frame, token indices), or None when there are no labels.

    Taken from each clip dict's ``pseudo_codes`` when present (labels made in memory), else from
    ``directory/filename`` written by the pseudo-labelling stage (format ``clap_pseudo_actions``:
    ``clips[i]`` has ``file``, ``start_frames`` and ``tokens``), matched to clips by file."""
    if clips and all("pseudo_codes" in c for c in clips):
        return [[(int(t), [int(i) for i in idx]) for t, idx in c["pseudo_codes"]] for c in clips]
    if directory is None:
        return None
    from pathlib import Path

    if not (Path(directory) / filename).is_file():
        return None
    from .pseudo_label import load_pseudo_labels

    doc = load_pseudo_labels(directory, filename)
    by_file = {e.get("file"): list(zip(e["start_frames"], e["tokens"])) for e in doc["clips"]}
    missing = [c.get("file") for c in clips if c.get("file") not in by_file]
    if missing:
        raise ValueError(
            f"{directory}/{filename} has no pseudo labels for {len(missing)} clips "
            f"(e.g. {missing[:3]}); re-run `clap-train pseudo_label`"
        )
    return [by_file[c.get("file")] for c in clips]


def attach_pseudo_codes(clips, labelled) -> None:
    """Store in-memory labels (``pseudo_label.label_clips`` output, same order) on the clips."""
    if len(clips) != len(labelled):
        raise ValueError(f"{len(labelled)} pseudo-labelled clips for {len(clips)} clips")
    for clip, entry in zip(clips, labelled):
        clip["pseudo_codes"] = list(zip(entry["start_frames"], entry["tokens"]))


class PolicySource:
    """Batches for NTP/RF: robot windows plus, for NTP, a ``human_mix`` share of human windows.

    Keys: image (uint8), instr_ids, instr_mask, state, has_state, codes, and for robot-only
    batches actions (normalised)."""

    def __init__(
        self,
        robot: PolicyWindows,
        tokenizer,
        action_norm,
        human: Optional[HumanCodeWindows] = None,
        human_mix: float = 0.0,
    ):
        if robot.codes is None:
            raise ValueError("robot windows need Act-VAE codes (encode_windows) first")
        self.robot, self.human = robot, human
        self.human_mix = float(human_mix) if human is not None and len(human) else 0.0
        self.actions = action_norm.normalize(robot.chunks)
        self.r_ids, self.r_mask = (
            torch.from_numpy(a) for a in tokenizer.encode_batch(robot.instructions)
        )
        if self.human_mix > 0:
            self.h_ids, self.h_mask = (
                torch.from_numpy(a) for a in tokenizer.encode_batch(human.instructions)
            )

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        n_h = int(round(batch_size * self.human_mix))
        n_r = batch_size - n_h
        r = torch.randint(0, len(self.robot), (n_r,), generator=gen)
        out = {
            "image": self.robot.frames[self.robot.i_t[r]],
            "instr_ids": self.r_ids[r],
            "instr_mask": self.r_mask[r],
            "state": self.robot.state[r],
            "has_state": torch.ones(n_r),
            "codes": self.robot.codes[r],
        }
        if n_h == 0:
            out["actions"] = self.actions[r]
            return out
        h = torch.randint(0, len(self.human), (n_h,), generator=gen)
        hum = {
            "image": self.human.frames[self.human.i_t[h]],
            "instr_ids": self.h_ids[h],
            "instr_mask": self.h_mask[h],
            "state": torch.zeros(n_h, self.robot.state.shape[1]),
            "has_state": torch.zeros(n_h),
            "codes": self.human.codes[h],
        }
        return {k: torch.cat([out[k], hum[k]]) for k in out}


@torch.no_grad()
def encode_windows(
    act_vae, windows: PolicyWindows, action_norm, batch_size: int = 512
) -> torch.Tensor:
    """Act-VAE token indices of every window's chunk (the NTP targets and RF plans)."""
    act_vae.eval()
    dev = next(act_vae.parameters()).device
    out = []
    for i in range(0, len(windows), batch_size):
        chunk = action_norm.normalize(windows.chunks[i : i + batch_size]).to(dev)
        out.append(act_vae.encode(chunk)[1].cpu())
    windows.codes = torch.cat(out).long()
    return windows.codes


# ----------------------------------------------------------------------------------------------
# training


class NTPTrainModule(nn.Module):
    """``forward(batch) -> losses`` adapter for :func:`clap_train.common.fit`."""

    def __init__(self, ntp: ClapNTP):
        super().__init__()
        self.ntp = ntp

    def forward(self, batch):
        return self.ntp.loss(
            to_unit(batch["image"]),
            batch["instr_ids"],
            batch["instr_mask"],
            batch["codes"],
            batch["state"],
            batch["has_state"],
        )


def dataset_facts(cfg) -> Dict[str, Any]:
    """robot, fps, joint names from the dataset's meta/info.json (None where unknown)."""
    import json
    from pathlib import Path

    facts: Dict[str, Any] = {"robot": cfg.data.robot, "fps": None, "joint_names": None}
    root = cfg.data.robot_dataset
    info = Path(root) / "meta" / "info.json" if root else None
    if info is not None and info.is_file():
        meta = json.loads(info.read_text())
        facts["robot"] = facts["robot"] or meta.get("robot")
        facts["fps"] = meta.get("fps")
        facts["joint_names"] = meta.get("joint_names")
    return facts


def policy_stats(cfg, windows: PolicyWindows, action_norm, facts: Dict[str, Any]) -> Dict[str, Any]:
    """Normalisation stats and data facts carried by NTP/RF checkpoints and the bundle manifest."""
    from .data import Normalizer

    snorm = Normalizer.fit(windows.state.numpy())
    joints = list(facts.get("joint_names") or [])
    a_dim = windows.chunks.shape[-1]
    if cfg.data.action_space == "ee_delta":
        action_names = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"][:a_dim]
    elif joints and len(joints) + 1 == a_dim:
        action_names = joints + ["gripper"]
    else:
        action_names = []
    state_names = (
        joints + ["gripper"] if joints and len(joints) + 1 == windows.state.shape[1] else []
    )
    return {
        "action_mean": action_norm.mean.tolist(),
        "action_std": action_norm.std.tolist(),
        "state_mean": snorm.mean.tolist(),
        "state_std": snorm.std.tolist(),
        "action_space": cfg.data.action_space,
        "chunk_len": cfg.data.chunk_len,
        "robot": facts.get("robot"),
        "fps": facts.get("fps"),
        "joint_names": joints,
        "action_names": action_names,
        "state_names": state_names,
    }


def _act_vae_path(cfg, explicit: Optional[str]) -> str:
    from pathlib import Path

    return str(explicit or Path(cfg.out_dir) / "act_vae" / "final.safetensors")


def prepare_policy_data(cfg, data, act_vae_checkpoint: Optional[str] = None, tokenizer=None):
    """Shared by NTP and RF: load the frozen Act-VAE, build and encode windows, fit the
    tokenizer. Returns a dict with act_vae, action_norm, train/heldout windows, tokenizer, stats."""
    from .act_vae import load_act_vae
    from .data import Normalizer
    from .tokenizer_train import fit_tokenizer

    av_path = _act_vae_path(cfg, act_vae_checkpoint)
    act_vae, av_ck = load_act_vae(av_path)
    action_norm = Normalizer.from_dict(av_ck.stats["action"])
    if av_ck.stats.get("action_space", cfg.data.action_space) != cfg.data.action_space:
        raise ValueError(
            f"Act-VAE {av_path} was trained on action space "
            f"{av_ck.stats.get('action_space')}, config says {cfg.data.action_space}"
        )
    train = build_policy_windows(data.train_episodes, cfg)
    encode_windows(act_vae, train, action_norm)
    held = None
    if data.heldout_episodes:
        held = build_policy_windows(data.heldout_episodes, cfg)
        encode_windows(act_vae, held, action_norm)
    if tokenizer is None:
        tokenizer = fit_tokenizer(
            data.train_episodes, data.human_clips, max_length=cfg.ntp.max_instruction_len
        )
    stats = policy_stats(cfg, train, action_norm, dataset_facts(cfg))
    return {
        "act_vae": act_vae,
        "act_vae_checkpoint": av_path,
        "action_norm": action_norm,
        "train": train,
        "heldout": held,
        "tokenizer": tokenizer,
        "stats": stats,
    }


def build_ntp_model(cfg, prep) -> ClapNTP:
    av = prep["act_vae"]
    ntp = ClapNTP(
        cfg.ntp,
        image_size=cfg.data.image_size,
        codebook_size=av.cfg.codebook_size,
        num_tokens=av.tokens_per_chunk,
        state_dim=prep["train"].state.shape[1],
        vocab_size=prep["tokenizer"].vocab_size,
    )
    ntp.set_state_stats(prep["stats"]["state_mean"], prep["stats"]["state_std"])
    return ntp


@torch.no_grad()
def evaluate_ntp(
    ntp: ClapNTP, act_vae, windows: PolicyWindows, tokenizer, action_norm, batch_size: int = 256
) -> Dict[str, float]:
    """Held-out: token accuracy of greedy decoding, and the error of the decoded chunk (Act-VAE
    decoder on the predicted tokens, de-normalised) against the true chunk."""
    ntp.eval()
    ids, mask = (torch.from_numpy(a) for a in tokenizer.encode_batch(windows.instructions))
    acc, se, ae, n = 0.0, 0.0, 0.0, 0
    for i in range(0, len(windows), batch_size):
        sl = slice(i, i + batch_size)
        img = to_unit(windows.frames[windows.i_t[sl]])
        idx, _ = ntp.decode_greedy(ntp.encoder(img), ids[sl], mask[sl], windows.state[sl])
        acc += float((idx == windows.codes[sl]).float().sum())
        pred = action_norm.unnormalize(act_vae.decode_indices(idx))
        err = pred - windows.chunks[sl]
        se += float(err.pow(2).sum())
        ae += float(err.abs().sum())
        n += err.numel()
    return {
        "ntp_token_acc": acc / max(1, windows.codes.numel()),
        "ntp_decoded_mse": se / max(1, n),
        "ntp_decoded_mae": ae / max(1, n),
    }


def windows_subset(w: PolicyWindows, keep: torch.Tensor) -> PolicyWindows:
    """The windows where ``keep`` (bool [N]) is true; frames are shared, not copied."""
    idx = torch.nonzero(keep, as_tuple=False).flatten()
    return PolicyWindows(
        w.frames,
        w.i_t[idx],
        w.state[idx],
        w.chunks[idx],
        [w.instructions[int(i)] for i in idx],
        w.episode[idx],
        None if w.codes is None else w.codes[idx],
    )


def per_task_metrics(evaluate, windows: PolicyWindows, episodes) -> Dict[str, float]:
    """``evaluate(windows)`` on each task's share of held-out windows, keys ``<metric>@<task>``.

    Empty when the held-out set holds one task only (the overall figure says it all). The
    experiments need it: an arm's aggregate hides whether the task it was meant to learn from
    video got any better."""
    tasks = [str(ep.get("task_name") or "") for ep in episodes]
    if len(set(tasks)) < 2:
        return {}
    per_window = [tasks[int(e)] for e in windows.episode]
    out: Dict[str, float] = {}
    for task in sorted(set(per_window)):
        keep = torch.tensor([t == task for t in per_window])
        for k, v in evaluate(windows_subset(windows, keep)).items():
            out["%s@%s" % (k, task or "unnamed")] = v
    return out


def load_ntp(path, map_location: str = "cpu"):
    """(ClapNTP in eval mode, Checkpoint) from an NTP-stage checkpoint."""
    from .common.checkpoint import load_checkpoint

    ck = load_checkpoint(path, map_location)
    if ck.cfg is None or ck.meta.get("stage") != "ntp":
        raise ValueError(f"{path} is not an NTP checkpoint (stage={ck.meta.get('stage')!r})")
    m = ck.meta["model"]
    ntp = ClapNTP(
        ck.cfg.ntp,
        image_size=m["image_size"],
        codebook_size=m["codebook_size"],
        num_tokens=m["num_tokens"],
        state_dim=m["state_dim"],
        vocab_size=m["vocab_size"],
    )
    ntp.load_state_dict(
        {k[len("ntp.") :]: v for k, v in ck.state_dict.items() if k.startswith("ntp.")}
    )
    return ntp.eval(), ck


def train_ntp(
    cfg,
    data=None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
    act_vae_checkpoint: Optional[str] = None,
):
    """Stage 4: train CLAP-NTP on robot codes (+ human pseudo codes, ``ntp.human_mix``).

    Returns (ntp, FitResult, metrics)."""
    from pathlib import Path

    from .common.seed import seed_everything
    from .common.trainer import fit
    from .data import load_training_data

    seed_everything(cfg.seed)
    data = data if data is not None else load_training_data(cfg)
    prep = prepare_policy_data(cfg, data, act_vae_checkpoint or cfg.ntp.act_vae_checkpoint)
    human = None
    if data.human_clips and cfg.ntp.human_mix > 0:
        pseudo = load_pseudo_codes(
            data.human_clips, cfg.data.human_videos, cfg.pseudo_label.filename
        )
        if pseudo is None:
            pseudo = label_in_memory(cfg, data.human_clips, progress)
        human = human_code_windows(data.human_clips, pseudo, cfg.data.image_size)
        av = prep["act_vae"]
        if human is not None and (
            human.codes.shape[1] != av.tokens_per_chunk
            or int(human.codes.max()) >= av.cfg.codebook_size
        ):
            raise ValueError(
                f"pseudo labels have {human.codes.shape[1]} tokens with max index "
                f"{int(human.codes.max())}; the Act-VAE has {av.tokens_per_chunk} "
                f"tokens over {av.cfg.codebook_size} codes: re-run pseudo_label"
            )
    from .augment import ShiftedSource

    source = ShiftedSource(
        PolicySource(
            prep["train"], prep["tokenizer"], prep["action_norm"], human, cfg.ntp.human_mix
        ),
        cfg.ntp.augment_shift,
    )
    ntp = build_ntp_model(cfg, prep)
    out_dir = Path(out_dir or Path(cfg.out_dir) / "ntp")
    meta = {
        "stage": "ntp",
        "model": ntp.meta(),
        "tokenizer": prep["tokenizer"].to_dict(),
        "act_vae_checkpoint": prep["act_vae_checkpoint"],
        "data": {
            "robot_dataset": cfg.data.robot_dataset,
            "human_videos": cfg.data.human_videos,
            "train_windows": len(prep["train"]),
            "human_windows": 0 if human is None else len(human),
        },
    }
    module = NTPTrainModule(ntp)
    res = fit(
        module,
        source,
        cfg.ntp,
        out_dir,
        cfg=cfg,
        stats=prep["stats"],
        meta=meta,
        stage="ntp",
        seed=cfg.seed,
        resume=resume,
        progress=progress,
        stop_after=stop_after,
    )
    metrics: Dict[str, float] = {}
    if prep["heldout"] is not None:

        def evaluate(w):
            return evaluate_ntp(ntp, prep["act_vae"], w, prep["tokenizer"], prep["action_norm"])

        ntp = ntp.cpu()
        metrics = evaluate(prep["heldout"])
        metrics.update(per_task_metrics(evaluate, prep["heldout"], data.heldout_episodes))
        write_metrics(out_dir, metrics)
    return ntp, res, metrics


def label_in_memory(cfg, clips, progress: bool = True):
    """Pseudo-label clips that have no label file with the stage-2 checkpoint (synthetic or
    in-memory clips), or explain what is missing."""
    from .pseudo_label import label_clips, labeller_path, load_labeller

    path = labeller_path(cfg)
    if not path.is_file():
        raise ValueError(
            "ntp.human_mix > 0 but the human clips have no pseudo labels and there is "
            f"no {cfg.pseudo_label.model} checkpoint at {path}: run `clap-train "
            f"{cfg.pseudo_label.model}` and `clap-train pseudo_label` first, or set "
            "ntp.human_mix=0"
        )
    model, ck, _ = load_labeller(cfg)
    labelled = label_clips(
        model,
        clips,
        ck.cfg.data.chunk_len,
        int(ck.meta["image_size"]),
        cfg.pseudo_label.stride,
        cfg.pseudo_label.batch_size,
        progress=progress,
    )
    attach_pseudo_codes(clips, labelled)
    return load_pseudo_codes(clips)


def write_metrics(out_dir, metrics: Dict[str, float]) -> None:
    import json
    from pathlib import Path

    from .common.dist import is_main

    if is_main():
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "eval.json").write_text(json.dumps(metrics, indent=1) + "\n")
