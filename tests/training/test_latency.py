"""clap_train.latency: torch eager vs onnxruntime per bundle graph (the `make bench` ratio)."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from clap_train.latency import format_table, measure

REPO = Path(__file__).resolve().parents[2]


def test_fresh_weights_when_the_checkpoint_is_elsewhere(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(REPO / "models" / "default", bundle)
    m = yaml.safe_load((bundle / "manifest.yaml").read_text())
    m["provenance"]["checkpoint"] = str(tmp_path / "gone" / "final.safetensors")
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(m))
    res = measure(bundle, runs=3, warmup=1)
    assert res["weights"].startswith("fresh weights")
    assert sorted(res["graphs"]) == ["codebook_decoder", "encoder", "planner", "rf_policy"]
    for g in res["graphs"].values():
        assert g["torch_eager_ms"] > 0 and g["onnxruntime_ms"] > 0
        assert abs(g["speedup"] - g["torch_eager_ms"] / g["onnxruntime_ms"]) < 1e-9
    assert "torch / ORT" in format_table(res) and "rf_policy" in format_table(res)


def test_missing_bundle_is_a_clear_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "clap_train.latency", "--bundle", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "error" in res.stderr and "nope" in res.stderr


def test_a_checkpoint_of_another_run_is_not_taken_for_the_bundles(tmp_path, monkeypatch):
    # models/default names runs/default/...: a file there from an older run has another step
    import types

    import clap_train.act_vae as act_vae_mod
    import clap_train.rf as rf_mod
    from clap_train.latency import bundle_modules

    bundle = tmp_path / "b"
    shutil.copytree(REPO / "models" / "default", bundle)
    (tmp_path / "rf.safetensors").write_bytes(b"x")
    (tmp_path / "av.safetensors").write_bytes(b"x")
    m = yaml.safe_load((bundle / "manifest.yaml").read_text())
    m["provenance"].update(
        checkpoint=str(tmp_path / "rf.safetensors"),
        act_vae_checkpoint=str(tmp_path / "av.safetensors"),
        step=6000,
    )
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(m))
    monkeypatch.setattr(rf_mod, "load_policy", lambda p: (None, types.SimpleNamespace(step=600)))
    monkeypatch.setattr(
        act_vae_mod,
        "load_act_vae",
        lambda p: (_ for _ in ()).throw(AssertionError("must not load the other run's Act-VAE")),
    )
    *_, weights = bundle_modules(bundle)
    assert weights.startswith("fresh weights")
    # the same files at the bundle's own step are its weights
    monkeypatch.setattr(
        rf_mod, "load_policy", lambda p: ("policy", types.SimpleNamespace(step=6000))
    )
    monkeypatch.setattr(act_vae_mod, "load_act_vae", lambda p: ("act_vae", None))
    policy, act_vae, *_, weights = bundle_modules(bundle)
    assert (policy, act_vae) == ("policy", "act_vae") and weights.startswith("trained")
