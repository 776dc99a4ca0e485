"""Export a trained CLAP policy to the ONNX model bundle the ROS nodes load (``clap-export``).

Four graphs, each with a dynamic batch axis (names are the contract with clap_ros.inference):

- ``encoder.onnx``          image ``[B,3,H,W]`` float RGB in [0,1] -> ``latent [B,N,C]``
- ``planner.onnx``          latent, instruction_ids ``[B,L]`` int64, instruction_mask ``[B,L]``
                            int64, state ``[B,S]`` -> ``indices [B,T]`` int64, ``logits [B,T,K]``
                            (T greedy NTP steps unrolled, no KV cache)
- ``codebook_decoder.onnx`` indices ``[B,T]`` -> ``chunk [B,H,A]`` (Act-VAE decoder, de-normalised)
- ``rf_policy.onnx``        latent, plan_indices ``[B,T]``, state ``[B,S]``, noise ``[B,H,A]`` ->
                            ``actions [B,H,A]`` (N Euler steps unrolled, de-normalised)

States are raw (joint positions + gripper opening); each graph normalises internally. Every graph
is checked against torch with onnxruntime (CPU, fp32) at batch 1 and 3 before the manifest is
written; a bundle whose parity exceeds the tolerance is not written.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from clap_ros.inference.preprocess import preprocessing_spec

from . import bundle as B
from .config import register_section

OPSET = 17
PARITY_ATOL = 1e-4


@register_section("export")
@dataclass
class ExportConfig:
    """clap-export settings."""

    name: str = "default"
    opset: int = OPSET
    parity_atol: float = PARITY_ATOL
    parity_batches: List[int] = field(default_factory=lambda: [1, 3])
    tensorrt: bool = False  # also build FP16 TensorRT engines (needs tensorrt + CUDA)


# ----------------------------------------------------------------------------------------------
# graph wrappers (fixed signatures, named inputs/outputs)


class EncoderGraph(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.encoder = policy.ntp.encoder

    def forward(self, image):
        return self.encoder(image)


class PlannerGraph(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.ntp = policy.ntp

    def forward(self, latent, instruction_ids, instruction_mask, state):
        return self.ntp.decode_greedy(latent, instruction_ids, instruction_mask, state)


class CodebookDecoderGraph(nn.Module):
    def __init__(self, act_vae, action_mean, action_std):
        super().__init__()
        self.act_vae = act_vae
        self.register_buffer("mean", torch.as_tensor(action_mean, dtype=torch.float32).reshape(-1))
        self.register_buffer("std", torch.as_tensor(action_std, dtype=torch.float32).reshape(-1))

    def forward(self, indices):
        return self.act_vae.decode_indices(indices) * self.std + self.mean


class RFPolicyGraph(nn.Module):
    def __init__(self, policy, num_steps: int):
        super().__init__()
        self.policy = policy
        self.num_steps = int(num_steps)

    def forward(self, latent, plan_indices, state, noise):
        return self.policy.sample(latent, plan_indices, state, noise, self.num_steps)


@dataclass
class GraphSpec:
    name: str
    module: nn.Module
    inputs: List[Tuple[str, Tuple[int, ...], str]]  # (name, shape without batch, dtype)
    outputs: List[Tuple[str, Tuple[int, ...], str]]
    make_inputs: Callable[[int, torch.Generator], Tuple[torch.Tensor, ...]]


def graph_specs(policy, act_vae, action_mean, action_std, num_steps: int) -> List[GraphSpec]:
    """The four bundle graphs with input generators that produce realistic values (latents come
    from the real encoder; indices in range; states around the data's mean)."""
    ntp = policy.ntp
    img = ntp.encoder.image_size
    n, c = ntp.num_obs_tokens, ntp.encoder.width
    L, s, t, k = ntp.max_instruction_len, ntp.state_dim, ntp.num_tokens, ntp.codebook_size
    h, a = policy.head.chunk_len, policy.head.action_dim

    def image(b, g):
        return (torch.rand(b, 3, img, img, generator=g),)

    def latent(b, g):
        with torch.no_grad():
            return ntp.encoder(torch.rand(b, 3, img, img, generator=g))

    def state(b, g):
        return ntp.state_mean + ntp.state_std * torch.randn(b, s, generator=g)

    def instruction(b, g):
        ids = torch.randint(1, max(2, ntp.vocab_size), (b, L), generator=g)
        lengths = torch.randint(1, L + 1, (b,), generator=g)
        mask = (torch.arange(L)[None] < lengths[:, None]).long()
        return ids * mask, mask

    def plan(b, g):
        return torch.randint(0, k, (b, t), generator=g)

    return [
        GraphSpec(
            "encoder",
            EncoderGraph(policy),
            [("image", (3, img, img), "float32")],
            [("latent", (n, c), "float32")],
            image,
        ),
        GraphSpec(
            "planner",
            PlannerGraph(policy),
            [
                ("latent", (n, c), "float32"),
                ("instruction_ids", (L,), "int64"),
                ("instruction_mask", (L,), "int64"),
                ("state", (s,), "float32"),
            ],
            [("indices", (t,), "int64"), ("logits", (t, k), "float32")],
            lambda b, g: (latent(b, g), *instruction(b, g), state(b, g)),
        ),
        GraphSpec(
            "codebook_decoder",
            CodebookDecoderGraph(act_vae, action_mean, action_std),
            [("indices", (t,), "int64")],
            [("chunk", (h, a), "float32")],
            lambda b, g: (plan(b, g),),
        ),
        GraphSpec(
            "rf_policy",
            RFPolicyGraph(policy, num_steps),
            [
                ("latent", (n, c), "float32"),
                ("plan_indices", (t,), "int64"),
                ("state", (s,), "float32"),
                ("noise", (h, a), "float32"),
            ],
            [("actions", (h, a), "float32")],
            lambda b, g: (latent(b, g), plan(b, g), state(b, g), torch.randn(b, h, a, generator=g)),
        ),
    ]


# ----------------------------------------------------------------------------------------------
# export + parity


@contextlib.contextmanager
def _quiet_export():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            yield


@contextlib.contextmanager
def _traceable(module: nn.Module):
    """Grad mode on and every parameter requiring grad while tracing: that disables the fused
    inference fast path of nn.TransformerEncoderLayer/MultiheadAttention (used by the Act-VAE),
    which has no ONNX symbolic."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def export_graph(spec: GraphSpec, path: Path, opset: int = OPSET) -> Path:
    """Trace ``spec.module`` at batch 2 and write ONNX with a dynamic ``batch`` axis."""
    module = spec.module.eval()
    args = spec.make_inputs(2, torch.Generator().manual_seed(0))
    names_in = [n for n, _, _ in spec.inputs]
    names_out = [n for n, _, _ in spec.outputs]
    axes = {n: {0: "batch"} for n in names_in + names_out}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_export(), _traceable(module):
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    import onnx

    onnx.checker.check_model(str(path))
    return path


def check_parity(
    spec: GraphSpec, path: Path, batches: Sequence[int] = (1, 3), seed: int = 1
) -> Dict[str, Any]:
    """Max abs difference torch vs onnxruntime (CPU) per output and batch size. Integer outputs
    (token indices) must match exactly; their entry counts mismatching elements."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: Dict[str, Any] = {}
    for b in batches:
        args = spec.make_inputs(b, torch.Generator().manual_seed(seed + b))
        with torch.no_grad():
            ref = spec.module(*args)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        feeds = {n: x.numpy() for (n, _, _), x in zip(spec.inputs, args)}
        outs = sess.run([n for n, _, _ in spec.outputs], feeds)
        for (name, shape, dtype), r, o in zip(spec.outputs, ref, outs):
            r = r.numpy()
            if o.shape != r.shape or tuple(o.shape[1:]) != tuple(shape):
                raise AssertionError(f"{spec.name}.{name}: onnx shape {o.shape}, torch {r.shape}")
            if dtype.startswith("int"):
                diff = float((o != r).sum())
            else:
                diff = float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max())
            key = f"{name}@b{b}"
            result[key] = diff
    return result


