"""`clap-train` / `clap-export` as a user runs them: real console scripts in subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clap_train import bundle as B
from clap_train.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = ["act_vae", "visual_lam", "lapa", "probes", "pseudo_label", "ntp", "rf", "export"]
# Small enough for CI, but every stage really trains and the export runs its parity checks.
SMOKE = [
    "data.image_size=32",
    "data.chunk_len=8",
    "act_vae.steps=10",
    "act_vae.batch_size=16",
    "visual_lam.steps=4",
    "visual_lam.batch_size=8",
    "visual_lam.human_batch_size=8",
    "lapa.steps=4",
    "lapa.batch_size=8",
    "probes.classifier_steps=10",
    "ntp.steps=6",
    "ntp.batch_size=8",
    "rf.steps=6",
    "rf.batch_size=8",
]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(args, timeout=600):
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def test_help_texts():
    top = run([BIN / "clap-train", "--help"])
    assert top.returncode == 0
    for stage in STAGES + ["pipeline"]:
        assert stage in top.stdout
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage")
    for stage in STAGES + ["pipeline"]:
        text = sub.choices[stage].format_help()
        assert "--config" in text and "--set" in text and "--synthetic" in text
    exp = run([BIN / "clap-export", "--help"])
    assert exp.returncode == 0 and "--checkpoint" in exp.stdout and "onnxruntime" in exp.stdout


def test_bad_override_is_a_clear_error(tmp_path):
    res = run([BIN / "clap-train", "ntp", "--config", "tiny", "--set", "ntp.hiden_size=3"])
    assert res.returncode == 2 and "hiden_size" in res.stderr and "unknown key" in res.stderr
    res = run(
        [
            BIN / "clap-train",
            "rf",
            "--config",
            "tiny",
            "--set",
            f"out_dir={tmp_path}",
            "--synthetic",
            "4",
            "--set",
            "data.image_size=32",
            "--set",
            "data.chunk_len=8",
        ]
    )
    assert res.returncode == 1 and "not found" in res.stderr  # no NTP checkpoint yet


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe")
    res = run(
        [
            BIN / "clap-train",
            "pipeline",
            "--config",
            "tiny",
            "--synthetic",
            "8",
            "--no-progress",
            "--threads",
            "1",
            "--set",
            f"out_dir={out}",
            *sets(SMOKE),
            "--bundle",
            out / "bundle",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_pipeline_runs_every_stage_and_exports_a_valid_bundle(pipeline_run):
    out, res = pipeline_run
    summary = json.loads((out / "pipeline.json").read_text())
    assert list(summary["stages"]) == STAGES
    for stage in ("act_vae", "visual_lam", "lapa", "ntp", "rf"):
        assert (out / stage / "final.safetensors").is_file(), stage
        assert (out / stage / "metrics.jsonl").is_file() and list((out / stage / "tb").iterdir())
    assert (out / "probes").is_dir() and any((out / "probes").iterdir())
    held = summary["stages"]["rf"]["heldout"]
    for key in ("rf_mse", "rf_true_plan_mse", "ntp_decoded_mse", "ntp_token_acc", "mean_chunk_mse"):
        assert held[key] == held[key] and held[key] >= 0  # present and not NaN
    manifest = B.verify_bundle(out / "bundle")
    parity = manifest["provenance"]["parity"]["max_abs_diff"]
    assert sorted(parity) == sorted(B.GRAPH_FILES)
    assert max(v for g in parity.values() for v in g.values()) < 1e-4
    assert manifest["provenance"]["metrics"]["rf_mse"] == pytest.approx(held["rf_mse"])
    assert manifest["chunk_length"] == 8 and manifest["image"]["height"] == 32
    assert manifest["provenance"]["config"]["rf"]["km_weight"] == 0.005
    assert "[rf]" in res.stdout and "[export]" in res.stdout


def test_clap_export_from_the_rf_checkpoint(pipeline_run, tmp_path):
    out, _ = pipeline_run
    res = run(
        [
            BIN / "clap-export",
            "--checkpoint",
            out / "rf" / "final.safetensors",
            "--out",
            tmp_path / "again",
            "--num-steps",
            "2",
            "--no-progress",
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "parity max abs diff" in res.stdout
    m = B.verify_bundle(tmp_path / "again")
    assert m["rf"]["num_steps"] == 2 and m["name"] == "again"
    # not an RF checkpoint: a clear error, nothing written
    bad = run(
        [
            BIN / "clap-export",
            "--checkpoint",
            out / "ntp" / "final.safetensors",
            "--out",
            tmp_path / "bad",
            "--no-progress",
        ]
    )
    assert bad.returncode == 1 and "not an RF-stage checkpoint" in bad.stderr
    assert not (tmp_path / "bad" / "manifest.yaml").exists()


def test_single_stage_resumes_from_its_checkpoint(pipeline_run):
    out, _ = pipeline_run
    before = (out / "ntp" / "metrics.jsonl").read_text().splitlines()
    res = run(
        [
            BIN / "clap-train",
            "ntp",
            "--config",
            "tiny",
            "--synthetic",
            "8",
            "--no-progress",
            "--threads",
            "1",
            "--set",
            f"out_dir={out}",
            *sets(SMOKE),
            "--set",
            "ntp.steps=8",
            "--summary",
            out / "ntp_summary.json",
        ]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    after = [json.loads(x) for x in (out / "ntp" / "metrics.jsonl").read_text().splitlines()]
    # the second run continued at step 6 instead of starting over
    assert len(after) > len(before) and after[-1]["step"] == 8
    assert json.loads((out / "ntp_summary.json").read_text())["checkpoint"].endswith(
        "final.safetensors"
    )


@pytest.mark.slow
def test_make_model_script_runs_the_tiny_pipeline_on_sim_data(tmp_path):
    """scripts/train_default_model.sh (`make model`) end to end with the real tiny preset on a
    few sim episodes: records FR3 demonstrations and human clips, trains every stage, exports with
    parity, checks the bundle with the runtime's loader and installs it at OUT, with the rebuild
    command in its manifest. This is CI's run of the whole pipeline (several minutes)."""
    env = dict(
        _env(),
        EPISODES="2",
        HUMAN_CLIPS="1",
        DATA=str(tmp_path / "data"),
        OUT=str(tmp_path / "models" / "mine"),
        RUN_DIR=str(tmp_path / "run"),
        CONFIG="tiny",
        VENV=str(BIN.parent),
    )
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_default_model.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    summary = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert list(summary["stages"]) == STAGES
    assert summary["config"]["data"]["robot_dataset"] == str(tmp_path / "data" / "dataset")
    assert summary["config"]["rf"]["steps"] == 300  # the tiny preset, unchanged
    from clap_ros.inference.bundle import load_bundle

    bundle = load_bundle(tmp_path / "models" / "mine")
    prov = bundle.manifest["provenance"]
    assert prov["command"].startswith("make model") and "EPISODES=2" in prov["command"]
    assert prov["config"]["data"]["human_videos"] == str(tmp_path / "data" / "human")
    assert bundle.manifest["robot"] == "fr3" and bundle.manifest["chunk_length"] == 16
    parity = prov["parity"]["max_abs_diff"]
    assert max(v for g in parity.values() for v in g.values()) < 1e-4
    # held-out error of the trained RF beats predicting the mean chunk even on this little data
    assert prov["metrics"]["rf_mse"] < prov["metrics"]["mean_chunk_mse"]
    # 2 episodes x 4 tasks recorded (seeds from 100000, away from eval seeds), 4 human clips
    bags = sorted(p.name for p in (tmp_path / "data" / "bags").iterdir())
    assert len(bags) == 8 and all("seed100000" in b or "seed100001" in b for b in bags)
    labels = json.loads((tmp_path / "data" / "human" / "labels.json").read_text())
    assert len(labels["clips"]) == 4
    # the probe table (CLAP vs LAPA-style) was written by the probes stage
    assert any((tmp_path / "run" / "probes").iterdir())
