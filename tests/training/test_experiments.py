"""Issue-6 experiments: the report writer on fake results, and a smoke run end to end (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clap_train.experiments import all_modules, load
from clap_train.experiments.common import SCALES, Recipe
from clap_train.experiments.report import (
    Claim,
    by_arm,
    check_claim,
    load_results,
    mean_std,
    within_spread,
    write_report,
)


def fake_result(root, exp, arm, seed, success, metrics=None, scale="smoke"):
    d = Path(root) / "runs" / "experiments" / scale / exp / arm / ("seed%d" % seed)
    d.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "clap_experiment_result",
        "version": 1,
        "experiment": exp,
        "arm": arm,
        "label": arm.upper(),
        "seed": seed,
        "scale": scale,
        "recipe": "robot demos: x",
        "overrides": ["rf.km_weight=0"],
        "note": "",
        "config": {"seed": seed},
        "git_commit": "abc123",
        "success": {t: {"successes": s, "episodes": n} for t, (s, n) in success.items()},
        "metrics": metrics or {},
        "wall_s": {"train": 10.0, "eval": 5.0, "total": 15.0},
    }
    (d / "result.json").write_text(json.dumps(doc))
    return d


def test_mean_std_uses_the_sample_std_and_skips_missing():
    m, s = mean_std([0.2, 0.4, 0.6, None])
    assert m == pytest.approx(0.4) and s == pytest.approx(0.2)
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([]) == (None, None)


def test_claims_reproduce_fail_or_are_not_measured(tmp_path):
    runs = tmp_path / "runs" / "experiments" / "smoke" / "human_transfer"
    for seed, (a, b) in enumerate([(3, 1), (2, 1)]):
        fake_result(tmp_path, "human_transfer", "clap_conla", seed, {"stack": (a, 4)})
        fake_result(tmp_path, "human_transfer", "no_human", seed, {"stack": (b, 4)})
    arms = by_arm(load_results(runs))
    up = Claim("x", ("clap_conla", "success:stack"), ("no_human", "success:stack"))
    assert check_claim(up, arms) == ("reproduces", pytest.approx(0.625), pytest.approx(0.25))
    down = Claim("y", ("no_human", "success:stack"), ("clap_conla", "success:stack"))
    assert check_claim(down, arms)[0] == "does not reproduce"
    # equal values: a strict claim fails, an at_least claim holds
    same = Claim("z", ("no_human", "success:stack"), ("no_human", "success:stack"))
    assert check_claim(same, arms)[0] == "does not reproduce"
    assert check_claim(Claim("z", same.better, same.worse, at_least=True), arms)[0] == "reproduces"
    assert not within_spread(same, arms)  # 0.25 on every seed: exact, no spread to be within
    assert check_claim(Claim("v", up.better, up.worse, lower=True), arms)[0] == "does not reproduce"
    assert check_claim(Claim("v", down.better, down.worse, lower=True), arms)[0] == "reproduces"
    missing = Claim("w", ("lapa", "success:stack"), ("no_human", "success:stack"))
    assert check_claim(missing, arms)[0] == "not measured"
    # 0 % vs 0 % (or 100 vs 100) says nothing: inconclusive, even for an at_least claim
    for seed in range(2):
        fake_result(
            tmp_path,
            "human_transfer",
            "clap",
            seed,
            {"stack": (0, 4), "reach": (4, 4)},
            {"acc": 0.0},
        )
        fake_result(
            tmp_path,
            "human_transfer",
            "lapa",
            seed,
            {"stack": (0, 4), "reach": (4, 4)},
            {"acc": 0.0},
        )
    arms = by_arm(load_results(runs))
    for task in ("stack", "reach"):
        floor = Claim("f", ("clap", "success:" + task), ("lapa", "success:" + task), at_least=True)
        assert check_claim(floor, arms)[0] == "inconclusive"
    # 0.625 ± 0.18 vs 0.25 ± 0: outside the spread; noisy metrics inside it
    assert not within_spread(up, arms)
    fake_result(tmp_path, "human_transfer", "clap", 0, {"stack": (0, 4)}, {"acc": 0.5})
    fake_result(tmp_path, "human_transfer", "clap", 1, {"stack": (0, 4)}, {"acc": 0.1})
    fake_result(tmp_path, "human_transfer", "lapa", 0, {"stack": (0, 4)}, {"acc": 0.3})
    fake_result(tmp_path, "human_transfer", "lapa", 1, {"stack": (0, 4)}, {"acc": 0.2})
    noisy = Claim("n", ("clap", "metric:acc"), ("lapa", "metric:acc"))
    arms = by_arm(load_results(runs))
    assert check_claim(noisy, arms)[0] == "reproduces" and within_spread(noisy, arms)
    for seed in range(2):
        fake_result(tmp_path, "human_transfer", "clap", seed, {"stack": (0, 4)}, {"acc": 0.0})
        fake_result(tmp_path, "human_transfer", "lapa", seed, {"stack": (0, 4)}, {"acc": 0.0})
    arms = by_arm(load_results(runs))
    # a metric at 0 on both sides is a measurement, not a floor
    metric = Claim("m", ("clap", "metric:acc"), ("lapa", "metric:acc"), at_least=True)
    assert check_claim(metric, arms)[0] == "reproduces"


def test_report_tables_mean_std_episodes_and_negative_results(tmp_path):
    # human_transfer: CLAP+ConLA does worse than no human video on stack -> does not reproduce
    for seed, (c, n) in enumerate([(0, 2), (1, 2)]):
        fake_result(
            tmp_path,
            "human_transfer",
            "clap_conla",
            seed,
            {"stack": (c, 4), "reach": (4, 4), "push": (2, 4), "pick_place": (1, 4)},
        )
        fake_result(
            tmp_path,
            "human_transfer",
            "no_human",
            seed,
            {"stack": (n, 4), "reach": (4, 4), "push": (2, 4), "pick_place": (1, 4)},
        )
    fake_result(
        tmp_path,
        "knowledge_matching",
        "km",
        0,
        {"stack": (1, 2)},
        {"token_acc_retained": 0.9, "pretrain_token_acc": 0.45, "base_token_acc": 0.5},
    )
    fake_result(
        tmp_path,
        "knowledge_matching",
        "none",
        0,
        {"stack": (0, 2)},
        {"token_acc_retained": 0.5, "pretrain_token_acc": 0.25, "base_token_acc": 0.5},
    )
    out = write_report(tmp_path, "smoke", all_modules(), tmp_path / "docs" / "RESULTS.md")
    text = out.read_text()
    # per-seed rates 0/4 and 1/4 -> 12.5 % ± 17.7 %, over 8 episodes
    assert "| CLAP_CONLA | 100 ± 0 % (8) | 50 ± 0 % (8) | 25 ± 0 % (8) | 12 ± 18 % (8) |" in text
    assert "| NO_HUMAN | 100 ± 0 % (8) | 50 ± 0 % (8) | 25 ± 0 % (8) | 50 ± 0 % (8) |" in text
    line = next(
        ln for ln in text.splitlines() if ln.startswith("- Human video labelled by CLAP + ConLA")
    )
    assert "**does not reproduce**" in line and "(0.125 vs 0.5)" in line
    assert "not measured" in next(ln for ln in text.splitlines() if "LAPA-style labels" in ln)
    km = next(ln for ln in text.splitlines() if ln.startswith("- KM forgets less"))
    assert km.endswith("reproduces (0.9 vs 0.5)")
    assert "| km | 10 | 5 | 15 |" in text and "abc123" in text
    assert "No results yet: run `clap-train experiment human_vs_robot --scale smoke`" in text
    assert (tmp_path / "docs" / "results" / "human_transfer.png").stat().st_size > 1000
    assert not (tmp_path / "docs" / "results" / "human_vs_robot.png").exists()
    assert "progress toward the goal" not in text  # results from before the graded figure


def test_goal_progress_table_and_claims(tmp_path):
    for seed, (a, b) in enumerate([(0.6, 0.1), (0.4, -0.1)]):
        for arm, p in (("clap_conla", a), ("no_human", b)):
            d = fake_result(tmp_path, "human_transfer", arm, seed, {"stack": (0, 2)})
            doc = json.loads((d / "result.json").read_text())
            doc["success"]["stack"]["goal_progress"] = p
            (d / "result.json").write_text(json.dumps(doc))
    text = write_report(tmp_path, "smoke", all_modules(), tmp_path / "R.md").read_text()
    assert "| CLAP_CONLA | - | - | - | 0.50 ± 0.14 |" in text
    assert "| NO_HUMAN | - | - | - | 0.00 ± 0.14 |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- Closed loop: CLAP + ConLA"))
    assert line.endswith("reproduces (0.5 vs 0)")
    arms = by_arm(load_results(tmp_path / "runs" / "experiments" / "smoke" / "human_transfer"))
    both_still = Claim("s", ("no_human", "progress:pick_place"), ("no_human", "progress:stack"))
    for arm in arms["no_human"]:
        arm["success"]["pick_place"] = {"successes": 0, "episodes": 2, "goal_progress": 0.0}
        arm["success"]["stack"]["goal_progress"] = 0.0
    # nothing moved in either arm: a floor, not a measurement
    assert check_claim(both_still, arms)[0] == "inconclusive"
    # success is 0 % on both sides: inconclusive, while progress still tells them apart
    assert "inconclusive" in next(
        ln for ln in text.splitlines() if ln.startswith("- Human video labelled by CLAP + ConLA")
    )


def test_every_experiment_defines_arms_with_valid_overrides_and_claims():
    from clap_train.config import load_config

    for module in all_modules():
        arms = module.arms(SCALES["cpu"])
        names = {a.name for a in arms}
        assert len(names) == len(arms) >= 2
        for arm in arms:
            load_config("tiny", arm.overrides + SCALES["cpu"].overrides())  # typos fail here
            assert isinstance(arm.recipe, Recipe) and sum(arm.recipe.robot.values()) > 0
        for claim in module.CLAIMS:
            for side in (claim.better, claim.worse):
                assert side[0] in names and side[1].split(":")[0] in (
                    "success",
                    "progress",
                    "metric",
                )
    ht = load("human_transfer").arms(SCALES["cpu"])
    assert [a.recipe.robot["stack"] for a in ht] == [5] * 4
    assert ht[0].recipe.clips == {} and ht[1].recipe.clips["stack"] == 30
    with pytest.raises(ValueError, match="unknown experiment"):
        load("nope")


@pytest.mark.slow
def test_smoke_experiment_end_to_end(tmp_path):
    """`clap-train experiment distractor_shift --scale smoke`: sim data, training of every stage,
    probes, export, closed-loop eval through the ROS stack in and out of distribution, report."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "clap-train"
    out = subprocess.run(
        [
            str(exe),
            "experiment",
            "distractor_shift",
            "--scale",
            "smoke",
            "--root",
            str(tmp_path),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    runs = tmp_path / "runs" / "experiments" / "smoke" / "distractor_shift"
    results = {
        p.parent.parent.name: json.loads(p.read_text()) for p in runs.glob("*/seed0/result.json")
    }
    assert set(results) == {"in_distribution", "shifted"}
    for name, r in results.items():
        assert set(r["success"]) == {"reach", "push", "pick_place", "stack"}
        for task, s in r["success"].items():
            assert s["episodes"] == 1 and s["complete"], (name, task, s)
        for key in ("clap_r2_motion", "lapa_r2_motion", "clap_leakage", "lapa_leakage"):
            assert isinstance(r["metrics"][key], float)
        assert r["config"]["ntp"]["steps"] == SCALES["smoke"].steps["ntp"]
    assert results["shifted"]["eval_seed"] >= 1_000_000_000
    assert (runs / "in_distribution" / "seed0" / "bundle" / "manifest.yaml").is_file()
    report = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "## 3. Disentanglement" in report and "(1) |" in report
    for r in results.values():  # the graded closed-loop figure of every evaluated task
        assert all(isinstance(s["goal_progress"], float) for s in r["success"].values())

    # --eval-only: the same bundles evaluated again (the shifted row with in_distribution's
    # model), training figures kept, success and cost rewritten
    out = subprocess.run(
        [
            str(exe),
            "experiment",
            "distractor_shift",
            "--scale",
            "smoke",
            "--root",
            str(tmp_path),
            "--no-progress",
            "--eval-only",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    again = {
        p.parent.parent.name: json.loads(p.read_text()) for p in runs.glob("*/seed0/result.json")
    }
    for name, r in again.items():
        assert r["reevaluated"]["episodes_per_task"] == 1
        assert r["metrics"] == results[name]["metrics"]
        assert r["wall_s"]["train"] == results[name]["wall_s"]["train"]
        assert all(s["complete"] for s in r["success"].values())
    shifted_eval = json.loads(
        (runs / "shifted" / "seed0" / "eval" / "reach" / "result.json").read_text()
    )
    assert shifted_eval["model"].endswith("in_distribution/seed0/bundle")
    assert shifted_eval["config"]["seed"] == again["shifted"]["eval_seed"]
    report = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "of these 2 results come from a later `--eval-only` run" in report

    # Knowledge Matching reuses the cached sim data: a base planner, then three RF fine-tunes
    out = subprocess.run(
        [
            str(exe),
            "experiment",
            "knowledge_matching",
            "--scale",
            "smoke",
            "--root",
            str(tmp_path),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    km = {
        p.parent.parent.name: json.loads(p.read_text())
        for p in (tmp_path / "runs" / "experiments" / "smoke" / "knowledge_matching").glob(
            "*/seed0/result.json"
        )
    }
    assert set(km) == {"none", "km", "insulated"}
    # the frozen planner is the base planner: same greedy tokens on the pretraining tasks
    assert km["insulated"]["metrics"]["token_acc_retained"] == 1.0
    assert all(r["success"]["stack"]["complete"] for r in km.values())
    assert "[data] recording" not in out.stderr  # nothing recorded twice


@pytest.mark.slow
def test_smoke_human_video_experiments_end_to_end(tmp_path):
    """Experiments 1 and 2 at smoke scale: the LAPA-labelled, CLAP and CLAP+ConLA arms, robot
    videos as action-free clips, per-task held-out figures (stack held out), the report."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "clap-train"
    for name in ("human_transfer", "human_vs_robot"):
        out = subprocess.run(
            [
                str(exe),
                "experiment",
                name,
                "--scale",
                "smoke",
                "--root",
                str(tmp_path),
                "--no-progress",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    runs = tmp_path / "runs" / "experiments" / "smoke"
    ht = {
        p.parent.parent.name: json.loads(p.read_text())
        for p in (runs / "human_transfer").glob("*/seed0/result.json")
    }
    assert set(ht) == {"no_human", "lapa", "clap", "clap_conla"}
    for name, r in ht.items():
        assert set(r["success"]) == {"reach", "push", "pick_place", "stack"}
        assert all(s["episodes"] == 1 and s["complete"] for s in r["success"].values()), name
        for key in ("ntp_token_acc@stack", "ntp_decoded_mae@stack", "rf_mae@stack", "rf_mae"):
            assert 0.0 <= r["metrics"][key] < 10.0, (name, key)
    assert ht["lapa"]["config"]["pseudo_label"]["model"] == "lapa"
    assert ht["no_human"]["config"]["ntp"]["human_mix"] == 0
    assert ht["clap"]["config"]["visual_lam"]["w_conla"] == 0
    assert ht["clap_conla"]["config"]["visual_lam"]["w_conla"] > 0
    hr = {
        p.parent.parent.name: json.loads(p.read_text())
        for p in (runs / "human_vs_robot").glob("*/seed0/result.json")
    }
    assert set(hr) == {"human_video", "robot_video"}
    assert "robot clips (no actions)" in hr["robot_video"]["recipe"]
    assert "human clips (no actions)" in hr["human_video"]["recipe"]
    report = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "## 1. Human-video transfer" in report and "stack: token acc" in report
    assert "## 2. Human-video-only" in report


def test_human_transfer_holds_out_stack_and_reports_its_offline_figures():
    from clap_train.experiments.common import heldout_metrics

    ht = load("human_transfer")
    for arm in ht.arms(SCALES["cpu"]):
        assert "stack" in arm.recipe.heldout_tasks
    assert "ntp_token_acc@stack" in dict(ht.METRICS)
    summary = {
        "stages": {
            "ntp": {"heldout": {"ntp_token_acc": 0.5, "ntp_token_acc@stack": 0.2}},
            "rf": {
                "heldout": {
                    "ntp_token_acc": 0.4,
                    "rf_mae": 0.1,
                    "rf_mae@stack": 0.3,
                    "mean_chunk_mse": 1.0,
                }
            },
        }
    }
    # the planner's figures come from the NTP stage, the action errors from the RF stage
    assert heldout_metrics(summary) == {
        "ntp_token_acc": 0.5,
        "ntp_token_acc@stack": 0.2,
        "rf_mae": 0.1,
        "rf_mae@stack": 0.3,
        "mean_chunk_mse": 1.0,
    }


def test_parallel_jobs_are_balanced_and_cover_every_experiment_once():
    from clap_train.experiments import EXPERIMENTS
    from clap_train.experiments.cli import COST, balance

    names = list(EXPERIMENTS)
    assert set(COST) == set(names)
    for jobs in (1, 2, 3, 4, 9):
        groups = balance(names, jobs)
        assert sorted(n for g in groups for n in g) == sorted(names)
        assert len(groups) == min(jobs, len(names))
    # the longest experiment gets a job of its own as soon as there are enough jobs
    assert ["human_transfer"] in balance(names, 2)
    assert balance(names, 1) == [sorted(names, key=lambda n: -COST[n])]
