"""docs/RESULTS.md from the per-arm result.json files only (never from memory of a run).

Per experiment: a success table (mean ± std over training seeds of the per-seed success rate, and
the total number of episodes behind it), a metrics table where the experiment has scalar metrics,
one PNG of success per arm, the claim checks (each claim "reproduces", "does not reproduce" or is
"not measured"), the wall-clock cost per arm, and the exact config of every arm with the git commit
it ran at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .common import SCALES, load_results


@dataclass(frozen=True)
class Claim:
    """``better`` should exceed ``worse`` (by more than ``margin``; ``at_least``: reach it), or
    stay under it when ``lower`` (a loss, a leakage).

    Each side is (arm, key) with key ``success:<task>``, ``success:mean`` (over the tasks listed in
    ``tasks``), ``progress:<task>`` / ``progress:mean`` (closed-loop share of the distance to the
    goal closed) or ``metric:<name>``; values are means over seeds."""

    text: str
    better: Tuple[str, str]
    worse: Tuple[str, str]
    margin: float = 0.0
    at_least: bool = False
    tasks: Tuple[str, ...] = ()
    lower: bool = False


def mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    vals = [
        float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
    ]
    if not vals:
        return None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def fmt_pm(m: Optional[float], s: Optional[float], pct: bool = False, digits: int = 3) -> str:
    if m is None:
        return "-"
    if pct:
        return "%.0f ± %.0f %%" % (100 * m, 100 * (s or 0.0))
    return "%.*f ± %.*f" % (digits, m, digits, s or 0.0)


def by_arm(results: Sequence[dict]) -> Dict[str, List[dict]]:
    arms: Dict[str, List[dict]] = {}
    for r in results:
        arms.setdefault(r["arm"], []).append(r)
    return arms


def success_values(runs: Sequence[dict], task: str) -> Tuple[List[float], int]:
    """Per-seed success rates of one task and the total number of episodes."""
    rates, n = [], 0
    for r in runs:
        t = r.get("success", {}).get(task)
        if t and t.get("episodes"):
            rates.append(t["successes"] / t["episodes"])
            n += int(t["episodes"])
    return rates, n


def seed_values(
    arms: Mapping[str, List[dict]], arm: str, key: str, tasks: Sequence[str] = ()
) -> List[float]:
    """One value per training seed of ``key`` (see Claim) for ``arm``; seeds without it are
    left out."""
    kind, _, name = key.partition(":")
    out: List[float] = []
    for r in arms.get(arm) or []:
        if kind == "success":
            rates = (
                success_values([r], name)[0]
                if name != "mean"
                else [v for t in tasks for v in success_values([r], t)[0]]
            )
            if rates:
                out.append(sum(rates) / len(rates))
        elif kind == "progress":
            ts = list(tasks) if name == "mean" else [name]
            vals = [(r.get("success", {}).get(t) or {}).get("goal_progress") for t in ts]
            vals = [float(v) for v in vals if v is not None]
            if vals:
                out.append(sum(vals) / len(vals))
        elif kind == "metric":
            v = r.get("metrics", {}).get(name)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                out.append(float(v))
        else:
            raise ValueError(
                "claim key %r: expected success:<task>, success:mean, "
                "progress:<task>, progress:mean or metric:<name>" % key
            )
    return out


def value(
    arms: Mapping[str, List[dict]], arm: str, key: str, tasks: Sequence[str] = ()
) -> Optional[float]:
    return mean_std(seed_values(arms, arm, key, tasks))[0]


def within_spread(claim: Claim, arms: Mapping[str, List[dict]]) -> bool:
    """True when the two seed means differ by no more than the larger std over seeds: the
    verdict then rests on noise (always false with a single seed, where there is no spread)."""
    b = seed_values(arms, claim.better[0], claim.better[1], claim.tasks)
    w = seed_values(arms, claim.worse[0], claim.worse[1], claim.tasks)
    if len(b) < 2 or len(w) < 2:
        return False
    (mb, sb), (mw, sw) = mean_std(b), mean_std(w)
    spread = max(sb, sw)
    return spread > 0 and abs(mb - mw) <= spread  # no spread at all: the values are exact


def check_claim(
    claim: Claim, arms: Mapping[str, List[dict]]
) -> Tuple[str, Optional[float], Optional[float]]:
    """(verdict, better value, worse value); verdict is reproduces / does not reproduce /
    not measured / inconclusive (both sides' success at the floor or the ceiling: 0 vs 0 says
    nothing about which arm is better, so it must not read as "reproduces")."""
    b = value(arms, claim.better[0], claim.better[1], claim.tasks)
    w = value(arms, claim.worse[0], claim.worse[1], claim.tasks)
    if b is None or w is None:
        return "not measured", b, w
    # closed-loop figures with bounds: success in [0, 1], progress <= 1 and exactly 0 only when
    # nothing moved towards the goal at all
    graded = all(
        side[1].startswith(("success", "progress")) for side in (claim.better, claim.worse)
    )
    if graded and b == w and b in (0.0, 1.0):
        return "inconclusive", b, w
    gain = (w - b) if claim.lower else (b - w)
    ok = (gain >= claim.margin) if claim.at_least else (gain > claim.margin)
    return ("reproduces" if ok else "does not reproduce"), b, w


def success_table(arms: Mapping[str, List[dict]], tasks: Sequence[str]) -> List[str]:
    head = ["arm"] + ["%s success (n)" % t for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, runs in arms.items():
        cells = [runs[0].get("label", arm)]
        for t in tasks:
            rates, n = success_values(runs, t)
            m, s = mean_std(rates)
            cells.append("%s (%d)" % (fmt_pm(m, s, pct=True), n) if m is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def metrics_table(arms: Mapping[str, List[dict]], names: Sequence[Tuple[str, str]]) -> List[str]:
    head = ["arm"] + [label for _, label in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, runs in arms.items():
        cells = [runs[0].get("label", arm)]
        for key, _ in names:
            m, s = mean_std([r.get("metrics", {}).get(key) for r in runs])
            cells.append(fmt_pm(m, s))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def progress_table(arms: Mapping[str, List[dict]], tasks: Sequence[str]) -> List[str]:
    head = ["arm"] + ["%s progress" % t for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, runs in arms.items():
        cells = [runs[0].get("label", arm)]
        for t in tasks:
            cells.append(
                fmt_pm(*mean_std(seed_values({arm: runs}, arm, "progress:" + t)), digits=2)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_success(
    arms: Mapping[str, List[dict]], tasks: Sequence[str], path: Path, title: str
) -> Optional[Path]:
    """Grouped bars per arm and task with the std over seeds as error bars: success, and beside
    it the goal progress where the results have it (it separates arms that all fail)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [
        ("success %", lambda runs, t: [100 * v for v in success_values(runs, t)[0]], (0, 105))
    ]
    if any(
        (x or {}).get("goal_progress") is not None
        for runs in arms.values()
        for r in runs
        for x in r.get("success", {}).values()
    ):
        panels.append(
            (
                "goal progress (1 = at the goal)",
                lambda runs, t: seed_values({"a": runs}, "a", "progress:" + t),
                None,
            )
        )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(len(panels) * (1.6 + 1.4 * len(tasks)), 3.4), squeeze=False
    )
    width = 0.8 / max(1, len(arms))
    for ax, (ylabel, values, ylim) in zip(axes[0], panels):
        for i, (arm, runs) in enumerate(arms.items()):
            stats = [mean_std(values(runs, t)) for t in tasks]
            xs = [k + (i - (len(arms) - 1) / 2) * width for k in range(len(tasks))]
            ax.bar(
                xs,
                [m or 0.0 for m, _ in stats],
                width,
                yerr=[s or 0.0 for _, s in stats],
                capsize=2,
                label=runs[0].get("label", arm),
            )
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        else:
            ax.axhline(0.0, color="black", linewidth=0.6)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def experiment_section(module, results: Sequence[dict], docs_dir: Path, scale: str) -> List[str]:
    arms = by_arm(results)
    order = [a.name for a in module.arms(SCALES[scale])] if scale in SCALES else []
    arms = {k: arms[k] for k in sorted(arms, key=lambda a: order.index(a) if a in order else 99)}
    lines = ["## %s" % module.TITLE, "", module.DESCRIPTION.strip().replace("``", "`"), ""]
    if not results:
        return lines + [
            "No results yet: run `clap-train experiment %s --scale %s`." % (module.NAME, scale),
            "",
        ]
    seeds = sorted({r["seed"] for r in results})
    lines += [
        "Scale `%s`, training seeds %s; closed-loop success = episodes that reached the task's "
        "success predicate through the full ROS stack (`clap-ros eval-sim`), mean ± std over "
        "seeds of the per-seed rate, (n) = episodes in total." % (scale, seeds),
        "",
    ]
    again = [r for r in results if r.get("reevaluated")]
    if again:
        lines += [
            "Closed-loop figures of %d of these %d results come from a later `--eval-only` "
            "run (same bundles and eval seeds, training untouched) at commit(s) %s."
            % (
                len(again),
                len(results),
                ", ".join(sorted({r["reevaluated"].get("git_commit", "?") for r in again})),
            ),
            "",
        ]
    lines += success_table(arms, module.TABLE_TASKS) + [""]
    if any(
        (t or {}).get("goal_progress") is not None
        for r in results
        for t in r.get("success", {}).values()
    ):
        lines += [
            "Closed-loop progress toward the goal, from the same episodes: the share of the "
            "distance from what the task moves (TCP or object) to its goal that was closed "
            "by the stop (1 = at the goal, 0 = no closer, < 0 = further away); median over "
            "a seed's episodes, mean ± std over seeds:",
            "",
        ]
        lines += progress_table(arms, module.TABLE_TASKS) + [""]
    if getattr(module, "METRICS", None):
        lines += [module.METRICS_TEXT.strip(), ""] + metrics_table(arms, module.METRICS) + [""]
    png = plot_success(
        arms, module.TABLE_TASKS, docs_dir / "results" / ("%s.png" % module.NAME), module.TITLE
    )
    if png is not None:
        lines += ["![%s](results/%s)" % (module.NAME, png.name), ""]
    lines += [
        "Claims (a verdict compares seed means only; read it with the ± std and n above: "
        "with few episodes a difference inside the spread is noise, and a claim that "
        "does not reproduce here did not reproduce at this scale, nothing more):",
        "",
    ]
    for claim in module.CLAIMS:
        verdict, b, w = check_claim(claim, arms)
        figures = "" if verdict == "not measured" else " (%.3g vs %.3g)" % (b, w)
        mark = {
            "reproduces": "reproduces",
            "does not reproduce": "**does not reproduce**",
            "not measured": "not measured",
            "inconclusive": "inconclusive, %s"
            % (
                "both arms always succeeded"
                if b == 1
                else "no episode of either arm succeeded"
                if claim.better[1].startswith("success")
                else "neither arm brought it any closer to the goal"
            ),
        }[verdict]
        noise = (
            ", within the spread over seeds"
            if verdict in ("reproduces", "does not reproduce") and within_spread(claim, arms)
            else ""
        )
        lines.append("- %s: %s%s%s" % (claim.text, mark, figures, noise))
    lines.append("")
    if getattr(module, "TRIED", ""):
        lines += [module.TRIED.strip().replace("``", "`"), ""]
    lines += [
        "Cost on this machine (wall-clock seconds, summed over seeds):",
        "",
        "| arm | train | eval | total |",
        "|---|---|---|---|",
    ]
    for arm, runs in arms.items():
        tot = {
            k: sum(r.get("wall_s", {}).get(k, 0.0) for r in runs)
            for k in ("train", "eval", "total")
        }
        lines.append("| %s | %.0f | %.0f | %.0f |" % (arm, tot["train"], tot["eval"], tot["total"]))
    lines += ["", "<details><summary>Exact configs and commits</summary>", ""]
    for arm, runs in arms.items():
        r = runs[0]
        commits = sorted({x.get("git_commit", "?") for x in runs})
        lines += [
            "**%s** (`%s`): %s. Overrides: `%s`. Commit(s): %s.%s"
            % (
                r.get("label", arm),
                arm,
                r.get("recipe", ""),
                " ".join(r.get("overrides", [])) or "none",
                ", ".join(commits),
                (" " + r["note"]) if r.get("note") else "",
            ),
            "",
            "```json",
            json.dumps(r.get("config"), sort_keys=True),
            "```",
            "",
        ]
    lines += ["</details>", ""]
    return lines


