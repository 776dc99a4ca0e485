"""pseudo_label.model=lapa: human clips labelled with the LAPA-style baseline's codes."""

import pytest
import torch

from clap_train.common import load_config
from clap_train.data import make_synthetic_episodes, make_synthetic_human_clips
from clap_train.lapa import train_lapa
from clap_train.ntp import label_in_memory
from clap_train.pseudo_label import label_clip, labeller_path, load_labeller

torch.set_num_threads(1)
SMALL = [
    "data.image_size=16",
    "data.chunk_len=6",
    "data.stride=2",
    "lapa.width=32",
    "lapa.patch=4",
    "lapa.lam_layers=1",
    "lapa.batch_size=8",
    "visual_lam.human_batch_size=4",
    "lapa.steps=3",
    "lapa.warmup_steps=1",
    "lapa.log_every=1",
]


def test_lapa_labels_human_clips_and_the_default_still_wants_visual_lam(tmp_path):
    cfg = load_config("tiny", SMALL + ["out_dir=%s" % tmp_path, "pseudo_label.model=lapa"])
    eps = make_synthetic_episodes(3, length=16, image_size=16, seed=0)
    clips = make_synthetic_human_clips(2, length=16, image_size=16, seed=0)
    model, _ = train_lapa(cfg, eps, clips, resume=False, progress=False)
    assert labeller_path(cfg) == tmp_path / "lapa" / "final.safetensors"
    loaded, ck, _ = load_labeller(cfg)
    assert type(loaded).__name__ == "LAPA"
    codes = label_in_memory(cfg, [dict(c) for c in clips], progress=False)
    expect = label_clip(model.eval(), clips[0]["frames"], 6, 16)
    assert [list(t) for _, t in codes[0]] == expect["tokens"]
    assert all(0 <= i < cfg.lapa.codebook_size for _, t in codes[0] for i in t)
    # the default labeller is the visual LAM, whose checkpoint this run does not have
    default = load_config("tiny", SMALL + ["out_dir=%s" % tmp_path])
    with pytest.raises(ValueError, match="no visual_lam checkpoint"):
        label_in_memory(default, [dict(c) for c in clips], progress=False)
    bad = load_config("tiny", SMALL + ["out_dir=%s" % tmp_path, "pseudo_label.model=vae"])
    with pytest.raises(ValueError, match="pseudo_label.model must be one of visual_lam, lapa"):
        labeller_path(bad)
