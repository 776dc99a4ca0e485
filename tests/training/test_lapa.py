"""LAPA-style baseline: learns pixel reconstruction, small codebook stays alive, same API, probes
run."""

import json

import numpy as np
import pytest
import torch

from clap_train.act_vae import ActVAE
from clap_train.common import load_config, seed_everything
from clap_train.data import make_synthetic_episodes, make_synthetic_human_clips
from clap_train.lapa import load_lapa, train_lapa
from clap_train.probes import run_probes
from clap_train.visual_lam import VisualLAM

SMALL = [
    "data.image_size=16",
    "data.chunk_len=6",
    "data.stride=2",
    "lapa.width=32",
    "lapa.patch=4",
    "lapa.lam_layers=1",
    "lapa.batch_size=24",
    "visual_lam.human_batch_size=8",
    "lapa.log_every=5",
    "lapa.warmup_steps=5",
    "lapa.restart_every=5",
    "lapa.steps=60",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lapa")
    cfg = load_config("tiny", SMALL + ["out_dir=%s" % out])
    eps = make_synthetic_episodes(12, length=24, image_size=16, seed=0)
    clips = make_synthetic_human_clips(4, length=16, image_size=16, seed=0)
    model, res = train_lapa(cfg, eps, clips, resume=False, progress=False)
    return dict(cfg=cfg, eps=eps, model=model, res=res, out=out)


def test_reconstruction_improves_and_codebook_is_used(trained):
    hist = trained["res"].history
    assert hist[-1]["recon"] < 0.7 * hist[0]["recon"]
    assert trained["model"].codebook.weight.shape == (8, 32)
    assert max(h["perplexity"] for h in hist[-4:]) > 1.5


def test_encode_pair_api_reload_and_reconstruction_shape(trained):
    m = trained["model"]
    fr = (
        torch.from_numpy(trained["eps"][0]["images"]["observation.images.scene"])
        .permute(0, 3, 1, 2)
        .contiguous()
    )
    z, idx = m.encode_pair(fr[:4], fr[6:10])
    assert z.shape == (4, 4, 32) and idx.shape == (4, 4) and int(idx.max()) < 8
    assert m.reconstruct(fr[:4], z).shape == (4, 3, 16, 16)
    loaded, ck = load_lapa(trained["out"] / "lapa" / "final.safetensors")
    assert torch.equal(loaded.encode_pair(fr[:4], fr[6:10])[1], idx)
    with pytest.raises(ValueError, match="not a visual_lam checkpoint"):
        from clap_train.visual_lam import load_visual_lam

        load_visual_lam(trained["out"] / "lapa" / "final.safetensors")


def test_run_probes_writes_comparison_table(trained, tmp_path):
    cfg = trained["cfg"]
    seed_everything(0)
    act = ActVAE(cfg.act_vae, 3, cfg.data.chunk_len)
    untrained_clap = VisualLAM(cfg.visual_lam, act, cfg.data.image_size).eval()
    heldout = make_synthetic_episodes(6, length=24, image_size=16, seed=50)
    res = run_probes(
        cfg,
        heldout,
        models={"CLAP/ConLA": untrained_clap, "LAPA-style": trained["model"]},
        out_dir=tmp_path,
    )
    for name in ("CLAP/ConLA", "LAPA-style"):
        r = res[name]
        assert r["episodes"] == 6 and r["windows"] == 6 * len(range(0, 24 - 6, 2))
        assert set(r["quantised"]["leakage"]) == {"background", "distractor"}
        assert np.isfinite(r["continuous"]["r2_chunk"])
    assert res["LAPA-style"]["codebook_size"] == 8
    on_disk = json.loads((tmp_path / "probes.json").read_text())
    assert on_disk["LAPA-style"]["codes_used"] == res["LAPA-style"]["codes_used"]
    assert "| LAPA-style | quantised |" in (tmp_path / "probes.md").read_text()
