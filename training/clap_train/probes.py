"""Probes on held-out episodes: does a latent encode the action, and does it leak appearance?

* linear probe (ridge, closed form) from the latent to the true action chunk: R^2 on episodes the
  probe never saw, for the raw chunk and for its motion (chunk minus its first step);
* appearance leakage: a multinomial logistic classifier from the latent to each appearance factor
  (scene texture, lighting, distractors...), accuracy next to chance (the majority-class rate);
  near chance is good;
* codebook perplexity and number of codes used.

Every split is by episode: windows of one episode share both appearance and a motion style, so a
window-level split would let a probe identify the episode and "leak" appearance through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .common.vq import perplexity
from .config import ProbeConfig
from .data import RobotWindows

__all__ = [
    "ridge_r2",
    "linear_probe",
    "leakage_probe",
    "codebook_stats",
    "extract_latents",
    "probe_model",
    "write_comparison_table",
    "run_probes",
]


def _split_groups(groups: np.ndarray, test_fraction: float, seed: int):
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise ValueError("probes need windows from at least 2 episodes, got %d" % len(uniq))
    rng = np.random.default_rng(seed)
    n_test = min(len(uniq) - 1, max(1, int(round(len(uniq) * test_fraction))))
    test = set(rng.permutation(uniq)[:n_test].tolist())
    mask = np.array([g in test for g in groups])
    return ~mask, mask


def _standardise(tr: np.ndarray, te: np.ndarray):
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    return (tr - mu) / sd, (te - mu) / sd


def _ridge_fit(x, y, alpha):
    ym = y.mean(0)
    W = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (y - ym))
    return W, ym


def _r2(y, pred) -> float:
    var = y.var(0)
    keep = var > 1e-10
    return float((1.0 - ((y - pred) ** 2).mean(0)[keep] / var[keep]).mean())


def ridge_r2(x_tr, y_tr, x_te, y_te, alpha: float = 1.0) -> float:
    """Held-out R^2 of a ridge regression (averaged over target dims that vary)."""
    x_tr, x_te = _standardise(np.asarray(x_tr, np.float64), np.asarray(x_te, np.float64))
    y_tr, y_te = np.asarray(y_tr, np.float64), np.asarray(y_te, np.float64)
    W, ym = _ridge_fit(x_tr, y_tr, alpha)
    return _r2(y_te, x_te @ W + ym)


def select_alpha(x, y, groups, alphas: Sequence[float], folds: int = 3) -> float:
    """Ridge strength by group k-fold inside the probe's training episodes (never the test ones)."""
    uniq = np.unique(groups)
    if len(uniq) < 2 or len(alphas) == 1:
        return float(alphas[0])
    fold_of = {g: i % min(folds, len(uniq)) for i, g in enumerate(uniq)}
    f = np.array([fold_of[g] for g in groups])
    scores = []
    for a in alphas:
        s = [ridge_r2(x[f != k], y[f != k], x[f == k], y[f == k], a) for k in np.unique(f)]
        scores.append(np.mean(s))
    return float(alphas[int(np.argmax(scores))])


