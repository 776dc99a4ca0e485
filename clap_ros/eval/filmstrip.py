"""``clap-ros filmstrip``: watch one closed-loop episode as a grid of frames.

Runs one episode through the direct evaluator (``eval-sim --mode direct``: the same cores, rates
and driver) and keeps, every ``--every`` seconds of sim time, the chosen camera views at the size
a model sees them, labelled with the time and the distance to the goal. One row per view, one
column per time; the episode's outcome in the file name's sidecar JSON. Most closed-loop
failures are visible here: a target out of view, an arm that stalls, a gripper that never closes.

  clap-ros filmstrip --policy model --task reach --seed 0 --out film.png
  clap-ros filmstrip --policy vision:runs/vision_reach/vision.onnx --views workspace,wrist
  clap-ros filmstrip --policy expert --task pick_place --views scene,workspace,wrist --px 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def label(img: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(img.copy())
    scale = max(0.3, img.shape[0] / 320.0)
    for i, text in enumerate(lines):
        y = int((i + 1) * 12 * scale * 2.2)
        cv2.putText(out, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3)
        cv2.putText(out, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return out


def grid(frames: List[Dict], views: Sequence[str], pad: int = 2) -> np.ndarray:
    """frames: [{"t": s, "d": m, "views": [V, px, px, 3]}] -> one RGB image."""
    rows = []
    for v, name in enumerate(views):
        tiles = []
        for f in frames:
            lines = ["%s t=%.1fs" % (name, f["t"])] if v == 0 else [name]
            if v == 0 and f.get("d") is not None:
                lines.append("d=%.3fm" % f["d"])
            tiles.append(np.pad(label(f["views"][v], lines), ((pad, pad), (pad, pad), (0, 0))))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def record(cfg, task: str, seed: int, views: Sequence[str], px: int, every_s: float):
    """(outcome, frames) of one episode."""
    from clap_ros.eval.direct_eval import DirectEpisodes
    from clap_ros.eval.vision_policy import ViewRenderer

    eps = DirectEpisodes(cfg)
    eps.wrist_camera = "wrist" in views
    frames: List[Dict] = []
    state: Dict = {"renderer": None, "next": 0.0, "t0": None}

    def on_camera(world, t: float) -> None:
        if state["t0"] is None:
            state["t0"] = t
        if t + 1e-9 < state["next"]:
            return
        if state["renderer"] is None:
            state["renderer"] = ViewRenderer(world, views, px)
        state["renderer"].bind(world)
        frames.append(
            {
                "t": t - state["t0"],
                "d": float(world.goal_distance()),
                "views": state["renderer"].render(),
            }
        )
        state["next"] = t + every_s

    eps.on_camera = on_camera
    out = eps.run(task, seed)
    if state["renderer"] is not None:
        state["renderer"].close()
    return out, frames


def register(sub) -> None:
    p = sub.add_parser(
        "filmstrip",
        help="one closed-loop episode (direct mode) as a grid of camera frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--robot", default="fr3", help="robot profile (default fr3)")
    p.add_argument("--task", default="reach", help="sim task (default reach)")
    p.add_argument("--seed", type=int, default=0, help="layout seed (default 0: held out)")
    p.add_argument(
        "--policy",
        default="model",
        help="as eval-sim --policy: model, expert, oracle-*, oracle:F.onnx, vision:F.onnx",
    )
    p.add_argument("--model", default="models/default", help="bundle (default models/default)")
    p.add_argument(
        "--views",
        default="workspace,wrist",
        help="comma-separated cameras: scene, workspace, wrist (default workspace,wrist)",
    )
    p.add_argument("--px", type=int, default=96, help="tile size in pixels (default 96)")
    p.add_argument(
        "--every", type=float, default=1.0, help="seconds of sim time between columns (default 1)"
    )
    p.add_argument("--no-randomize", action="store_true", help="plain textures and lights")
    p.add_argument("--out", default="filmstrip.png", help="PNG to write (default filmstrip.png)")
    p.set_defaults(func=main)


def main(args) -> int:
    import cv2

    from clap_ros.eval.sim_results import EvalConfig

    views = [v.strip() for v in args.views.split(",") if v.strip()]
    if not views or not (16 <= args.px <= 512) or args.every <= 0:
        print(
            "clap-ros filmstrip: error: need views, 16 <= --px <= 512, --every > 0", file=sys.stderr
        )
        return 2
    cfg = EvalConfig(
        robot=args.robot,
        tasks=(args.task,),
        episodes=1,
        seed=args.seed,
        model=args.model,
        policy=args.policy,
        mode="direct",
        progress=False,
        randomize=not args.no_randomize,
    )
    try:
        cfg.validate()
    except ValueError as e:
        print("clap-ros filmstrip: error: %s" % e, file=sys.stderr)
        return 2
    out, frames = record(cfg, args.task, args.seed, views, args.px, args.every)
    if out.error:
        print("clap-ros filmstrip: the episode failed to run: %s" % out.error, file=sys.stderr)
    if not frames:
        print("clap-ros filmstrip: error: no camera frame was taken", file=sys.stderr)
        return 1
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid(frames, views), cv2.COLOR_RGB2BGR))
    meta = {
        "policy": args.policy,
        "robot": args.robot,
        "task": args.task,
        "seed": args.seed,
        "success": out.success,
        "time_to_success_s": out.time_to_success_s,
        "goal_distance_start_m": out.goal_distance_start_m,
        "goal_distance_min_m": out.goal_distance_min_m,
        "error": out.error,
        "frames": len(frames),
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(
        "%s: %s %s seed %d, %s (closest %.3f m), %d columns"
        % (
            path,
            args.policy,
            args.task,
            args.seed,
            "success" if out.success else "no success",
            out.goal_distance_min_m if out.goal_distance_min_m is not None else float("nan"),
            len(frames),
        )
    )
    return 0