def write_report(
    root: Path, scale: str, modules: Sequence[Any], out: Optional[Path] = None
) -> Path:
    """Regenerate docs/RESULTS.md (or ``out``) from runs/experiments/<scale>/<exp>/*/seed*/."""
    root = Path(root)
    out = Path(out) if out else root / "docs" / "RESULTS.md"
    docs_dir = out.parent
    all_results = {
        m.NAME: load_results(root / "runs" / "experiments" / scale / m.NAME) for m in modules
    }
    wall = sum(r.get("wall_s", {}).get("total", 0.0) for rs in all_results.values() for r in rs)
    commits = sorted({r.get("git_commit", "?") for rs in all_results.values() for r in rs})
    sc = SCALES.get(scale)
    lines = [
        "# Results: does unlabelled video teach the robot? (issue 6)",
        "",
        "Generated by `clap-train experiment all --scale %s` (or `--report-only`) from the "
        "result.json files under `runs/experiments/%s/`; do not edit by hand." % (scale, scale),
        "",
        "Scale `%s`: %s. Measured wall-clock of the runs below: %.1f h. Commit(s): %s."
        % (scale, sc.estimate if sc else "?", wall / 3600.0, ", ".join(commits) or "-"),
        "",
    ]
    if sc is not None:
        lines += [
            "Sizes per task: %d robot demos, %d unlabelled clips, %d held-out episodes; "
            "%d closed-loop episode(s) per task, arm and seed; steps %s; %d seed(s)."
            % (
                sc.robot_episodes,
                sc.pretrain_clips,
                sc.heldout_episodes,
                sc.eval_episodes,
                ", ".join("%s %d" % kv for kv in sc.steps.items()),
                sc.seeds,
            ),
            "",
        ]
    for m in modules:
        lines += experiment_section(m, all_results[m.NAME], docs_dir, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out