def linear_probe(
    latents: np.ndarray,
    chunks: np.ndarray,
    groups: np.ndarray,
    alpha: Optional[float] = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> Dict[str, float]:
    """R^2 of latent -> chunk [N,H,A] ("r2_chunk") and -> motion within the chunk ("r2_motion").

    ``alpha=None`` picks the ridge strength per target by cross-validation on the training episodes.
    """
    groups = np.asarray(groups)
    tr, te = _split_groups(groups, test_fraction, seed)
    X = np.asarray(latents, np.float64).reshape(len(latents), -1)
    Y = np.asarray(chunks, np.float64)
    motion = (Y - Y[:, :1]).reshape(len(Y), -1)
    Y = Y.reshape(len(Y), -1)
    out = {}
    for name, T in (("r2_chunk", Y), ("r2_motion", motion)):
        a = alpha if alpha is not None else select_alpha(X[tr], T[tr], groups[tr], ALPHAS)
        out[name] = ridge_r2(X[tr], T[tr], X[te], T[te], a)
    return out


ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _fit_softmax(x, y, n_cls, steps, lr, weight_decay, seed):
    """Multinomial logistic regression by full-batch Adam, in numpy (tiny problems: no autograd
    overhead, no thread contention)."""
    X = np.c_[x, np.ones(len(x))]
    Y = np.eye(n_cls)[y]
    W = 0.01 * np.random.default_rng(seed).normal(size=(X.shape[1], n_cls))
    m = np.zeros_like(W)
    v = np.zeros_like(W)
    b1, b2 = 0.9, 0.999
    for k in range(1, steps + 1):
        logits = X @ W
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        g = X.T @ (p - Y) / len(X)
        g[:-1] += weight_decay * W[:-1]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        W -= lr * (m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + 1e-8)
    return W


def leakage_probe(
    latents: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-3,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> Dict[str, float]:
    """Held-out accuracy of a logistic classifier latent -> label, with chance = majority rate."""
    tr, te = _split_groups(np.asarray(groups), test_fraction, seed)
    X = np.asarray(latents, np.float64).reshape(len(latents), -1)
    y = np.asarray(labels, np.int64)
    x_tr, x_te = _standardise(X[tr], X[te])
    n_cls = int(y.max()) + 1
    W = _fit_softmax(x_tr, y[tr], n_cls, steps, lr, weight_decay, seed)
    pred = (np.c_[x_te, np.ones(len(x_te))] @ W).argmax(-1)
    counts = np.bincount(y[te], minlength=n_cls)
    return {
        "accuracy": float((pred == y[te]).mean()),
        "chance": float(counts.max() / counts.sum()),
        "classes": n_cls,
    }


def codebook_stats(indices: np.ndarray, num_codes: int) -> Dict[str, float]:
    idx = torch.as_tensor(np.asarray(indices, np.int64))
    return {
        "perplexity": float(perplexity(idx, num_codes)),
        "codes_used": int(torch.unique(idx).numel()),
        "codebook_size": int(num_codes),
    }


@torch.no_grad()
def extract_latents(
    model, windows: RobotWindows, batch_size: int = 128, max_windows: int = 0, device: str = "cpu"
):
    """(quantised latents [N,T*D], continuous latents [N,T*D], indices [N,T], window ids [N])."""
    model.eval().to(device)
    n = len(windows)
    ids = np.arange(n)
    if max_windows and n > max_windows:
        ids = np.sort(np.random.default_rng(0).choice(n, max_windows, replace=False))
    zq, ze, ix = [], [], []
    for s in range(0, len(ids), batch_size):
        b = torch.as_tensor(ids[s : s + batch_size])
        o_t = windows.frames[windows.i_t[b]].to(device)
        o_tH = windows.frames[windows.i_tH[b]].to(device)
        cont = model.encode_pair_continuous(o_t, o_tH)
        cont = cont[0] if isinstance(cont, tuple) else cont
        q, i = model.encode_pair(o_t, o_tH)
        zq.append(q.flatten(1).cpu().numpy())
        ze.append(cont.flatten(1).cpu().numpy())
        ix.append(i.cpu().numpy())
    return np.concatenate(zq), np.concatenate(ze), np.concatenate(ix), ids


def probe_model(
    model,
    windows: RobotWindows,
    cfg: Optional[ProbeConfig] = None,
    seed: int = 0,
    device: str = "cpu",
) -> Dict[str, Any]:
    """All probes for one latent-action model on held-out windows."""
    cfg = cfg or ProbeConfig()
    zq, ze, idx, ids = extract_latents(model, windows, max_windows=cfg.max_windows, device=device)
    chunks = windows.chunks[torch.as_tensor(ids)].numpy()
    groups = windows.episode[torch.as_tensor(ids)].numpy()
    out: Dict[str, Any] = {"windows": int(len(ids)), "episodes": int(len(np.unique(groups)))}
    for name, lat in (("quantised", zq), ("continuous", ze)):
        alpha = cfg.ridge_alpha if cfg.ridge_alpha > 0 else None
        out[name] = linear_probe(lat, chunks, groups, alpha, cfg.test_fraction, seed)
        out[name]["leakage"] = {
            factor: leakage_probe(
                lat,
                labels[torch.as_tensor(ids)].numpy(),
                groups,
                cfg.classifier_steps,
                cfg.classifier_lr,
                cfg.classifier_weight_decay,
                cfg.test_fraction,
                seed,
            )
            for factor, labels in windows.appearance.items()
        }
    out.update(codebook_stats(idx, model.codebook.weight.shape[0]))
    return out


def write_comparison_table(results: Mapping[str, Mapping[str, Any]], out_dir) -> Dict[str, Path]:
    """Write probes.json and probes.md: one row per model and latent kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / "probes.json"
    jpath.write_text(json.dumps(results, indent=2, sort_keys=True))
    factors = sorted(
        {
            f
            for r in results.values()
            for k in ("quantised", "continuous")
            for f in r.get(k, {}).get("leakage", {})
        }
    )
    head = (
        ["model", "latent", "R2 chunk", "R2 motion"]
        + ["%s acc (chance)" % f for f in factors]
        + ["perplexity", "codes used"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        for kind in ("quantised", "continuous"):
            if kind not in r:
                continue
            p = r[kind]
            cells = [name, kind, "%.3f" % p["r2_chunk"], "%.3f" % p["r2_motion"]]
            for f in factors:
                lk = p["leakage"].get(f)
                cells.append("%.2f (%.2f)" % (lk["accuracy"], lk["chance"]) if lk else "-")
            cells += ["%.1f / %d" % (r["perplexity"], r["codebook_size"]), str(r["codes_used"])]
            lines.append("| " + " | ".join(cells) + " |")
    n = next(iter(results.values()), {})
    md = (
        [
            "# Latent-action probes (held-out episodes)",
            "",
            "Linear ridge probe latent -> true action chunk (R^2, higher is better); logistic "
            "probe latent -> appearance factor (accuracy, closer to chance is better); codebook "
            "perplexity.",
            "Windows: %s from %s held-out episodes; probe splits are by episode."
            % (n.get("windows"), n.get("episodes")),
            "",
        ]
        + lines
        + [""]
    )
    mpath = out_dir / "probes.md"
    mpath.write_text("\n".join(md))
    return {"json": jpath, "markdown": mpath}


def run_probes(
    cfg,
    heldout_episodes=None,
    models: Optional[Dict[str, Any]] = None,
    out_dir=None,
    device: str = "cpu",
) -> Dict[str, Any]:
    """Probe CLAP/ConLA (visual_lam) and the LAPA baseline on held-out episodes; write the table."""
    from .data import build_robot_windows, load_training_data

    if heldout_episodes is None:
        heldout_episodes = load_training_data(cfg).heldout_episodes
    if models is None:
        from .lapa import load_lapa
        from .visual_lam import load_visual_lam

        root = Path(cfg.out_dir)
        models = {
            "CLAP/ConLA": load_visual_lam(root / "visual_lam" / "final.safetensors")[0],
            "LAPA-style": load_lapa(root / "lapa" / "final.safetensors")[0],
        }
    d = cfg.data
    w = build_robot_windows(
        heldout_episodes, d.chunk_len, d.image_size, d.image_key, d.stride, d.action_space, d.robot
    )
    results = {name: probe_model(m, w, cfg.probes, cfg.seed, device) for name, m in models.items()}
    write_comparison_table(results, out_dir or Path(cfg.out_dir) / "probes")
    return results
