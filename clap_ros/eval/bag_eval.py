"""``clap-ros eval-bag``: replay recorded bags through the CLAP stack and score it against them.

Open-loop evaluation: the policy sees the operator's camera frames and joint states, exactly as
recorded, and its commands go nowhere (no arm moves); they are compared with what the operator
commanded at the same times. Two ways to run the stack:

* ``offline`` (default): no ROS. The bag's messages are fed into a
  ``clap_ros.runtime.virtual_stack.VirtualStack``: the very cores the three nodes run (encoder,
  planner, action controller) on a virtual clock = the bag's log time, with the nodes'
  parameters (``clap_ros.eval.bag_data.stack_params``). Each model call takes its measured wall
  time on the virtual clock (or ``--latency-ms``), so latencies are those of this machine without
  the scheduling noise of separate processes. This module only feeds the bag and collects.
* ``ros``: encoder_node, planner_node and action_node run as separate processes on sim time with
  the same parameters; a player (``clap_ros.eval.bag_player``) publishes ``/clock`` and the bag's
  inputs at the recorded pace (``--rate``) and records everything the stack publishes into a new
  MCAP bag.

Both end in the same ``Replay`` record, scored by ``clap_ros.eval.bag_metrics`` and written as
``metrics.json`` + a self-contained ``report.html`` (``clap_ros.eval.report``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from clap_ros.data.bags import BagError
from clap_ros.eval.bag_data import (  # noqa: F401  (re-exported)
    COMMAND_MODES,
    MODES,
    REPLAY_TRACKING_TOLERANCE_RAD,
    STAMP_CLOCK_TOLERANCE_S,
    BagData,
    BagEvalConfig,
    BagEvalError,
    Replay,
    command_mode,
    counts_from_diagnostics,
    decode_image,
    hdr_ns,
    read_bag,
    resolve_topics,
    stack_params,
    stamp_s,
)

METRIC_GRID_HZ = 100.0  # commanded vs reference trajectories are compared on this grid


def _traj_msg(tr) -> Any:
    from clap_ros.data.bags import joint_trajectory_msg

    return joint_trajectory_msg(
        tr.joint_names,
        [p[0] for p in tr.points],
        np.array([p[1] for p in tr.points]),
        np.array([p[2] for p in tr.points]),
    )


def replay_offline(data: BagData, runtime, profile, cfg: BagEvalConfig) -> Replay:
    """Feed the bag into a VirtualStack (the nodes' cores on the bag's log clock) and collect
    what it commanded. Nothing here decides anything: the stack runs the cores with the
    parameters ``stack_params`` gives (the nodes' schemas, filled for a replay)."""
    from clap_ros.data.bags import BagReader
    from clap_ros.runtime.virtual_stack import ARM, GRIPPER, TRAJECTORY, VirtualStack

    sp = stack_params(cfg, data, profile)
    stack = VirtualStack(profile, runtime, sp, latency_ms=cfg.latency_ms)
    rep = Replay(
        mode="offline",
        command_mode=sp.action.command_mode,
        latency_source="exact: camera frame stamp -> first command from its chunk",
    )
    tp = data.topics
    t_first = data.start_ns * 1e-9
    t_end = data.end_ns * 1e-9

    def collect(outs) -> None:
        for o in outs:
            t_ns = int(round(o.t * 1e9))
            if o.kind == TRAJECTORY:
                rep.arm.append((t_ns, "traj", _traj_msg(o.value)))
            elif o.kind == ARM:
                rep.arm.append((t_ns, "fwd", o.value))
            elif o.kind == GRIPPER:
                rep.gripper.append((t_ns, float(o.value)))

    wall0 = time.perf_counter()
    stack.start(t_first)
    instr_topic = tp.instruction if data.instruction_source == "topic" else None
    if instr_topic is None:
        # not on the bag's topic (override / outcome): known from the start
        stack.on_instruction(data.instructions[0][1], t_first)
    topics_b = (
        [tp.camera, tp.joint_states]
        + ([tp.camera_info] if data.has_camera_info else [])
        + ([instr_topic] if instr_topic else [])
    )
    bar = _bar(cfg, len(data.image_t), "offline %s" % data.path.name)
    with BagReader(data.path) as r:
        for topic, msgtype, ts, msg in r.messages(topics_b):
            t = ts * 1e-9
            collect(stack.advance_to(t))
            if topic == tp.camera:
                bar.update(1)
                stack.on_frame(decode_image(msg, msgtype), stamp_s(hdr_ns(msg), ts), t)
            elif topic == tp.camera_info:
                stack.on_camera_info(msg, t)
            elif topic == tp.joint_states:
                stack.on_joint_state(
                    list(msg.name), list(msg.position), stamp_s(hdr_ns(msg), ts), t
                )
            elif topic == instr_topic:
                stack.on_instruction(str(msg.data), t)
    collect(stack.advance_to(t_end))
    bar.close()
    rep.wall_s = time.perf_counter() - wall0
    rec = stack.record
    rep.latents, rep.plans = rec.latents, rec.plans
    rep.latency_s = list(rec.frame_to_command_s)
    rep.rf_chunks = list(rec.rf_chunks)
    rep.stops = [(t - t_first, reason) for t, reason in rec.stops]
    d = stack.action.diagnostics(t_end)
    rep.counts = counts_from_diagnostics(d)
    rep.counts["watchdog_stops"] = len(rep.stops)
    rep.extra["final_state"] = d.get("state")
    rep.extra["final_reason"] = d.get("reason")
    rep.extra["latency_model"] = (
        "fixed %g ms per model call" % cfg.latency_ms
        if cfg.latency_ms is not None
        else "measured wall time"
    )
    return rep


def _bar(cfg: BagEvalConfig, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not cfg.progress, leave=False)


# --- scoring -----------------------------------------------------------------------------------
def _commanded(profile, commands, grid_ns: np.ndarray, t0_ns: int, initial_q) -> np.ndarray:
    """Commanded arm positions at ``grid_ns``: the commands replayed through the
    JointTrajectoryController rules, as bag2dataset does for the dataset's actions."""
    from clap_ros.data.bag2dataset import commanded_arm

    q, _ = commanded_arm(
        profile,
        SimpleNamespace(commands=list(commands)),
        grid_ns,
        t0_ns,
        np.asarray(initial_q, dtype=np.float64),
    )
    return q


def _latest(
    times: Sequence[int], values: Sequence[float], grid_ns: np.ndarray, before: float
) -> np.ndarray:
    from clap_ros.data.bag2dataset import latest_index

    if not len(times):
        return np.full(len(grid_ns), before, dtype=np.float64)
    i = latest_index(times, grid_ns)
    v = np.asarray(list(values) + [before], dtype=np.float64)
    return v[i]  # index -1 picks the appended "before" value


def _js_at(data: BagData, grid_ns: np.ndarray) -> np.ndarray:
    from clap_ros.data.bag2dataset import latest_index

    i = np.maximum(latest_index(data.js_t, grid_ns), 0)
    return np.stack(data.js_q)[i]


def first_points(profile, commands, data: BagData) -> Dict[str, Any]:
    """|first point - measured| and the implied joint velocity (clap_ros.control.first_point) of
    each JointTrajectory in ``commands`` ((log time ns, kind, msg)), against the bag's latest
    joint_states at or before the message's log time (its receipt). The lead is the first
    point's time_from_start: header stamps may be on another clock than the log times."""
    from clap_ros.control.first_point import FirstPointStats, trajectory_first_point
    from clap_ros.control.trajectory import TrajectoryRejected, points_from_msg
    from clap_ros.data.bag2dataset import latest_index

    st = FirstPointStats()
    trajs = [(t, msg) for t, kind, msg in commands if kind == "traj"]
    if trajs and data.js_t:
        idx = latest_index(data.js_t, np.array([t for t, _ in trajs], dtype=np.int64))
        for (t, msg), i in zip(trajs, idx):
            if i < 0:
                continue  # no measurement yet
            try:
                names, pts, _ = points_from_msg(msg)
            except TrajectoryRejected:
                continue
            lead = pts[0][0] if pts else 0.0
            st.add(trajectory_first_point(profile, names, pts, data.js_q[int(i)], lead_s=lead))
    return st.summary()


def score(data: BagData, rep: Replay, profile, chunk_horizon_s: float) -> Dict[str, Any]:
    """metrics for one bag (see bag_metrics); plus the series the report plots under "_series"."""
    from clap_ros.control.trajectory import points_from_msg
    from clap_ros.eval import bag_metrics as M

    dof = profile.dof
    names = list(profile.joint_names)
    t0 = data.start_ns
    ref_initial = data.js_q[0]
    if data.commands:
        from clap_ros.data.bag2dataset import latest_index

        k = latest_index(data.js_t, np.array([data.commands[0][0]]))[0]
        ref_initial = data.js_q[max(int(k), 0)]

    def reference(grid_ns: np.ndarray) -> np.ndarray:
        if data.commands:
            return _commanded(profile, data.commands, grid_ns, t0, ref_initial)
        return _js_at(data, grid_ns)

    m: Dict[str, Any] = {
        "bag": str(data.path),
        "mode": rep.mode,
        "command_mode": rep.command_mode,
        "reference": data.reference,
        "reference_topic": data.arm_topic or data.topics.joint_states,
        "duration_s": (data.end_ns - data.start_ns) * 1e-9,
        "frames": len(data.image_t),
        "instruction": data.instructions[0][1],
        "notes": list(data.notes),
        "wall_s": rep.wall_s,
    }
    series: Dict[str, Any] = {"joint_names": names}
    # commanded trajectory vs reference on a uniform grid, from our first command to the end
    first_cmd = rep.arm[0][0] if rep.arm else None
    if first_cmd is not None and first_cmd < data.end_ns:
        step = int(round(1e9 / METRIC_GRID_HZ))
        grid = np.arange(first_cmd, data.end_ns + 1, step, dtype=np.int64)
        ours = _commanded(profile, rep.arm, grid, t0, _js_at(data, grid[:1])[0])
        ref = reference(grid)
        tsec = (grid - t0) * 1e-9
        m["command"] = M.tracking_errors(ours, ref)
        m["smoothness"] = M.smoothness(tsec, ours)
        m["reference_smoothness"] = M.smoothness(tsec, ref)
        js_grip = np.asarray(data.js_grip, dtype=np.float64)
        start_grip = float(js_grip[0]) if np.isfinite(js_grip[0]) else 1.0
        ref_g = (
            _latest(data.grip_t, data.grip_v, grid, start_grip)
            if data.grip_t
            else _latest(
                data.js_t, np.where(np.isfinite(js_grip), js_grip, start_grip), grid, start_grip
            )
        )
        our_g = _latest([t for t, _ in rep.gripper], [v for _, v in rep.gripper], grid, start_grip)
        m["gripper"] = M.gripper_agreement(our_g, ref_g)
        m["gripper"]["reference"] = "gripper commands" if data.grip_t else "joint_states"
        series.update(
            t=tsec.tolist(),
            ours=ours.tolist(),
            ref=ref.tolist(),
            err=np.max(np.abs(ours - ref), axis=1).tolist(),
            grip_ours=our_g.tolist(),
            grip_ref=ref_g.tolist(),
        )
    else:
        m["command"] = M.tracking_errors(np.zeros((0, dof)), np.zeros((0, dof)))
        m["smoothness"] = M.smoothness(np.zeros(0), np.zeros((0, dof)))
        m["gripper"] = M.gripper_agreement([], [])
        m["notes"].append("the stack sent no arm command during this bag")
    # chunks: each trajectory sent, over the model's chunk horizon, vs the reference then
    trajs = [(t, msg) for t, kind, msg in rep.arm if kind == "traj"]
    if trajs:
        rows = []
        for t, msg in trajs:
            _, pts, _ = points_from_msg(msg)
            pts = [p for p in pts if p[0] <= chunk_horizon_s + 1e-9]
            rows.append((t, np.array([p[0] for p in pts]), np.array([p[1] for p in pts])))
        h = max(len(r[1]) for r in rows)
        pred = np.zeros((len(rows), h, dof))
        times = np.zeros((len(rows), h), dtype=np.int64)
        valid = np.zeros((len(rows), h), bool)
        for i, (t, tf, q) in enumerate(rows):
            n = len(tf)
            pred[i, :n] = q
            times[i, :n] = t + np.round(tf * 1e9).astype(np.int64)
            valid[i, :n] = times[i, :n] <= data.end_ns
        flat = np.unique(times[valid])
        ref_flat = reference(flat) if flat.size else np.zeros((0, dof))
        refc = np.zeros_like(pred)
        idx = np.searchsorted(flat, times)
        refc[valid] = ref_flat[idx[valid]]
        m["chunk"] = M.chunk_errors(pred, refc, valid, names)
        m["chunk"]["source"] = (
            "JointTrajectory commands over the chunk horizon (%.2f s)" % chunk_horizon_s
        )
        # hand-over: the new trajectory's first point vs where the previous one was headed then
        before, after = [], []
        for (t_a, tf_a, q_a), (t_b, tf_b, q_b) in zip(rows, rows[1:]):
            if len(tf_b) == 0 or len(tf_a) == 0:
                continue
            x = (t_b - t_a) * 1e-9 + tf_b[0]
            before.append([np.interp(x, tf_a, q_a[:, j]) for j in range(dof)])
            after.append(q_b[0])
        m["boundaries"] = {
            "position": M.discontinuities(
                np.array(before).reshape(-1, dof), np.array(after).reshape(-1, dof)
            )
        }
    else:
        m["chunk"] = None
        m["boundaries"] = None
    if rep.rf_chunks:
        hz = len(rep.rf_chunks[0][1])
        dt = chunk_horizon_s / hz
        t_steps = np.array(
            [[int(round((s + i * dt) * 1e9)) for i in range(hz)] for s, _ in rep.rf_chunks],
            dtype=np.int64,
        )
        pred = np.stack([c[:, :dof] for _, c in rep.rf_chunks])
        valid = (t_steps >= data.start_ns) & (t_steps <= data.end_ns)
        flat = np.unique(t_steps[valid])
        ref_flat = reference(flat) if flat.size else np.zeros((0, dof))
        refc = np.zeros_like(pred)
        refc[valid] = ref_flat[np.searchsorted(flat, t_steps)[valid]]
        m["rf_chunk"] = M.chunk_errors(pred, refc, valid, names)
        m["rf_chunk"]["source"] = "raw CLAP-RF chunks (step i at frame + i * chunk_dt)"
    # first points vs the measured state: the bag's own trajectories (closed loop when it was
    # recorded), and the replay's (open loop: the arm followed the recording, not these)
    m["first_point"] = {
        "recorded": first_points(profile, data.commands, data),
        "replay": first_points(profile, rep.arm, data),
    }
    m["latency_ms"] = M.distribution(rep.latency_s, 1e3)
    m["latency_ms"]["source"] = rep.latency_source
    cmd_t = [t * 1e-9 for t, _, _ in rep.arm]
    m["rates"] = {
        "command_hz": M.achieved_rate(cmd_t),
        "chunk_hz": M.achieved_rate([t * 1e-9 for t, k, _ in rep.arm if k == "traj"])
        if rep.command_mode == "joint_trajectory"
        else None,
        "gripper_hz": M.achieved_rate([t * 1e-9 for t, _ in rep.gripper]),
        "latent_hz": rep.latents / m["duration_s"] if m["duration_s"] > 0 else None,
        "plan_hz": rep.plans / m["duration_s"] if m["duration_s"] > 0 else None,
    }
    m["counts"] = dict(
        rep.counts,
        latents=rep.latents,
        plans=rep.plans,
        arm_commands=len(rep.arm),
        gripper_commands=len(rep.gripper),
    )
    m["stops"] = [{"t_s": round(t, 3), "reason": r} for t, r in rep.stops]
    if rep.output_bag:
        m["output_bag"] = rep.output_bag
    m.update({k: v for k, v in rep.extra.items() if k not in m})
    series["latency_ms"] = [x * 1e3 for x in rep.latency_s]
    m["_series"] = series
    return m


# --- orchestration -----------------------------------------------------------------------------
class BagEvaluator:
    def __init__(self, cfg: BagEvalConfig, log=print):
        cfg.validate()
        self.cfg = cfg
        self.log = log

    def run(self) -> Dict[str, Any]:
        from clap_ros.eval import bag_metrics as M
        from clap_ros.inference.bundle import BundleError, load_bundle
        from clap_ros.nodes.clap_logic import resolve_model_dir
        from clap_ros.robots import ProfileError, load_profile

        cfg = self.cfg
        model_dir = resolve_model_dir(cfg.model)
        try:
            bundle = load_bundle(model_dir)
        except BundleError as e:
            raise BagEvalError("--model %s: %s" % (cfg.model, e)) from None
        try:
            profile = load_profile(cfg.robot or bundle.robot)
        except (ProfileError, OSError, ValueError) as e:
            raise BagEvalError("--robot %s: %s" % (cfg.robot or bundle.robot, e)) from None
        if list(bundle.joint_names) != list(profile.joint_names):
            raise BagEvalError(
                "model %s is for joints %s, robot '%s' has %s"
                % (cfg.model, bundle.joint_names, profile.name, profile.joint_names)
            )
        try:
            topics = resolve_topics(profile, cfg.topic_map)
        except (ValueError, OSError) as e:  # TopicMapError is a ValueError
            raise BagEvalError("--topic-map %s: %s" % (cfg.topic_map, e)) from None
        horizon = bundle.chunk_length * bundle.chunk_dt_s
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        runtime = None
        if cfg.mode == "offline":
            from clap_ros.inference.policy import ClapRuntime

            runtime = ClapRuntime(bundle, backend=cfg.backend, intra_op_num_threads=1)
        results: List[Dict[str, Any]] = []
        try:
            for i, bag in enumerate(cfg.bags):
                name = Path(bag).name or "bag%d" % i
                try:
                    data = read_bag(Path(bag), profile, topics, cfg.instruction)
                    if cfg.mode == "offline":
                        runtime.preprocessor = _fresh_preprocessor(bundle)
                        rep = replay_offline(data, runtime, profile, cfg)
                    else:
                        from clap_ros.eval.bag_player import replay_ros

                        rep = replay_ros(
                            data, profile, cfg, model_dir, out / ("%02d_%s" % (i, name))
                        )
                    m = score(data, rep, profile, horizon)
                    self.log(
                        "%s: chunk MAE %s rad, command MAE %s rad, latency p50 %s ms, "
                        "%d chunks"
                        % (
                            name,
                            _fmt(M.lookup(m, ("chunk", "mae"))),
                            _fmt(M.lookup(m, ("command", "mae"))),
                            _fmt(M.lookup(m, ("latency_ms", "p50"))),
                            m["counts"].get("chunks_accepted", 0),
                        )
                    )
                except (BagError, BagEvalError) as e:
                    self.log("skipped: %s" % e, file=sys.stderr)
                    m = {"bag": str(bag), "error": str(e)}
                m["name"] = name
                results.append(m)
        finally:
            if runtime is not None:
                runtime.close()
        ok = [m for m in results if "error" not in m]
        summary = {
            "format": "clap_ros_bag_eval",
            "version": 1,
            "mode": cfg.mode,
            "model": str(cfg.model),
            "robot": profile.name,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
            "bags": [{k: v for k, v in m.items() if k != "_series"} for m in results],
            "summary": {
                "fields": [[lab, "/".join(p), unit] for lab, p, unit in M.SUMMARY_FIELDS],
                "per_bag": [
                    dict(name=m["name"], **{lab: M.lookup(m, p) for lab, p, _ in M.SUMMARY_FIELDS})
                    for m in ok
                ],
                "aggregate": M.aggregate(ok),
            },
            "evaluated": len(ok),
            "failed": len(results) - len(ok),
        }
        from clap_ros.data.jsonable import json_default

        (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=json_default))
        from clap_ros.eval.report import write_report

        write_report(out / "report.html", summary, results)
        return summary


