"""Rung (c) of the diagnostic ladder (issue 14): an image policy without the planner.

``clap-train vision --task reach`` learns  (workspace + wrist camera, instruction words,
measured state) -> absolute joint chunk  and exports it to ONNX for ``clap-ros eval-sim --mode
direct --policy vision:<onnx>`` (clap_ros/eval/vision_policy.py has the contract). The
checkpoint that ships is the one with the best closed-loop success on validation seeds 50000..
(never the loss); ``curve.png`` in the run folder draws success and loss against the step.

Data: the state-oracle's ``field`` recipe (reach): states along the straight joint-space line
from home to the expert's goal pose and around it (joint noise: DART-style states off the path),
each labelled by the feedback expert from that state, so the labels cover where a closed loop
goes; the layout's views are rendered with the arm put at that state (``SimWorld.set_arm_pose``),
with the evaluator's randomisation (textures, lights, colours, distractors, camera jitter).

Model: per view a small GroupNorm CNN ending in spatial-softmax keypoints (positions, not
pooled features), concatenated with the words and the normalised state, an MLP to the chunk as
an offset from the state. Random crops (render 104 px, crop 96) in training and the centre crop
at run time; EMA weights are exported.

Training seeds start at 100000, validation 50000, eval-sim's held-out seeds at 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

TRAIN_SEED0 = 100000
VALID_SEED0 = 50000


@dataclass
class VisionConfig:
    robot: str = "fr3"
    task: str = "reach"
    layouts: int = 800  # training layouts (seeds TRAIN_SEED0 ...)
    on_path: int = 16  # samples per layout near the path (0.02 rad noise)
    perturbed: int = 8  # samples per layout with joint_noise_rad (DART)
    joint_noise_rad: float = 0.15
    near_goal: float = 0.0  # share of the samples drawn on the last 40 % of the path
    shadows: bool = False  # render with shadow maps (a depth cue; ~3x the render cost)
    steps: int = 6000
    batch: int = 64
    lr: float = 1e-3
    keypoints: int = 16  # spatial-softmax keypoints per view
    hidden: int = 256
    ema: float = 0.999
    eval_every: int = 2000
    eval_episodes: int = 20
    workers: int = 2  # processes rendering the data
    seed: int = 0
    out: str = "runs/vision_reach"
    model: str = "models/default"  # the bundle whose chunk shape and cores the policy uses


def _layout_samples(args) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """Views, states and labels of a range of layouts (one worker's share)."""
    cfg_d, k0, k1, steps, show = args
    cfg = VisionConfig(**cfg_d)
    from clap_ros.eval.vision_policy import RENDER_PX, VIEWS, ViewRenderer
    from clap_ros.sim.expert import ArmExpert, field_chunk
    from clap_ros.sim.world import SimWorld

    world = SimWorld(cfg.robot, cfg.task, seed=TRAIN_SEED0 + k0, wrist_camera=True)
    views = ViewRenderer(world, VIEWS, RENDER_PX, cfg.shadows)
    prof = world.profile
    assert prof is not None
    lim = prof.limits
    rng = np.random.default_rng([cfg.seed, k0])
    imgs, states, chunks, texts = [], [], [], []
    it = range(k0, k1)
    if show:
        from tqdm import tqdm

        it = tqdm(
            it, desc="vision data %s %s (worker 0 of %d)" % (cfg.robot, cfg.task, cfg.workers)
        )
    for k in it:
        world.reset(TRAIN_SEED0 + k)
        plan = ArmExpert(world).plan()
        goal, _, g = plan.sample(plan.duration)
        g = float(g)
        for j in range(cfg.on_path + cfg.perturbed):
            a = rng.uniform(0.7, 1.1) if rng.random() < cfg.near_goal else rng.uniform(-0.05, 1.1)
            noise = cfg.joint_noise_rad if j >= cfg.on_path else 0.02
            q = prof.home + a * (goal - prof.home) + rng.normal(0, noise, prof.dof)
            q = np.clip(q, lim.lower, lim.upper)
            world.set_arm_pose(q)
            imgs.append(views.render())
            qs = field_chunk(q, goal, lim.velocity, steps.shape[0], float(steps[1]))
            states.append(np.concatenate([q, [g]]))
            chunks.append(np.hstack([qs, np.full((len(qs), 1), g)]))
            texts.append(world.instruction)
    views.close()
    world.close()
    return (
        np.stack(imgs),
        np.asarray(states, np.float32),
        np.asarray(chunks, np.float32),
        texts,
    )


def build_samples(cfg: VisionConfig, progress: bool = True):
    """(views [N, V, R, R, 3] uint8, states [N, S], chunks [N, H, A], instructions)."""
    from clap_ros.eval.oracle_policy import FIELD_TASKS
    from clap_ros.inference.bundle import load_bundle

    if cfg.task not in FIELD_TASKS:
        raise ValueError("the vision rung's labels need a feedback expert: %s" % FIELD_TASKS)
    b = load_bundle(cfg.model)
    steps = np.arange(b.chunk_length) * b.chunk_dt_s
    n = max(1, cfg.workers)
    edges = np.linspace(0, cfg.layouts, n + 1).astype(int)
    jobs = [
        (asdict(cfg), int(edges[i]), int(edges[i + 1]), steps, progress and i == 0)
        for i in range(n)
    ]
    if n == 1:
        parts = [_layout_samples(jobs[0])]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(n) as pool:
            parts = pool.map(_layout_samples, jobs)
    imgs = np.concatenate([p[0] for p in parts])
    states = np.concatenate([p[1] for p in parts])
    chunks = np.concatenate([p[2] for p in parts])
    texts = [t for p in parts for t in p[3]]
    return imgs, states, chunks, texts


def make_net(V: int, W: int, S: int, H: int, A: int, cfg: VisionConfig, stats: Dict):
    import torch
    from torch import nn

    from clap_ros.eval.vision_policy import INPUT_PX

    def gn(c):
        return nn.GroupNorm(max(1, c // 8), c)

    class Stem(nn.Module):
        """One view -> K keypoints (x, y) by spatial softmax."""

        def __init__(self, k: int):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, 16, 5, stride=2, padding=2),
                gn(16),
                nn.GELU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                gn(32),
                nn.GELU(),
                nn.Conv2d(32, 32, 3, padding=1),
                gn(32),
                nn.GELU(),
                nn.Conv2d(32, k, 1),
            )
            # expected (x, y) over the feature map (input_px / 4 square), as matmuls: the
            # exporter turns reductions with broadcasting into float64 casts ORT cannot run
            side = INPUT_PX // 4
            lin = torch.linspace(-1.0, 1.0, side, dtype=torch.float32)
            gy, gx = torch.meshgrid(lin, lin, indexing="ij")
            self.register_buffer("grid", torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1))

        def forward(self, x):
            f = self.net(x - 0.5)
            b, k = f.shape[0], f.shape[1]
            p = torch.softmax(f.reshape(b, k, -1), dim=-1)
            return torch.matmul(p, self.grid).reshape(b, 2 * k)

    class VisionNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stems = nn.ModuleList([Stem(cfg.keypoints) for _ in range(V)])
            self.register_buffer("st_mu", torch.tensor(stats["st_mu"]))
            self.register_buffer("st_sd", torch.tensor(stats["st_sd"]))
            self.register_buffer("d_sd", torch.tensor(stats["d_sd"]))
            d_in = V * 2 * cfg.keypoints + W + S
            hdn = cfg.hidden
            self.head = nn.Sequential(
                nn.Linear(d_in, hdn),
                nn.GELU(),
                nn.Linear(hdn, hdn),
                nn.GELU(),
                nn.Linear(hdn, hdn),
                nn.GELU(),
                nn.Linear(hdn, H * A),
            )
            self.H, self.A = H, A

        def forward(self, images, words, state):
            kps = [stem(images[:, i]) for i, stem in enumerate(self.stems)]
            x = torch.cat(kps + [words, (state - self.st_mu) / self.st_sd], dim=-1)
            d = self.head(x).view(-1, self.H, self.A) * self.d_sd
            return state[:, None, :] + d

    return VisionNet()


