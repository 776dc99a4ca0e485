"""Act-VAE: chunk extraction per action space, API shapes, learning, and codebook health."""

import numpy as np
import pytest
import torch

from clap_train.act_vae import ActVAE, load_act_vae, train_act_vae
from clap_train.common import load_config
from clap_train.common.vq import EMAVectorQuantizer, perplexity
from clap_train.data import DataError, Normalizer, action_chunks, chunk_at, make_synthetic_episodes


def test_action_chunks_absolute_and_delta():
    eps = make_synthetic_episodes(2, length=20, image_size=16)
    H = 5
    ab = action_chunks(eps, H, "joint_abs")
    de = action_chunks(eps, H, "joint_delta")
    assert ab.shape == de.shape == (2 * (20 - H), H, 3)
    np.testing.assert_allclose(ab[0], eps[0]["action"][0:H])
    # arm dims are relative to the measured state at t; the gripper (last dim) stays absolute
    np.testing.assert_allclose(
        de[3, :, :2], eps[0]["action"][3 : 3 + H, :2] - eps[0]["state"][3, :2], atol=1e-6
    )
    np.testing.assert_allclose(de[3, :, 2], eps[0]["action"][3 : 3 + H, 2])
    with pytest.raises(DataError, match="unknown action_space"):
        action_chunks(eps, H, "cartesian")
    with pytest.raises(DataError, match="longer than the chunk"):
        action_chunks(eps, 50)


def test_ee_delta_uses_robot_kinematics():
    from clap_ros.robots import load_profile

    prof = load_profile("fr3")
    q0 = np.asarray(prof.home, np.float32)
    T = 6
    act = np.tile(np.r_[q0, 1.0], (T, 1)).astype(np.float32)
    act[:, 0] += np.linspace(0, 0.2, T)  # rotate the base joint: the TCP moves, orientation yaws
    ep = {"state": act.copy(), "action": act}
    ep["state"][:] = act[0]
    ch = chunk_at(ep, 0, 4, "ee_delta", profile=prof)
    assert ch.shape == (4, 7)
    np.testing.assert_allclose(ch[0, :6], 0.0, atol=1e-6)
    # a pure base rotation about z by angle a: the rotation-vector delta is (0, 0, a)
    np.testing.assert_allclose(ch[3, 3:6], [0, 0, act[3, 0] - act[0, 0]], atol=1e-4)
    assert np.linalg.norm(ch[3, :3]) > 1e-3 and ch[3, 6] == 1.0


def test_api_shapes_and_per_arm_tokens():
    cfg = load_config(
        "tiny",
        [
            "act_vae.d_model=32",
            "act_vae.enc_layers=1",
            "act_vae.dec_layers=1",
            "act_vae.num_arms=2",
            "act_vae.num_tokens=3",
            "act_vae.code_dim=8",
            "act_vae.codebook_size=16",
        ],
    )
    torch.manual_seed(0)
    m = ActVAE(cfg.act_vae, action_dim=8, chunk_len=6).eval()
    x = torch.randn(5, 6, 8)
    z, idx = m.encode(x)
    assert z.shape == (5, 6, 8) and idx.shape == (5, 6) and idx.dtype == torch.long
    assert m.tokens_per_chunk == 6 and m.codebook.weight.shape == (16, 8)
    # z is the straight-through estimate x + (q - x).detach(): q up to float32 rounding.
    assert torch.allclose(m.embed_indices(idx), z, rtol=1e-5, atol=1e-6)
    assert m.decode_indices(idx).shape == (5, 6, 8)
    with pytest.raises(ValueError, match="expected chunks"):
        m.encode(torch.randn(5, 7, 8))
    with pytest.raises(ValueError, match="divisible"):
        ActVAE(cfg.act_vae, action_dim=7, chunk_len=6)


def test_dead_code_restarts_prevent_collapse():
    torch.manual_seed(0)
    # 64 codes but data from 8 tight clusters far from a bad init: without restarts most codes die
    centers = torch.randn(8, 4) * 3

    def batch():
        return centers[torch.randint(0, 8, (256,))] + 0.05 * torch.randn(256, 4)

    def run(restart_every):
        vq = EMAVectorQuantizer(
            64, 4, decay=0.9, dead_threshold=0.5, restart_every=restart_every
        ).train()
        vq.initialized.fill_(True)  # skip data init: a deliberately bad (all near 0) codebook
        vq.codebook.weight.data.mul_(0.01)
        vq.ema_sum.copy_(vq.codebook.weight)
        for s in range(1, 61):
            vq(batch())
            vq.maybe_restart(s)
        vq.eval()
        _, idx, _ = vq(batch())
        return perplexity(idx, 64).item(), int(vq.restarts)

    p_no, r_no = run(0)
    p_yes, r_yes = run(5)
    assert r_no == 0 and r_yes > 0
    assert p_yes > 6.0 and p_yes > 2 * p_no


def test_training_reduces_loss_keeps_codebook_alive_and_reloads(tmp_path):
    cfg = load_config(
        "tiny",
        [
            "out_dir=%s" % tmp_path,
            "act_vae.steps=150",
            "act_vae.log_every=10",
            "act_vae.d_model=48",
            "data.chunk_len=8",
        ],
    )
    eps = make_synthetic_episodes(12, length=40, image_size=16, seed=3)
    model, res, stats = train_act_vae(cfg, episodes=eps, resume=False, progress=False)
    hist = res.history
    assert hist[-1]["recon"] < 0.6 * hist[0]["recon"]
    assert hist[-1]["perplexity"] > 8.0  # well above collapse (1) for a 64-code book
    loaded, ck = load_act_vae(tmp_path / "act_vae" / "final.safetensors")
    norm = Normalizer.from_dict(ck.stats["action"])
    x = torch.as_tensor(norm.normalize(action_chunks(eps[:2], 8)))
    model.eval()
    _, i1 = model.encode(x)
    _, i2 = loaded.encode(x)
    assert torch.equal(i1, i2)
    recon = norm.unnormalize(loaded.decode_indices(i2)).detach().numpy()
    raw = action_chunks(eps[:2], 8)
    # decoded chunks track the true ones much better than the mean chunk does
    assert np.mean((recon - raw) ** 2) < 0.5 * np.mean((raw - raw.mean((0, 1))) ** 2)