def _fresh_preprocessor(bundle):
    from clap_ros.inference.preprocess import Preprocessor

    return Preprocessor(bundle.image_height, bundle.image_width, None)


def _fmt(v) -> str:
    return "-" if v is None else "%.4g" % v


# --- CLI ---------------------------------------------------------------------------------------
DESCRIPTION = """\
Replay recorded rosbags (MCAP) through the CLAP stack and compare what it commands with what the
operator commanded (open loop: the policy sees the recorded frames and joint states; nothing
moves). Metrics per bag and over all bags go to OUT/metrics.json, plots and tables to
OUT/report.html (self-contained, opens offline).

Metrics: per-joint MAE/RMSE of each chunk over its horizon vs the recorded commands at the same
times (falls back to the recorded joint_states when the bag has no arm commands), gripper
open/close agreement, velocity/acceleration/jerk of the commanded trajectory and chunk-boundary
jumps, frame -> command latency, achieved command rate, safety-filter interventions, watchdog stops.

Modes: offline (default; no ROS, the runtime and the action node's controller on the bag's clock)
or ros (encoder/planner/action nodes as processes on sim time, the bag replayed on /clock at
--rate; everything they publish is recorded to OUT/<NN_bag>/replay next to the report).

Examples:
  clap-ros sim record --direct --robot fr3 --task reach --episodes 2 --out /tmp/bags
  clap-ros eval-bag --bag /tmp/bags/fr3_reach_seed000000 --bag /tmp/bags/fr3_reach_seed000001 \\
      --model models/default --out /tmp/eval_bag
  clap-ros eval-bag --bag /tmp/bags/fr3_reach_seed000000 --mode ros --rate 1.0 --out /tmp/eval_ros
  clap-ros eval-bag --bag my_robot.mcap --topic-map my_topics.yaml --robot fr3 --out /tmp/mine

Exit status: 0 every bag evaluated, 1 some bag could not be (its error is in metrics.json and on
stderr; the others are still reported), 2 bad arguments or nothing evaluated.
"""


