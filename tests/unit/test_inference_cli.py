"""`clap-ros bundle check`: verifies a bundle, times every graph, fails with a clear message."""

import json
from pathlib import Path

from clap_ros.cli import main

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def test_bundle_check_json(capsys):
    assert main(["bundle", "check", str(DEFAULT), "--backend", "cpu", "--runs", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "cpu" and out["robot"] == "fr3"
    assert set(out["graphs"]) == {"encoder", "planner", "codebook_decoder", "rf_policy"}
    assert out["graphs"]["rf_policy"]["outputs"] == {"actions": [1, 16, 8]}
    assert out["graphs"]["planner"]["outputs"]["indices"] == [1, 4]
    assert all(0 < g["median_ms"] <= g["p99_ms"] for g in out["graphs"].values())


def test_bundle_check_reports_a_broken_bundle(tmp_path, capsys):
    assert main(["bundle", "check", str(tmp_path), "--backend", "cpu"]) == 1
    assert "no manifest.yaml in" in capsys.readouterr().err
