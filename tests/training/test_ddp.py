"""torchrun DDP on CPU (gloo, 2 processes): NTP and RF+KM steps keep the replicas identical."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clap_train.ddp import param_digest

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "data.image_size=32",
    "data.chunk_len=8",
    "act_vae.steps=8",
    "act_vae.batch_size=16",
    "ntp.steps=4",
    "ntp.batch_size=4",
    "ntp.human_mix=0.0",
    "rf.steps=4",
    "rf.batch_size=4",
    "ntp.log_every=2",
    "rf.log_every=2",
]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _sets(out):
    return [x for o in SMALL + [f"out_dir={out}"] for x in ("--set", o)]


def _torchrun(stage, out, digests):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "clap_train.ddp",
        stage,
        "--config",
        "tiny",
        "--synthetic",
        "6",
        "--backend",
        "gloo",
        "--digest-dir",
        str(digests),
        *_sets(out),
    ]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    return ranks


@pytest.fixture(scope="module")
def act_vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "clap_train.cli",
            "act_vae",
            "--config",
            "tiny",
            "--synthetic",
            "6",
            "--no-progress",
            "--threads",
            "1",
            *_sets(out),
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_ntp_then_rf_with_km_stay_identical_across_two_ranks(act_vae_run, tmp_path):
    from clap_train.ntp import load_ntp
    from clap_train.rf import load_policy

    out = act_vae_run
    ntp_ranks = _torchrun("ntp", out, tmp_path / "ntp")
    assert ntp_ranks[0]["sha256"] == ntp_ranks[1]["sha256"]
    assert ntp_ranks[0]["num_params"] > 10_000
    # rank 0's checkpoint holds exactly the replicated weights
    ntp, _ = load_ntp(out / "ntp" / "final.safetensors")
    assert param_digest(ntp)["sha256"] == ntp_ranks[0]["sha256"]

    rf_ranks = _torchrun("rf", out, tmp_path / "rf")
    assert rf_ranks[0]["sha256"] == rf_ranks[1]["sha256"]
    assert "km_kl" in rf_ranks[0]["train"]  # Knowledge Matching was on under DDP
    policy, ck = load_policy(out / "rf" / "final.safetensors")
    assert param_digest(policy)["sha256"] == rf_ranks[0]["sha256"]
    assert ck.step == 4
    # fine-tuning moved the NTP weights inside the policy away from the NTP stage's
    assert param_digest(policy.ntp)["sha256"] != ntp_ranks[0]["sha256"]
