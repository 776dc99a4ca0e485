"""Typed training configuration: one dataclass per stage, loaded from YAML presets.

A preset (``training/configs/tiny.yaml``) has top-level keys (``seed``, ``out_dir``, ``device``) and
one section per stage. Sections of stages defined in this file are typed here; other stages (NTP,
RF, export) register their own dataclass with :func:`register_section` in their module, and
:func:`load_config` imports ``clap_train.<section>`` on demand, so a preset can carry every stage
without this file knowing them all.

Overrides are dotted ``key=value`` strings (``act_vae.lr=1e-3``); values are parsed as YAML and
checked against the field's type, so a typo fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A preset or override does not match the typed configuration."""


# ----------------------------------------------------------------------------------------------
# Stage sections


@dataclass
class StageTrainConfig:
    """Optimisation settings every trainable stage shares (flat, so ``act_vae.lr=...`` works)."""

    steps: int = 200
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables clipping
    amp: bool = True  # autocast on CUDA only; ignored on CPU
    log_every: int = 10
    ckpt_every: int = 0  # 0: checkpoint only at the end


@dataclass
class DataConfig:
    """Where the data is and how it is cut into (frame pair, action chunk) windows."""

    robot_dataset: Optional[str] = None  # clap_ros dataset root (meta/, data/, videos/)
    human_videos: Optional[str] = None  # DIR with labels.json + videos/*.mp4
    image_key: str = "observation.images.scene"
    image_size: int = 64  # frames are resized to image_size x image_size on load
    chunk_len: int = 16  # H: action chunk length, and the frame gap of the (o_t, o_{t+H}) pair
    stride: int = 2  # step between window starts inside an episode
    action_space: str = "joint_abs"  # joint_abs | joint_delta | ee_delta
    robot: Optional[str] = None  # profile name for ee_delta (kinematics); defaults to dataset's
    heldout_fraction: float = 0.2  # whole episodes held out for probes / evaluation
    max_episodes: int = 0  # 0: all


@dataclass
class ActVAEConfig(StageTrainConfig):
    """Transformer VQ-VAE over action chunks (stage 1)."""

    codebook_size: int = 512  # K
    code_dim: int = 128  # D
    num_tokens: int = 8  # T tokens per arm per chunk
    num_arms: int = 1  # the action vector is split into num_arms equal per-arm parts
    d_model: int = 256
    n_heads: int = 4
    enc_layers: int = 4
    dec_layers: int = 4
    dropout: float = 0.0
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.03  # restart codes hit less than this x a uniform share
    restart_every: int = 20  # steps between dead-code restart sweeps


@dataclass
class VisualLAMConfig(StageTrainConfig):
    """Visual latent-action model: CLAP (robot, SigLIP to Act-VAE) + ConLA (human videos)."""

    backbone: str = "cnn"  # cnn | vit | hf (transformers vision model, see hf_model / hf_config)
    hf_model: Optional[str] = None  # name or local path for AutoModel.from_pretrained
    hf_config: Optional[Dict[str, Any]] = None  # kwargs for a from-scratch AutoConfig.for_model
    freeze_backbone: bool = False
    width: int = 128  # backbone token width C
    patch: int = 8  # ViT patch size / CNN total stride
    vit_layers: int = 4
    n_heads: int = 4
    lam_layers: int = 2  # transformer layers that read both frames' tokens
    num_irrelevant: int = 4  # action-irrelevant tokens (L1 penalised)
    irrelevant_dim: int = 32
    predictor_layers: int = 2
    # loss weights
    w_siglip: float = 1.0
    w_align: float = 1.0  # token-wise MSE to the true chunk's Act-VAE codes (robot data)
    w_commit: float = 0.25
    w_pred: float = 1.0
    w_l1: float = 1e-3
    w_teacher: float = 0.5
    w_conla: float = 0.5
    w_reverse: float = 0.5
    siglip_init_temp: float = 10.0  # logit scale t' = exp(log_t); SigLIP's init
    siglip_init_bias: float = -10.0
    teacher_decay: float = 0.99
    reverse_margin: float = 0.5  # cosine similarity a reversed clip's latent must stay under
    human_batch_size: int = 32
    act_vae_checkpoint: Optional[str] = None  # default: <out_dir>/act_vae/final.safetensors


@dataclass
class LAPAConfig(StageTrainConfig):
    """LAPA-style baseline: VQ latent action trained by pixel reconstruction of the future frame."""

    codebook_size: int = 8
    num_tokens: int = 4
    code_dim: int = 32
    width: int = 64
    patch: int = 8
    lam_layers: int = 2
    n_heads: int = 4
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1  # 8 codes: each should get a real share
    restart_every: int = 20


@dataclass
class ProbeConfig:
    """Probes on held-out episodes (linear R^2, appearance leakage, perplexity)."""

    ridge_alpha: float = (
        0.0  # <= 0: chosen by group cross-validation on the probe's training episodes
    )
    classifier_steps: int = 300
    classifier_lr: float = 0.05
    classifier_weight_decay: float = 1e-3
    test_fraction: float = 0.5  # of held-out episodes, for the probe's own train/test split
    max_windows: int = 4000


