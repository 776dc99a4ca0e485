"""The state-oracle rung of the diagnostic ladder (issue 14): learning without perception.

``clap-train oracle --task reach`` learns  (object positions, measured state) -> absolute joint
chunk  from the scripted expert, exports it to ONNX (inputs ``obs [1, F]``, ``state [1, S]``;
output ``chunk [1, H, A]``, the bundle's chunk shape and action space) and, when asked, selects
the checkpoint by closed-loop success in ``clap-ros eval-sim --mode direct --policy
oracle:<onnx>`` on validation seeds (never by the loss).

Data (``--data``):

* ``plan`` (any task; no rendering, no physics): on-path samples of the expert's plan from home
  at the chunk rate, labelled with the plan at the chunk's step times, and DART-style samples:
  the state perturbed off the path (joint noise, gripper noise), labelled by the expert's own
  motion from there on with the offset decaying to zero within CORRECTION_S;
* ``field`` (the default, reach): states around the straight joint-space path labelled by the
  feedback expert (``clap_ros.sim.expert.field_chunk``), a function of the state alone;
docs/LADDER.md has what each gave closed loop.

Training seeds start at 100000 (eval-sim's held-out seeds are 0, 1, ...); validation seeds for
checkpoint selection at 50000.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

TRAIN_SEED0 = 100000
VALID_SEED0 = 50000
CORRECTION_S = 0.5  # how fast a DART label brings a perturbed state back onto the path


def _smoothstep(u: np.ndarray) -> np.ndarray:
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


@dataclass
class OracleConfig:
    robot: str = "fr3"
    task: str = "reach"
    layouts: int = 600  # training layouts (seeds TRAIN_SEED0 ...)
    perturbed_per_layout: int = 12  # DART samples per layout ("plan" data)
    joint_noise_rad: float = 0.15  # std of the joint perturbation
    # "plan": states read off the expert's plan (any task)
    # "field": states around the straight joint-space path, labelled by the feedback expert
    # (clap_ros.sim.expert.field_chunk; reach), the default where it exists
    data: str = "field"
    steps: int = 5000
    batch: int = 512
    lr: float = 1e-3
    hidden: int = 256
    eval_every: int = 2500  # closed-loop validation every so many steps (0: only at the end)
    eval_episodes: int = 20  # validation episodes (seeds VALID_SEED0 ...)
    seed: int = 0
    out: str = "runs/oracle_reach"
    model: str = "models/default"  # the bundle whose shapes the chunk takes


def _expert_layouts(cfg: OracleConfig, progress: bool):
    """(bundle chunk steps, profile, rng, and per training layout: object features, the
    expert's plan from home)."""
    from clap_ros.eval.oracle_policy import oracle_features
    from clap_ros.inference.bundle import load_bundle
    from clap_ros.sim.driver_core import SimDriverCore, SimDriverParams
    from clap_ros.sim.expert import ArmExpert

    b = load_bundle(cfg.model)
    core = SimDriverCore(
        SimDriverParams(
            robot=cfg.robot,
            task=cfg.task,
            seed=TRAIN_SEED0,
            real_time_factor=0.0,
            use_sim_time=True,
            camera_rate_hz=0.0,
        ).validate()
    )

    def layouts():
        it = range(cfg.layouts)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="oracle data (%s) %s %s" % (cfg.data, cfg.robot, cfg.task))
        for k in it:
            core.reset(TRAIN_SEED0 + k)
            yield oracle_features(core.world), ArmExpert(core.world).plan()

    steps = np.arange(b.chunk_length) * b.chunk_dt_s
    return steps, core.profile, np.random.default_rng(cfg.seed), layouts()


def build_samples(cfg: OracleConfig, progress: bool = True):
    """(obs [N, F], state [N, S], chunk [N, H, A]), data "plan": states read off the expert's
    plan, labelled with the plan from there; DART samples off it, labelled with the plan's own
    motion and the offset decaying to zero over CORRECTION_S (not a replan from rest)."""
    steps, prof, rng, layouts = _expert_layouts(cfg, progress)
    lim = prof.limits
    out: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    w = 1.0 - _smoothstep(np.minimum(steps / CORRECTION_S, 1.0))
    for feat, plan in layouts:
        samples = [(tau, 0.0) for tau in np.arange(0.0, plan.duration + 0.5, steps[1])]
        taus = rng.uniform(0.0, plan.duration + 0.5, cfg.perturbed_per_layout)
        samples += [(float(tau), 1.0) for tau in taus]
        for tau, noisy in samples:
            q0, _, g0 = plan.sample(tau)
            q = np.clip(
                q0 + noisy * rng.normal(0.0, cfg.joint_noise_rad, prof.dof), lim.lower, lim.upper
            )
            g = float(np.clip(g0 + noisy * rng.normal(0.0, 0.1), 0.0, 1.0))
            qs, _, gs = plan.sample_many(tau + steps)
            chunk = np.hstack([qs, np.asarray(gs)[:, None]])
            chunk += np.concatenate([q - q0, [g - g0]])[None, :] * w[:, None]
            out.append((feat, np.concatenate([q, [g]]), chunk))
    return _arrays(out)


