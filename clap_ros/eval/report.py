"""``clap-ros eval-bag`` report: one self-contained HTML file (plots embedded as base64 PNGs, no
external scripts or styles, so it opens offline and can be mailed as is)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, List, Mapping, Sequence

import numpy as np


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(m: Mapping[str, Any]) -> List[tuple]:
    """(title, data URI) per plot of one bag's series."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    s = m.get("_series") or {}
    out = []
    if s.get("t"):
        t = np.asarray(s["t"])
        ours, ref = np.asarray(s["ours"]), np.asarray(s["ref"])
        names = s["joint_names"]
        n = len(names)
        cols = 2
        rows = (n + 2) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(10, 2.0 * rows), sharex=True)
        axes = np.atleast_1d(axes).reshape(-1)
        for j in range(n):
            ax = axes[j]
            ax.plot(t, ref[:, j], "k-", lw=1.2, label="recorded (%s)" % m.get("reference"))
            ax.plot(t, ours[:, j], "C1-", lw=1.0, label="commanded (CLAP)")
            ax.set_title(names[j], fontsize=9)
            ax.tick_params(labelsize=7)
        ax = axes[n]
        ax.plot(t, s["grip_ref"], "k-", lw=1.2)
        ax.plot(t, s["grip_ours"], "C1-", lw=1.0)
        ax.set_title("gripper opening", fontsize=9)
        for ax in axes[n + 1 :]:
            ax.axis("off")
        axes[0].legend(fontsize=7, loc="best")
        for ax in axes[-cols:]:
            ax.set_xlabel("bag time (s)", fontsize=8)
        out.append(("commanded vs recorded joint trajectories", _png(fig)))
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.plot(t, s["err"], "C3-")
        ax.set_xlabel("bag time (s)")
        ax.set_ylabel("max |error| over joints (rad)")
        ax.grid(alpha=0.3)
        out.append(("error over time", _png(fig)))
    lat = s.get("latency_ms") or []
    if lat:
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.hist(lat, bins=min(40, max(5, len(lat) // 2)), color="C0")
        ax.set_xlabel("camera frame -> first command (ms)")
        ax.set_ylabel("chunks")
        out.append(("latency histogram", _png(fig)))
    return out


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "%.4g" % v
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    h = "".join("<th>%s</th>" % html.escape(str(x)) for x in header)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % _cell(v) for v in r) for r in rows)
    return "<table><tr>%s</tr>%s</table>" % (h, body)


def _per_joint(m: Mapping[str, Any]) -> str:
    names = (m.get("_series") or {}).get("joint_names") or []
    rows = []
    for key, label in (("chunk", "chunk"), ("rf_chunk", "raw RF chunk"), ("command", "command")):
        d = m.get(key)
        if not d or not d.get("mae_per_joint"):
            continue
        rows.append([label + " MAE"] + list(d["mae_per_joint"]))
        rows.append([label + " RMSE"] + list(d["rmse_per_joint"]))
    sm = m.get("smoothness") or {}
    for k in ("velocity", "acceleration", "jerk"):
        if sm.get(k, {}).get("max_per_joint"):
            rows.append(["max |%s|" % k] + list(sm[k]["max_per_joint"]))
    return _table(["rad"] + list(names), rows) if rows else ""


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1100px}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}
td:first-child{text-align:left}.err{color:#b00}.note{color:#555;font-size:13px}
img{max-width:100%;display:block;margin:.4em 0}h2{border-bottom:1px solid #ccc}"""


def write_report(
    path: Path, summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> Path:
    """Write report.html: the summary table (per bag + aggregate), then per bag its key numbers,
    per-joint table and plots."""
    from clap_ros.control.first_point import describe
    from clap_ros.eval.bag_metrics import SUMMARY_FIELDS

    path = Path(path)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>clap-ros eval-bag</title>"
        "<style>%s</style></head><body>" % CSS,
        "<h1>Bag replay evaluation</h1>",
        "<p>model <b>%s</b>, robot <b>%s</b>, mode <b>%s</b>; %d bag(s) evaluated, %d failed. "
        "Open loop: the policy saw the recorded frames and joint states; its commands moved "
        "nothing and are compared with the operator's recorded commands at the same times."
        "</p>"
        % (
            html.escape(str(summary["model"])),
            html.escape(str(summary["robot"])),
            html.escape(str(summary["mode"])),
            summary["evaluated"],
            summary["failed"],
        ),
    ]
    labels = [lab for lab, _, _ in SUMMARY_FIELDS]
    units = {lab: u for lab, _, u in SUMMARY_FIELDS}
    header = ["bag"] + [
        "%s%s" % (lab, " (%s)" % units[lab] if units[lab] else "") for lab in labels
    ]
    rows = [[r["name"]] + [r.get(lab) for lab in labels] for r in summary["summary"]["per_bag"]]
    agg = summary["summary"]["aggregate"]
    rows.append(["<aggregate (%d)>" % agg["bags"]] + [agg.get(lab) for lab in labels])
    parts.append("<h2>Summary</h2>" + _table(header, rows))
    parts.append("<p class='note'>aggregate: mean over bags (counts summed).</p>")
    for m in results:
        parts.append("<h2>%s</h2>" % html.escape(str(m.get("name"))))
        if "error" in m:
            parts.append("<p class='err'>not evaluated: %s</p>" % html.escape(m["error"]))
            continue
        parts.append(
            "<p>%s<br>instruction: <i>%s</i>; %.2f s, %d frames; reference: %s (%s); "
            "command mode %s; replay took %.1f s wall</p>"
            % (
                html.escape(m["bag"]),
                html.escape(str(m.get("instruction"))),
                m["duration_s"],
                m["frames"],
                html.escape(m["reference"]),
                html.escape(str(m.get("reference_topic"))),
                html.escape(m["command_mode"]),
                m.get("wall_s", 0.0),
            )
        )
        for note in m.get("notes") or []:
            parts.append("<p class='note'>note: %s</p>" % html.escape(note))
        keys = [
            ("chunk MAE / RMSE (rad)", _pair(m.get("chunk"), "mae", "rmse")),
            ("raw RF chunk MAE / RMSE (rad)", _pair(m.get("rf_chunk"), "mae", "rmse")),
            ("command MAE / RMSE (rad)", _pair(m.get("command"), "mae", "rmse")),
            ("gripper agreement", (m.get("gripper") or {}).get("agreement")),
            ("latency p50 / p99 (ms)", _pair(m.get("latency_ms"), "p50", "p99")),
            ("latency source", (m.get("latency_ms") or {}).get("source")),
            (
                "rates (Hz)",
                json.dumps(
                    {
                        k: (round(v, 2) if isinstance(v, float) else v)
                        for k, v in (m.get("rates") or {}).items()
                    }
                ),
            ),
            ("counts", json.dumps(m.get("counts"))),
            (
                "watchdog stops",
                "; ".join("%.2f s: %s" % (s["t_s"], s["reason"]) for s in m.get("stops") or [])
                or "none",
            ),
        ]
        fp = m.get("first_point") or {}
        keys += [
            ("recorded trajectories' first point vs joint_states", describe(fp.get("recorded"))),
            ("replayed trajectories' first point (open loop)", describe(fp.get("replay"))),
        ]
        if m.get("output_bag"):
            keys.append(("recorded stack output", m["output_bag"]))
        parts.append(_table(["metric", "value"], keys))
        parts.append(_per_joint(m))
        for title, uri in _plots(m):
            parts.append(
                "<h3>%s</h3><img alt='%s' src='%s'>" % (html.escape(title), html.escape(title), uri)
            )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _pair(d, a, b) -> str:
    if not d:
        return "–"
    return "%s / %s" % (_cell(d.get(a)), _cell(d.get(b)))