def _rate(text: str) -> Optional[float]:
    if text.strip().lower() == "max":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--rate must be a number or 'max', got %r" % text)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-bag",
        help="replay rosbags through the CLAP stack; metrics + HTML report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--bag",
        action="append",
        required=True,
        metavar="PATH",
        help="rosbag2 directory, .mcap/.db3 file, or a folder searched for bags; "
        "repeat for several (summary table)",
    )
    p.add_argument(
        "--model", default="models/default", help="model bundle directory (default models/default)"
    )
    p.add_argument(
        "--mode",
        default="offline",
        choices=MODES,
        help="offline: no ROS, fast; ros: the real nodes on sim time (default offline)",
    )
    p.add_argument(
        "--rate",
        type=_rate,
        default=1.0,
        help="ros mode: replay speed, 1.0 = as recorded, or 'max' (unpaced; the nodes "
        "then drop frames). Offline mode always runs as fast as it can on the "
        "bag's clock. Default 1.0",
    )
    p.add_argument("--out", required=True, help="directory for metrics.json and report.html")
    p.add_argument(
        "--topic-map",
        default=None,
        help="YAML mapping this bag's topic names (camera, camera_info, joint_states, "
        "instruction, arm_command, gripper_command) to ours",
    )
    p.add_argument(
        "--robot",
        default=None,
        help="robot profile (fr3, panda, ur5e or a YAML); default the model's robot",
    )
    p.add_argument(
        "--command-mode",
        default="auto",
        choices=COMMAND_MODES,
        help="how the action node commands: auto = like the bag's recorded commands "
        "(JointTrajectory -> joint_trajectory, Float64MultiArray -> "
        "forward_position); default auto",
    )
    p.add_argument(
        "--instruction",
        default=None,
        help="task instruction to plan with (default: the bag's /clap/instruction)",
    )
    p.add_argument(
        "--backend",
        default="cpu",
        choices=("auto", "cpu", "cuda", "tensorrt"),
        help="inference backend (default cpu)",
    )
    p.add_argument("--seed", type=int, default=0, help="RF noise seed (default 0)")
    p.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help="offline mode: delay every model call's result by this many ms of "
        "virtual time instead of the wall time it really took",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ros mode: ROS_DOMAIN_ID (default $ROS_DOMAIN_ID, else random)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def expand_bag_args(paths: Sequence[str]) -> List[str]:
    """Each --bag as given, except a folder that is not itself a bag: the bags found under it
    (sorted), so `--bag recordings/` evaluates a whole session. A folder without bags stays as
    given, and the evaluator reports it."""
    from clap_ros.data.bags import find_bags, is_bag

    out: List[str] = []
    for p in paths:
        path = Path(p)
        found = find_bags(path) if path.is_dir() and not is_bag(path) else []
        if found:
            out.extend(str(b) for b in found)
        else:
            out.append(p)
    return out