def build_field_samples(cfg: OracleConfig, progress: bool = True):
    """Data "field" (reach): states along the straight joint-space line from home to the goal
    pose (and a little past it), with joint noise, each labelled by the feedback expert's chunk
    from that state (a function of the state: DAgger-style relabelling for free)."""
    from clap_ros.eval.oracle_policy import FIELD_TASKS
    from clap_ros.sim.expert import field_chunk

    if cfg.task not in FIELD_TASKS:
        raise ValueError("data=field needs a feedback expert: tasks %s" % ", ".join(FIELD_TASKS))
    steps, prof, rng, layouts = _expert_layouts(cfg, progress)
    lim = prof.limits
    out: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for feat, plan in layouts:
        goal, _, g = plan.sample(plan.duration)
        for j in range(30 + cfg.perturbed_per_layout):
            a = rng.uniform(-0.05, 1.1)
            noise = cfg.joint_noise_rad if j >= 30 else 0.02
            q = prof.home + a * (goal - prof.home) + rng.normal(0, noise, prof.dof)
            q = np.clip(q, lim.lower, lim.upper)
            qs = field_chunk(q, goal, lim.velocity, steps.shape[0], float(steps[1]))
            out.append((feat, np.concatenate([q, [g]]), np.hstack([qs, np.full((len(qs), 1), g)])))
    return _arrays(out)


def _arrays(samples):
    obs, states, chunks = zip(*samples)
    return tuple(np.asarray(x, np.float32) for x in (obs, states, chunks))