def parity_ok(spec: GraphSpec, parity: Dict[str, float], atol: float) -> bool:
    dtypes = {n: d for n, _, d in spec.outputs}
    for key, diff in parity.items():
        name = key.split("@")[0]
        limit = 0.0 if dtypes[name].startswith("int") else atol
        if diff > limit:
            return False
    return True


# ----------------------------------------------------------------------------------------------
# the bundle


def export_bundle(
    policy,
    act_vae,
    out_dir,
    *,
    stats: Dict[str, Any],
    tokenizer,
    provenance: Dict[str, Any],
    num_steps: Optional[int] = None,
    opset: int = OPSET,
    atol: float = PARITY_ATOL,
    parity_batches: Sequence[int] = (1, 3),
    tensorrt: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Write the four graphs, the tokenizer and manifest.yaml to ``out_dir``; returns the manifest.

    ``stats`` must hold ``action_mean``/``action_std`` (per action dim, the chunk normaliser),
    ``state_mean``/``state_std``, and the facts the manifest records: ``robot``,
    ``joint_names``, ``action_names``, ``action_space``, ``fps``."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = policy.eval().float().cpu()
    act_vae = act_vae.eval().float().cpu()
    num_steps = int(num_steps or policy.cfg.num_steps)
    specs = graph_specs(policy, act_vae, stats["action_mean"], stats["action_std"], num_steps)
    graphs: Dict[str, Any] = {}
    parity: Dict[str, Any] = {}
    for spec in tqdm(specs, desc="export", disable=not progress, leave=False):
        path = export_graph(spec, out_dir / B.GRAPH_FILES[spec.name], opset)
        par = check_parity(spec, path, parity_batches)
        parity[spec.name] = par
        if not parity_ok(spec, par, atol):
            raise AssertionError(
                f"{spec.name}: onnxruntime vs torch parity failed (tolerance {atol}): {par}"
            )
        graphs[spec.name] = {
            "file": path.name,
            "inputs": [
                {"name": n, "shape": ["batch", *shape], "dtype": d} for n, shape, d in spec.inputs
            ],
            "outputs": [
                {"name": n, "shape": ["batch", *shape], "dtype": d} for n, shape, d in spec.outputs
            ],
        }
    tokenizer.save(out_dir / B.TOKENIZER_FILE)
    ntp = policy.ntp
    fps = float(stats.get("fps") or 0.0)
    manifest = {
        "format": B.FORMAT,
        "version": B.VERSION,
        "name": out_dir.name,
        "robot": stats.get("robot"),
        "joint_names": list(stats.get("joint_names") or []),
        "action_space": {
            "type": stats.get("action_space", "joint_abs"),
            "dim": policy.head.action_dim,
            "names": list(stats.get("action_names") or []),
            # what the last action dim means when it is the gripper (DESIGN: 0 closed .. 1 open)
            "gripper": stats.get("gripper", "opening_0_closed_1_open"),
        },
        "chunk_length": policy.head.chunk_len,
        "control_rate_hz": fps,
        "chunk_dt_s": (1.0 / fps) if fps > 0 else None,
        "image": {
            "height": ntp.encoder.image_size,
            "width": ntp.encoder.image_size,
            "channels": 3,
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "range": [0.0, 1.0],
            "resize": "area (cv2.INTER_AREA) to height x width, as in training",
            "mean": list(ntp.encoder.MEAN),
            "std": list(ntp.encoder.STD),
            "normalized_in_graph": True,
        },
        # the recipe training fed the encoder with; the runtime refuses one it does not know
        "preprocessing": preprocessing_spec(
            ntp.encoder.image_size, ntp.encoder.image_size
        ).to_manifest(),
        "latent": {"tokens": ntp.num_obs_tokens, "dim": ntp.encoder.width},
        "codebook": {
            "size": ntp.codebook_size,
            "dim": int(policy.codebook.shape[1]),
            "tokens_per_chunk": ntp.num_tokens,
        },
        "instruction": {
            "tokenizer": B.TOKENIZER_FILE,
            "max_length": ntp.max_instruction_len,
            "vocab_size": ntp.vocab_size,
        },
        "rf": {
            "num_steps": num_steps,
            "noise": "standard normal [batch, chunk_length, action dim]",
        },
        "state": {
            "dim": ntp.state_dim,
            "names": list(stats.get("state_names") or []),
            "normalized_in_graph": True,
        },
        "normalization": {
            "state": {"mean": stats["state_mean"], "std": stats["state_std"]},
            "action": {"mean": stats["action_mean"], "std": stats["action_std"]},
        },
        "graphs": graphs,
        "files": {B.TOKENIZER_FILE: {"kind": "instruction tokenizer vocabulary"}},
        "provenance": {
            **provenance,
            "git_commit": provenance.get("git_commit") or B.git_commit(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "exporter": {"torch": torch.__version__, "opset": opset},
            "parity": {"atol": atol, "max_abs_diff": parity},
        },
    }
    if tensorrt:
        engines = {}
        for name, entry in graphs.items():
            engines[name] = str(
                B.build_tensorrt_engine(out_dir / entry["file"], out_dir / "engines", "fp16")
            )
        manifest["provenance"]["tensorrt_engines"] = engines
    B.write_manifest(out_dir, manifest)
    # the runtime's own loader checks what the robot will check (graph headers against the
    # manifest, sizes consistent across graphs), so a bad export fails here, not at start-up
    from clap_ros.inference.bundle import load_bundle

    return load_bundle(out_dir, check_robot=False).manifest


def export_from_checkpoint(
    checkpoint, out_dir, act_vae_checkpoint=None, command: Optional[str] = None, **kwargs
) -> Dict[str, Any]:
    """Load an RF-stage checkpoint (policy + its Act-VAE) and write the bundle. ``command`` is
    recorded in the manifest as the way to rebuild it (default: this process's command line)."""
    from .rf import load_policy

    policy, ck = load_policy(checkpoint)
    from .act_vae import load_act_vae

    av_path = act_vae_checkpoint or ck.meta.get("act_vae_checkpoint")
    if not av_path:
        raise ValueError(f"{checkpoint} does not name its Act-VAE checkpoint; pass --act-vae")
    act_vae, _ = load_act_vae(av_path)
    stats = dict(ck.stats)
    from clap_ros.inference.tokenizer import InstructionTokenizer

    tokenizer = InstructionTokenizer.from_dict(ck.meta["tokenizer"])
    provenance = {
        "checkpoint": str(checkpoint),
        "act_vae_checkpoint": str(av_path),
        "config": ck.cfg.to_dict() if ck.cfg is not None else None,
        "data": ck.meta.get("data", {}),
        "metrics": ck.meta.get("metrics", {}),
        "step": ck.step,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
    }
    return export_bundle(
        policy, act_vae, out_dir, stats=stats, tokenizer=tokenizer, provenance=provenance, **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clap-export",
        description="Export a trained CLAP policy (RF-stage checkpoint) to a model bundle: "
        "encoder.onnx, planner.onnx, codebook_decoder.onnx, rf_policy.onnx, "
        "tokenizer.json and manifest.yaml (with sha256 of every file). Each graph is "
        "checked against torch with onnxruntime before the manifest is written.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="RF-stage checkpoint, e.g. runs/tiny/rf/final.safetensors",
    )
    p.add_argument("--out", required=True, help="bundle directory, e.g. models/default")
    p.add_argument(
        "--act-vae",
        default=None,
        help="Act-VAE checkpoint (default: the one recorded in the RF checkpoint)",
    )
    p.add_argument(
        "--num-steps",
        type=int,
        default=None,
        help="Euler steps unrolled in rf_policy.onnx (default: the RF config's)",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=PARITY_ATOL,
        help="max abs difference onnxruntime vs torch allowed per float output",
    )
    p.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    p.add_argument(
        "--tensorrt",
        action="store_true",
        help="also build FP16 TensorRT engines into OUT/engines (needs tensorrt + CUDA)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = export_from_checkpoint(
            args.checkpoint,
            args.out,
            args.act_vae,
            num_steps=args.num_steps,
            opset=args.opset,
            atol=args.atol,
            tensorrt=args.tensorrt,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, AssertionError, RuntimeError) as exc:
        print(f"clap-export: error: {exc}", file=sys.stderr)
        return 1
    worst = max(
        (v for g in manifest["provenance"]["parity"]["max_abs_diff"].values() for v in g.values()),
        default=0.0,
    )
    print(
        f"wrote bundle {args.out}: {', '.join(sorted(manifest['graphs']))}; "
        f"parity max abs diff {worst:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