def export_onnx(net, contract: Dict, V: int, W: int, S: int, path: Path) -> None:
    import onnx
    import torch

    from clap_ros.eval.vision_policy import INPUT_PX

    net.eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, V, 3, INPUT_PX, INPUT_PX), torch.zeros(1, W), torch.zeros(1, S)),
        str(path),
        input_names=["images", "words", "state"],
        output_names=["chunk"],
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(path))
    entry = m.metadata_props.add()
    entry.key = "clap_vision"
    entry.value = json.dumps(contract)
    onnx.save(m, str(path))


def closed_loop(cfg: VisionConfig, onnx_path: Path, seed0: int, episodes: int) -> Dict:
    """Success and median progress of the policy in eval-sim --mode direct."""
    from .closed_loop import success_on

    return success_on(cfg.robot, cfg.task, cfg.model, "vision:%s" % onnx_path, seed0, episodes)


def draw_curve(history: List[Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    st = [h["step"] for h in history if "closed_loop" in h]
    sr = [
        h["closed_loop"]["success"] / max(1, h["closed_loop"]["episodes"])
        for h in history
        if "closed_loop" in h
    ]
    ax.plot(st, [100 * s for s in sr], "o-", color="tab:green", label="closed-loop success")
    ax.set_xlabel("step")
    ax.set_ylabel("validation success (%)")
    ax.set_ylim(-5, 105)
    ax2 = ax.twinx()
    ax2.semilogy(
        [h["step"] for h in history],
        [h["val_loss"] for h in history],
        "s--",
        color="tab:gray",
        label="val loss",
    )
    ax2.set_ylabel("offline val loss (not used to choose)")
    ax.set_title("vision rung: success is the selection metric")
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def train(cfg: VisionConfig, progress: bool = True) -> Dict:
    import copy

    import torch

    from clap_ros.eval.vision_policy import INPUT_PX, RENDER_PX, VIEWS, words_of

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    imgs, st, ch, texts = build_samples(cfg, progress)
    t_data = time.time() - t0
    vocab = sorted({w for t in set(texts) for w in words_of(t)})
    from clap_ros.eval.vision_policy import bag_of_words

    words = np.stack([bag_of_words(t, vocab) for t in texts])
    n, V = imgs.shape[0], imgs.shape[1]
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_val = max(1, n // 20)
    val, tr = perm[:n_val], perm[n_val:]
    d = ch[tr] - st[tr][:, None, :]
    stats = {
        "st_mu": st[tr].mean(0).tolist(),
        "st_sd": (st[tr].std(0) + 1e-3).tolist(),
        "d_sd": (d.reshape(-1, d.shape[-1]).std(0) + 1e-3).tolist(),
    }
    H, A, S, W = ch.shape[1], ch.shape[2], st.shape[1], words.shape[1]
    net = make_net(V, W, S, H, A, cfg, stats)
    ema = copy.deepcopy(net)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    warm = max(1, min(200, cfg.steps // 20))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / cfg.steps)))
        ),
    )
    Im = torch.from_numpy(imgs)  # uint8 [N, V, R, R, 3]
    Wd, St, Ch = (torch.from_numpy(x) for x in (words, st, ch))
    w = torch.tensor(stats["d_sd"])
    margin = RENDER_PX - INPUT_PX
    contract = {
        "views": list(VIEWS),
        "render_px": RENDER_PX,
        "input_px": INPUT_PX,
        "vocab": vocab,
        "shadows": cfg.shadows,
        "robot": cfg.robot,
        "task": cfg.task,
    }
    rng = np.random.default_rng(cfg.seed + 1)

    def batch_images(idx: np.ndarray, random_crop: bool) -> "torch.Tensor":
        x = Im[torch.from_numpy(idx)]
        if random_crop:
            oy = rng.integers(0, margin + 1, len(idx))
            ox = rng.integers(0, margin + 1, len(idx))
            x = torch.stack(
                [
                    x[i, :, y : y + INPUT_PX, z : z + INPUT_PX]
                    for i, (y, z) in enumerate(zip(oy, ox))
                ]
            )
        else:
            c = margin // 2
            x = x[:, :, c : c + INPUT_PX, c : c + INPUT_PX]
        return x.permute(0, 1, 4, 2, 3).float() / 255.0

    history: List[Dict] = []
    best: Optional[Tuple[int, float, int]] = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="vision training")
    t_train = time.time()
    for step in range(1, cfg.steps + 1):
        idx = rng.choice(tr, cfg.batch)
        ti = torch.from_numpy(idx)
        pred = net(batch_images(idx, True), Wd[ti], St[ti])
        loss = (((pred - Ch[ti]) / w) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1.0 + step) / (10.0 + step))
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.mul_(decay).add_(pn.detach(), alpha=1.0 - decay)
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss="%.4f" % float(loss.detach()))
        due = cfg.eval_every and step % cfg.eval_every == 0
        if due or step == cfg.steps:
            with torch.no_grad():
                ema.eval()
                vl = []
                for s0 in range(0, len(val), 256):
                    vi = val[s0 : s0 + 256]
                    tv = torch.from_numpy(vi)
                    pv = ema(batch_images(vi, False), Wd[tv], St[tv])
                    vl.append(float((((pv - Ch[tv]) / w) ** 2).mean()) * len(vi))
                vloss = sum(vl) / len(val)
            path = out / ("vision_step%d.onnx" % step)
            export_onnx(ema, contract, V, W, S, path)
            entry = {"step": step, "train_loss": float(loss.detach()), "val_loss": vloss}
            if cfg.eval_episodes > 0:
                entry["closed_loop"] = cl = closed_loop(cfg, path, VALID_SEED0, cfg.eval_episodes)
                key = (cl["success"], cl["median_progress"])
                if best is None or key > best[:2]:
                    best = (key[0], key[1], step)
            history.append(entry)
            msg = "step %d: loss %.4f, val %.4f" % (step, float(loss.detach()), vloss)
            if "closed_loop" in entry:
                c = entry["closed_loop"]
                msg += ", closed loop %d/%d (progress %.0f %%, closest %.3f m)" % (
                    c["success"],
                    c["episodes"],
                    100 * c["median_progress"],
                    c["median_closest_m"],
                )
            (bar.write if bar is not None else print)(msg)
            draw_curve(history, out / "curve.png")
            (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    if bar is not None:
        bar.close()
    chosen = best[2] if best is not None else cfg.steps
    final = out / "vision.onnx"
    final.write_bytes((out / ("vision_step%d.onnx" % chosen)).read_bytes())
    summary = {
        "config": asdict(cfg),
        "samples": int(n),
        "history": history,
        "chosen_step": chosen,
        "chosen_by": "closed-loop success on validation seeds"
        if best is not None
        else "last step (no closed-loop validation)",
        "onnx": str(final),
        "data_seconds": t_data,
        "train_seconds": time.time() - t_train,
        "seconds": time.time() - t0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


OPTION_HELP = {
    "robot": "robot profile",
    "task": "sim task (the feedback-expert labels exist for reach)",
    "layouts": "training layouts, seeds %d.." % TRAIN_SEED0,
    "on_path": "samples per layout near the home -> goal line",
    "perturbed": "samples per layout with joint noise (DART)",
    "joint_noise_rad": "std of that joint noise, rad",
    "near_goal": "share of the samples on the last 40 %% of the home -> goal line (the approach)",
    "shadows": "render with shadow maps (a depth cue, ~3x slower rendering; the policy keeps it)",
    "steps": "optimiser steps",
    "batch": "batch size",
    "lr": "AdamW peak learning rate (warm-up, cosine decay)",
    "keypoints": "spatial-softmax keypoints per view",
    "hidden": "width of the head's 3 hidden layers",
    "ema": "EMA decay of the exported weights",
    "eval_every": "closed-loop validation every so many steps (0: at the end only)",
    "eval_episodes": "validation episodes, seeds %d.. (0: none; then the last step ships)"
    % VALID_SEED0,
    "workers": "processes rendering the data",
    "seed": "data and training seed",
    "out": "run folder: vision_step<N>.onnx, vision.onnx (the chosen one), curve.png, summary.json",
    "model": "bundle whose chunk shape and action space the policy takes",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "vision",
        help="the diagnostic ladder's rung (c): image policy without the planner (ONNX)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, val in asdict(VisionConfig()).items():
        flag = "--" + name.replace("_", "-")
        text = OPTION_HELP.get(name, "") + " (default %(default)s)"
        if isinstance(val, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=val, help=text)
        else:
            p.add_argument(flag, type=type(val), default=val, help=text)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    cfg = VisionConfig(**{k: getattr(args, k) for k in asdict(VisionConfig())})
    try:
        s = train(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print("clap-train vision: error: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps({k: s[k] for k in ("samples", "chosen_step", "onnx", "seconds")}))
    return 0