def make_net(feat_dim: int, state_dim: int, H: int, A: int, hidden: int, stats: Dict):
    import torch
    from torch import nn

    class OracleNet(nn.Module):
        """Normalised inputs -> chunk as an offset from the measured state (absolute out)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("obs_mu", torch.tensor(stats["obs_mu"]))
            self.register_buffer("obs_sd", torch.tensor(stats["obs_sd"]))
            self.register_buffer("st_mu", torch.tensor(stats["st_mu"]))
            self.register_buffer("st_sd", torch.tensor(stats["st_sd"]))
            self.register_buffer("d_sd", torch.tensor(stats["d_sd"]))
            self.net = nn.Sequential(
                nn.Linear(feat_dim + state_dim, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, H * A),
            )
            self.H, self.A = H, A

        def forward(self, obs, state):
            x = torch.cat(
                [(obs - self.obs_mu) / self.obs_sd, (state - self.st_mu) / self.st_sd], dim=-1
            )
            d = self.net(x).view(-1, self.H, self.A) * self.d_sd
            return state[:, None, :] + d

    return OracleNet()


def _stats(obs, st, ch) -> Dict:
    d = ch - st[:, None, :]
    return {
        "obs_mu": obs.mean(0).tolist(),
        "obs_sd": (obs.std(0) + 1e-3).tolist(),
        "st_mu": st.mean(0).tolist(),
        "st_sd": (st.std(0) + 1e-3).tolist(),
        "d_sd": (d.reshape(-1, d.shape[-1]).std(0) + 1e-3).tolist(),
    }


def export_onnx(net, feat_dim: int, state_dim: int, path: Path) -> None:
    import torch

    net.eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, feat_dim), torch.zeros(1, state_dim)),
        str(path),
        input_names=["obs", "state"],
        output_names=["chunk"],
        opset_version=17,
        dynamo=False,
    )


def closed_loop(cfg: OracleConfig, onnx_path: Path, seed0: int, episodes: int) -> Dict:
    """Success and median progress of the policy in eval-sim --mode direct."""
    from .closed_loop import success_on

    return success_on(cfg.robot, cfg.task, cfg.model, "oracle:%s" % onnx_path, seed0, episodes)


def train(cfg: OracleConfig, progress: bool = True) -> Dict:
    import torch

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    builders = {
        "field": build_field_samples,
        "plan": build_samples,
    }
    if cfg.data not in builders:
        raise ValueError("data must be one of %s, not %r" % (", ".join(builders), cfg.data))
    build = builders[cfg.data]
    obs, st, ch = build(cfg, progress)
    n = obs.shape[0]
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_val = max(1, n // 20)
    val, tr = perm[:n_val], perm[n_val:]
    stats = _stats(obs[tr], st[tr], ch[tr])
    H, A = ch.shape[1], ch.shape[2]
    net = make_net(obs.shape[1], st.shape[1], H, A, cfg.hidden, stats)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    Ob, S, C = (torch.from_numpy(x) for x in (obs, st, ch))
    w = torch.tensor(stats["d_sd"])
    history: List[Dict] = []
    best: Optional[Tuple[int, float, int]] = None  # (success, progress, step)
    rng = np.random.default_rng(cfg.seed + 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="oracle training")
    for step in range(1, cfg.steps + 1):
        idx = torch.from_numpy(rng.choice(tr, cfg.batch))
        pred = net(Ob[idx], S[idx])
        loss = (((pred - C[idx]) / w) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
            if step % 100 == 0:
                bar.set_postfix(loss="%.4f" % float(loss.detach()))
        due = cfg.eval_every and step % cfg.eval_every == 0
        if due or step == cfg.steps:
            with torch.no_grad():
                vi = torch.from_numpy(val)
                vloss = float((((net(Ob[vi], S[vi]) - C[vi]) / w) ** 2).mean())
            path = out / ("oracle_step%d.onnx" % step)
            export_onnx(net, obs.shape[1], st.shape[1], path)
            net.train()
            entry = {"step": step, "train_loss": float(loss.detach()), "val_loss": vloss}
            if cfg.eval_episodes > 0:
                entry["closed_loop"] = cl = closed_loop(cfg, path, VALID_SEED0, cfg.eval_episodes)
                key = (cl["success"], cl["median_progress"], step)
                if best is None or key[:2] > best[:2]:
                    best = (key[0], key[1], step)
            history.append(entry)
            msg = "step %d: loss %.4f, val %.4f" % (step, float(loss.detach()), vloss)
            if "closed_loop" in entry:
                msg += ", closed loop %d/%d (progress %.0f %%)" % (
                    entry["closed_loop"]["success"],
                    entry["closed_loop"]["episodes"],
                    100 * entry["closed_loop"]["median_progress"],
                )
            (bar.write if bar is not None else print)(msg)
    if bar is not None:
        bar.close()
    chosen = best[2] if best is not None else cfg.steps
    final = out / "oracle.onnx"
    final.write_bytes((out / ("oracle_step%d.onnx" % chosen)).read_bytes())
    summary = {
        "config": asdict(cfg),
        "samples": int(n),
        "history": history,
        "chosen_step": chosen,
        "chosen_by": "closed-loop success on validation seeds"
        if best is not None
        else "last step (no closed-loop validation)",
        "onnx": str(final),
        "seconds": time.time() - t0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


OPTION_HELP = {
    "robot": "robot profile",
    "task": "sim task (data field: reach only)",
    "layouts": "training layouts, seeds %d.." % TRAIN_SEED0,
    "perturbed_per_layout": "samples per layout with joint noise (DART)",
    "joint_noise_rad": "std of that joint noise, rad",
    "data": "labels: field (the feedback expert, reach) or plan (the expert's time-indexed plan)",
    "steps": "optimiser steps",
    "batch": "batch size",
    "lr": "AdamW learning rate (cosine decay)",
    "hidden": "width of the MLP's 3 hidden layers",
    "eval_every": "closed-loop validation every so many steps (0: at the end only)",
    "eval_episodes": "validation episodes, seeds %d.. (0: none; then the last step ships)"
    % VALID_SEED0,
    "seed": "data and training seed",
    "out": "run folder: oracle_step<N>.onnx, oracle.onnx (the chosen one), summary.json",
    "model": "bundle whose chunk shape and action space the oracle takes",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "oracle",
        help="the diagnostic ladder's state-oracle: object positions + state -> chunk (ONNX)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = OracleConfig()
    for name, val in asdict(d).items():
        flag = "--" + name.replace("_", "-")
        text = OPTION_HELP.get(name, "")
        p.add_argument(flag, type=type(val), default=val, help=text + " (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    kw = {k: getattr(args, k) for k in asdict(OracleConfig())}
    cfg = OracleConfig(**kw)
    try:
        s = train(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print("clap-train oracle: error: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps({k: s[k] for k in ("samples", "chosen_step", "onnx", "seconds")}))
    return 0
