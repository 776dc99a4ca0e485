"""CLAP-RF (rectified flow, DiT head) and Knowledge Matching / knowledge insulation."""

import math

import pytest
import torch

from clap_train.ntp import ClapNTP, NTPConfig
from clap_train.rf import ClapPolicy, RFConfig, knowledge_matching_kl, sample_flow_time

# Two shared cores: a second intra-op thread only spins against other processes.
torch.set_num_threads(1)

K, T, S, VOCAB, IMG, H, A = 8, 4, 3, 10, 32, 6, 3


def make_policy(seed=0, **rf_kw):
    torch.manual_seed(seed)
    ntp = ClapNTP(
        NTPConfig(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            intermediate_size=64,
            obs_width=16,
            max_instruction_len=4,
        ),
        image_size=IMG,
        codebook_size=K,
        num_tokens=T,
        state_dim=S,
        vocab_size=VOCAB,
    )
    cfg = RFConfig(d_model=48, num_layers=2, num_heads=4, **rf_kw)
    return ClapPolicy(cfg, ntp, torch.randn(K, 6), action_dim=A, chunk_len=H)


def problem(b=32, seed=0):
    """Chunks that depend on the state (a ramp towards it) and on the plan tokens (an offset)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, IMG, IMG, generator=g)
    ids = torch.randint(1, VOCAB, (b, 4), generator=g)
    mask = torch.ones(b, 4, dtype=torch.long)
    state = torch.randn(b, S, generator=g)
    codes = torch.randint(0, K, (b, T), generator=g)
    ramp = torch.linspace(0, 1, H)
    actions = state[:, None, :] * ramp[None, :, None] + 0.3 * (codes[:, :1, None] - K / 2) / K
    return img, ids, mask, state, actions, codes


def test_flow_time_distribution():
    cfg = RFConfig()
    t = sample_flow_time(20000, cfg, generator=torch.Generator().manual_seed(0))
    assert float(t.min()) >= 0.0 and float(t.max()) <= 0.999
    # E[0.999 (1 - Beta(1.5, 1))] = 0.999 * (1 - 1.5 / 2.5); most mass near the noise end
    assert abs(float(t.mean()) - 0.999 * 0.4) < 0.01
    assert float((t < 0.5).float().mean()) > 0.6
    t2 = sample_flow_time(20000, cfg)  # the torch.distributions path agrees
    assert abs(float(t2.mean()) - float(t.mean())) < 0.015


def test_rf_loss_decreases_and_four_euler_steps_recover_the_chunks():
    pol = make_policy(km_weight=0.0)
    img, ids, mask, state, actions, codes = problem()
    opt = torch.optim.AdamW(pol.trainable_parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(250):
        out = pol.loss(img, ids, mask, state, actions, codes, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["action_loss"]))
    assert sum(losses[-20:]) / 20 < 0.3 * sum(losses[:20]) / 20
    pol.eval()
    with torch.no_grad():
        noise = torch.randn(actions.shape, generator=torch.Generator().manual_seed(5))
        sampled = pol.sample(pol.ntp.encoder(img), codes, state, noise, num_steps=4)
        one_step = pol.sample(pol.ntp.encoder(img), codes, state, noise, num_steps=1)
    err = float((sampled - actions).pow(2).mean())
    mean_err = float((actions - actions.mean(0)).pow(2).mean())
    assert err < 0.25 * mean_err, (err, mean_err)
    assert err < float((noise - actions).pow(2).mean()) / 10
    assert err <= float((one_step - actions).pow(2).mean())  # more steps do not hurt here


def test_sample_de_normalises_with_the_action_stats():
    pol = make_policy().eval()
    img, ids, mask, state, actions, codes = problem(3)
    noise = torch.randn(3, H, A)
    with torch.no_grad():
        lat = pol.ntp.encoder(img)
        base = pol.sample(lat, codes, state, noise)
        pol.set_action_stats(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 2.0, 2.0]))
        scaled = pol.sample(lat, codes, state, noise)
    assert torch.allclose(scaled, base * 2 + torch.tensor([1.0, -2.0, 0.5]), atol=1e-5)


def test_km_term_is_zero_against_itself_and_positive_after_drift():
    pol = make_policy(km_weight=0.005)
    img, ids, mask, state, actions, codes = problem(8)
    assert pol.km_active and pol.reference is not None
    out = pol.loss(img, ids, mask, state, actions, codes)
    assert float(out["km_kl"]) == pytest.approx(0.0, abs=1e-7)
    assert float(out["loss"].detach()) == pytest.approx(float(out["action_loss"]), abs=1e-6)
    with torch.no_grad():  # the fine-tuned model drifts from the frozen reference
        for p in pol.ntp.parameters():
            p.add_(0.2 * torch.randn_like(p))
    out = pol.loss(img, ids, mask, state, actions, codes)
    kl = float(out["km_kl"])
    assert kl > 1e-3
    assert float(out["loss"].detach()) == pytest.approx(
        float(out["action_loss"]) + 0.005 * kl, rel=1e-4
    )
    # the reference did not move with the model
    ref_w = next(pol.reference.encoder.parameters())
    assert not torch.allclose(ref_w, next(pol.ntp.encoder.parameters()))
    # and the KL is a real KL: zero for equal logits, positive and asymmetric otherwise
    a, b = torch.randn(5, T, K), torch.randn(5, T, K)
    assert float(knowledge_matching_kl(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(knowledge_matching_kl(a, b)) > 0
    assert not math.isclose(float(knowledge_matching_kl(a, b)), float(knowledge_matching_kl(b, a)))


def test_km_gradient_pulls_the_ntp_back_to_the_reference():
    pol = make_policy(km_weight=1.0)
    img, ids, mask, state, actions, codes = problem(8)
    with torch.no_grad():
        for p in pol.ntp.lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    opt = torch.optim.SGD([p for p in pol.ntp.parameters() if p.requires_grad], lr=0.5)
    kls = []
    for _ in range(15):
        logits = pol.ntp(pol.ntp.encoder(img), ids, mask, codes, state)
        with torch.no_grad():
            ref = pol.reference(pol.reference.encoder(img), ids, mask, codes, state)
        kl = knowledge_matching_kl(ref, logits)
        opt.zero_grad()
        kl.backward()
        opt.step()
        kls.append(float(kl.detach()))
    assert kls[-1] < 0.5 * kls[0]


def test_freeze_backbone_leaves_the_ntp_unchanged():
    pol = make_policy(freeze_backbone=True)
    assert not pol.km_active and pol.reference is None
    before = {k: v.clone() for k, v in pol.ntp.state_dict().items()}
    head_before = [p.clone() for p in pol.head.parameters()]
    img, ids, mask, state, actions, codes = problem(8)
    opt = torch.optim.AdamW(pol.trainable_parameters(), lr=1e-2)
    for _ in range(5):
        out = pol.loss(img, ids, mask, state, actions, codes)
        assert "km_kl" not in out
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    for k, v in pol.ntp.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(head_before, pol.head.parameters()))


def test_finetune_without_km_trains_only_the_shared_encoder():
    pol = make_policy(km_weight=0.0)
    trainable = {n for n, p in pol.named_parameters() if p.requires_grad}
    assert any(n.startswith("ntp.encoder.") for n in trainable)
    assert not any(n.startswith("ntp.lm.") for n in trainable)
    with_km = make_policy(km_weight=0.005)
    assert any(n.startswith("ntp.lm.") and p.requires_grad for n, p in with_km.named_parameters())
    # the frozen reference is not part of the saved state
    assert not any("_ref" in k for k in with_km.state_dict())
