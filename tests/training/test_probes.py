"""Probes measure what they claim: R^2 for action content, leakage accuracy vs chance,
perplexity."""

import json

import numpy as np
import pytest

from clap_train.probes import codebook_stats, leakage_probe, linear_probe, write_comparison_table


def synthetic_latents(seed=0, episodes=24, per_ep=30, H=4):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(episodes), per_ep)
    background = rng.integers(0, 4, size=episodes)[groups]
    motion = rng.normal(size=(len(groups), 3))  # the "action" of each window
    start = rng.normal(size=(len(groups), 1, 2))
    steps = np.arange(1, H + 1)[None, :, None]
    chunks = np.concatenate(
        [start + steps * motion[:, None, :2], np.repeat(motion[:, None, 2:], H, 1)], -1
    )
    mix = rng.normal(size=(4, 16))
    action_latent = np.c_[motion, start[:, 0, :1]] @ mix + 0.05 * rng.normal(size=(len(groups), 16))
    return groups, background, chunks, action_latent, rng


def test_linear_probe_high_for_action_latent_low_for_noise():
    groups, _, chunks, lat, rng = synthetic_latents()
    good = linear_probe(lat, chunks, groups)
    noise = linear_probe(rng.normal(size=lat.shape), chunks, groups)
    assert good["r2_chunk"] > 0.9 and good["r2_motion"] > 0.9
    assert noise["r2_chunk"] < 0.1 and noise["r2_motion"] < 0.1


def test_leakage_probe_near_chance_without_appearance_high_with_it():
    groups, background, _, lat, rng = synthetic_latents(seed=1)
    clean = leakage_probe(lat, background, groups)
    onehot = np.eye(4)[background]
    leaky = leakage_probe(
        np.c_[lat, 2.0 * onehot + 0.3 * rng.normal(size=onehot.shape)], background, groups
    )
    assert clean["classes"] == 4
    assert clean["accuracy"] < clean["chance"] + 0.2
    assert leaky["accuracy"] > 0.95 and leaky["accuracy"] > leaky["chance"] + 0.3


def test_probe_splits_by_episode():
    # a latent that only identifies the episode predicts a per-episode label perfectly on a
    # window-level split but not at all across episodes: the probe must report the latter
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(20), 10)
    label = rng.integers(0, 2, size=20)[groups]
    episode_id = np.eye(20)[groups]
    res = leakage_probe(episode_id, label, groups)
    assert res["accuracy"] < 0.8
    with pytest.raises(ValueError, match="at least 2 episodes"):
        leakage_probe(episode_id[:10], label[:10], groups[:10])


def test_codebook_stats():
    uniform = codebook_stats(np.arange(64).repeat(10), 64)
    collapsed = codebook_stats(np.zeros(640, int), 64)
    assert uniform["perplexity"] == pytest.approx(64.0, rel=1e-4) and uniform["codes_used"] == 64
    assert collapsed["perplexity"] == pytest.approx(1.0) and collapsed["codes_used"] == 1


def test_comparison_table_written(tmp_path):
    row = {
        "windows": 10,
        "episodes": 2,
        "perplexity": 5.0,
        "codebook_size": 8,
        "codes_used": 6,
        "quantised": {
            "r2_chunk": 0.5,
            "r2_motion": 0.4,
            "leakage": {"background": {"accuracy": 0.3, "chance": 0.25, "classes": 4}},
        },
    }
    paths = write_comparison_table(
        {"CLAP/ConLA": row, "LAPA-style": dict(row, perplexity=2.0)}, tmp_path
    )
    assert json.loads(paths["json"].read_text())["LAPA-style"]["perplexity"] == 2.0
    md = paths["markdown"].read_text()
    assert "| CLAP/ConLA | quantised | 0.500 | 0.400 | 0.30 (0.25) | 5.0 / 8 | 6 |" in md
    assert "LAPA-style" in md and "background acc (chance)" in md