@dataclass
class PseudoLabelConfig:
    """Human videos -> action tokens written next to the videos."""

    checkpoint: Optional[str] = None  # default: <out_dir>/<model>/final.safetensors
    # which latent-action model labels the clips: visual_lam (CLAP/ConLA, codes in the Act-VAE
    # codebook) or lapa (the LAPA-style baseline's own codes, for the human-transfer comparison)
    model: str = "visual_lam"
    stride: int = 1
    batch_size: int = 64
    filename: str = "pseudo_actions.json"


# ----------------------------------------------------------------------------------------------
# Registry of extra sections (other stages)

_SECTIONS: Dict[str, type] = {}


def register_section(name: str):
    """Class decorator: make ``name`` a typed section of :class:`Config` (e.g. ``ntp``, ``rf``)."""

    def deco(cls):
        if not dataclasses.is_dataclass(cls):
            raise TypeError("register_section needs a dataclass, got %r" % (cls,))
        _SECTIONS[name] = cls
        return cls

    return deco


def _section_type(name: str) -> Optional[type]:
    if name not in _SECTIONS:
        try:
            importlib.import_module("clap_train.%s" % name)
        except ModuleNotFoundError as exc:
            if exc.name != "clap_train.%s" % name:
                raise
    return _SECTIONS.get(name)


@dataclass
class Config:
    seed: int = 0
    out_dir: str = "runs/tiny"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    act_vae: ActVAEConfig = field(default_factory=ActVAEConfig)
    visual_lam: VisualLAMConfig = field(default_factory=VisualLAMConfig)
    lapa: LAPAConfig = field(default_factory=LAPAConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    # registered sections (ntp, rf, export, ...), each an instance of its registered dataclass
    sections: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str):
        # only reached for attributes not found normally: look in the registered sections
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        typ = _section_type(name) if not name.startswith("_") else None
        if sections is not None and typ is not None:
            sections[name] = typ()
            return sections[name]
        raise AttributeError(name)

    def to_dict(self) -> Dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "sections":
                continue
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
        for name, sec in self.sections.items():
            out[name] = dataclasses.asdict(sec)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, Mapping):
            raise ConfigError("%s: expected a mapping, got %r" % (where, value))
        return from_dict(typ, value, where)
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError("%s: expected a mapping, got %r" % (where, value))
        return dict(value)
    if origin in (list, List, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError("%s: expected a list, got %r" % (where, value))
        return list(value) if origin is not tuple else tuple(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError("%s: expected true/false, got %r" % (where, value))
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError("%s: expected an integer, got %r" % (where, value))
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ConfigError("%s: expected a number, got %r" % (where, value)) from None
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError("%s: expected a string, got %r" % (where, value))
        return value
    return value


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            "%s: unknown key(s) %s; known: %s" % (where or cls.__name__, unknown, sorted(names))
        )
    kwargs = {
        k: _coerce(v, hints[k], "%s.%s" % (where, k) if where else k) for k, v in data.items()
    }
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(Config)} - {"sections"}
    core = {k: v for k, v in data.items() if k in known}
    cfg = from_dict(Config, core)
    for name, value in data.items():
        if name in known:
            continue
        typ = _section_type(name)
        if typ is None:
            raise ConfigError(
                "unknown config section %r (no module clap_train.%s registers it)" % (name, name)
            )
        if not isinstance(value, Mapping):
            raise ConfigError("%s: expected a mapping, got %r" % (name, value))
        cfg.sections[name] = from_dict(typ, value, name)
    return cfg


def _set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if p not in node or node[p] is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError("override %s: %s is not a section" % (key, p))
        node = node[p]
    node[parts[-1]] = value


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    data = copy.deepcopy(data)
    for ov in overrides or ():
        if "=" not in ov:
            raise ConfigError("override %r must look like section.key=value" % ov)
        key, raw = ov.split("=", 1)
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return data


def resolve_preset(path_or_name: str) -> Path:
    """A path to a YAML file, or a preset name from training/configs (``tiny``, ``paper``)."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    cand = CONFIG_DIR / ("%s.yaml" % path_or_name)
    if cand.is_file():
        return cand
    raise ConfigError(
        "no config file %s (presets: %s)"
        % (path_or_name, sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
    )


def _deep_merge(base: Dict[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_preset(path: str, seen: Sequence[Path] = ()) -> Dict[str, Any]:
    """A preset's mapping; ``base: <preset>`` at its top level inherits that preset first, so a
    preset states only what it changes (models/default's recipe is tiny plus longer training)."""
    file = resolve_preset(path).resolve()
    if file in seen:
        raise ConfigError(
            "preset %s inherits from itself (%s)"
            % (file, " -> ".join(str(x) for x in (*seen, file)))
        )
    with open(file) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError("%s: top level must be a mapping" % path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError("%s: base must be a preset name or path, got %r" % (path, base))
    # A relative base path is looked up next to the preset that names it, then as a preset name.
    sibling = file.parent / base
    return _deep_merge(
        _read_preset(str(sibling) if sibling.is_file() else base, (*seen, file)), data
    )


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML preset (path or preset name) and apply dotted ``key=value`` overrides."""
    data: Dict[str, Any] = _read_preset(str(path)) if path is not None else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data)


def config_from_json(text: str) -> Config:
    return config_from_dict(json.loads(text))