def run(args) -> int:
    cfg = BagEvalConfig(
        bags=expand_bag_args(args.bag),
        out=args.out,
        model=args.model,
        mode=args.mode,
        rate=args.rate,
        topic_map=args.topic_map,
        robot=args.robot,
        command_mode=args.command_mode,
        backend=args.backend,
        seed=args.seed,
        instruction=args.instruction,
        domain_id=args.domain_id,
        latency_ms=args.latency_ms,
        progress=not args.no_progress,
    )
    try:
        summary = BagEvaluator(cfg, log=lambda *a, **k: print(*a, **k)).run()
    except BagEvalError as e:
        print("clap-ros eval-bag: error: %s" % e, file=sys.stderr)
        return 2
    agg = summary["summary"]["aggregate"]
    print(
        "evaluated %d bag(s), %d failed (%s mode): chunk MAE %s rad, gripper agreement %s, "
        "latency p50 %s ms -> %s"
        % (
            summary["evaluated"],
            summary["failed"],
            cfg.mode,
            _fmt(agg.get("chunk MAE")),
            _fmt(agg.get("gripper agreement")),
            _fmt(agg.get("latency p50")),
            Path(cfg.out) / "report.html",
        )
    )
    if summary["evaluated"] == 0:
        return 2
    return 1 if summary["failed"] else 0
