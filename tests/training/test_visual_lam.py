"""Visual latent-action model: frozen codebook, SigLIP alignment, ConLA pairs, HF backbones,
reload."""

import numpy as np
import pytest
import torch

from clap_train.act_vae import ActVAE, train_act_vae
from clap_train.common import load_config, seed_everything
from clap_train.data import (
    Normalizer,
    RobotPairSource,
    build_robot_windows,
    make_synthetic_episodes,
    make_synthetic_human_clips,
)
from clap_train.visual_lam import (
    VisualLAM,
    conla_labels,
    load_visual_lam,
    siglip_loss,
    train_visual_lam,
)

SMALL = [
    "data.image_size=16",
    "data.chunk_len=6",
    "data.stride=2",
    "act_vae.d_model=32",
    "act_vae.enc_layers=1",
    "act_vae.dec_layers=1",
    "act_vae.codebook_size=32",
    "act_vae.code_dim=16",
    "act_vae.num_tokens=2",
    "act_vae.steps=80",
    "act_vae.log_every=10",
    "visual_lam.width=32",
    "visual_lam.patch=4",
    "visual_lam.lam_layers=1",
    "visual_lam.predictor_layers=1",
    "visual_lam.batch_size=24",
    "visual_lam.human_batch_size=12",
    "visual_lam.log_every=5",
    "visual_lam.warmup_steps=5",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vlam")
    cfg = load_config("tiny", SMALL + ["out_dir=%s" % out, "visual_lam.steps=60"])
    eps = make_synthetic_episodes(16, length=30, image_size=16, seed=0)
    clips = make_synthetic_human_clips(8, length=20, image_size=16, seed=0)
    act, _, stats = train_act_vae(cfg, episodes=eps, resume=False, progress=False)
    codebook_before = act.codebook.weight.detach().clone()
    act_params = {k: v.clone() for k, v in act.state_dict().items()}
    model, res = train_visual_lam(cfg, act, stats, eps, clips, resume=False, progress=False)
    return dict(
        cfg=cfg,
        eps=eps,
        clips=clips,
        act=act,
        stats=stats,
        model=model,
        res=res,
        out=out,
        codebook_before=codebook_before,
        act_params=act_params,
    )


def test_siglip_loss_prefers_matched_pairs():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    ls, b = torch.tensor(np.log(10.0)), torch.tensor(-5.0)
    matched = siglip_loss(x, x + 0.05 * torch.randn(16, 8), ls, b)
    shuffled = siglip_loss(x, x[torch.randperm(16)], ls, b)
    assert matched < shuffled


def test_conla_labels_follow_category_and_scene():
    cat = torch.tensor([0, 0, 1, 1])
    scene = torch.tensor([0, 1, 0, 1])
    labels, weights = conla_labels(cat, scene, hard_weight=3.0)
    assert labels[0, 1] == 1 and labels[2, 3] == 1  # same action, other scene: positive
    assert labels[0, 2] == -1 and weights[0, 2] == 3.0  # same scene, other action: hard negative
    assert labels[0, 3] == -1 and weights[0, 3] == 1.0
    assert labels[0, 0] == 0 and labels[1, 1] == 0  # self (same action & scene): ignored


def test_training_lowers_losses_and_keeps_act_vae_frozen(trained):
    hist = trained["res"].history
    first, last = hist[0], hist[-1]
    for k in ("siglip", "align", "conla"):
        assert last[k] < first[k], (k, first[k], last[k])
    assert {"teacher", "reverse", "pred", "l1", "token_acc"} <= set(last)
    m = trained["model"]
    assert torch.equal(m.codebook.weight, trained["codebook_before"])
    for k, v in m.act_vae.state_dict().items():
        assert torch.equal(v, trained["act_params"][k]), k


def test_siglip_is_lower_for_true_pairs_after_training(trained):
    cfg, m = trained["cfg"], trained["model"]
    d = cfg.data
    w = build_robot_windows(trained["eps"], d.chunk_len, d.image_size, stride=d.stride)
    src = RobotPairSource(w, Normalizer.from_dict(trained["stats"]["action"]))
    batch = src.sample(48, torch.Generator().manual_seed(5))
    with torch.no_grad():
        z_e, _, _ = m.encode_pair_continuous(batch["obs"], batch["obs_next"])
        a_q, _ = m.act_vae.encode(batch["actions"])
        perm = torch.roll(torch.arange(48), 7)
        matched = siglip_loss(m._flat(z_e), m._flat(a_q), m.log_scale, m.bias)
        mismatched = siglip_loss(m._flat(z_e), m._flat(a_q[perm]), m.log_scale, m.bias)
    assert matched < mismatched


def test_encode_pair_api_and_checkpoint_reload(trained):
    m = trained["model"]
    fr = torch.from_numpy(trained["eps"][0]["images"]["observation.images.scene"]).permute(
        0, 3, 1, 2
    )
    z, idx = m.encode_pair(fr[:5].contiguous(), fr[6:11].contiguous())
    assert z.shape == (5, m.T, m.D) and idx.shape == (5, m.T)
    assert int(idx.min()) >= 0 and int(idx.max()) < m.codebook.weight.shape[0]
    assert torch.allclose(z, m.codebook.weight[idx])
    tokens = m.backbone(fr[:3].contiguous())
    assert tokens.shape == (3, (16 // 4) ** 2, 32)
    loaded, ck = load_visual_lam(trained["out"] / "visual_lam" / "final.safetensors")
    z2, idx2 = loaded.encode_pair(fr[:5].contiguous(), fr[6:11].contiguous())
    assert torch.equal(idx, idx2) and torch.equal(z, z2)
    assert ck.stats["action"]["mean"].shape == (3,)


def test_teacher_is_an_ema_of_the_student():
    cfg = load_config("tiny", SMALL + ["visual_lam.teacher_decay=0.5"])
    seed_everything(0)
    m = VisualLAM(cfg.visual_lam, ActVAE(cfg.act_vae, 3, 6), 16)
    p_s = next(m.backbone.parameters())
    p_t = next(m.teacher_backbone.parameters())
    with torch.no_grad():
        p_s.add_(1.0)
    before = p_t.detach().clone()
    m.after_optimizer_step(1)
    assert torch.allclose(p_t, 0.5 * before + 0.5 * p_s)
    assert not p_t.requires_grad


HF_CONFIGS = {
    "vit": {
        "model_type": "vit",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 16,
        "patch_size": 4,
    },
    "dinov2": {
        "model_type": "dinov2",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "mlp_ratio": 2,
        "image_size": 16,
        "patch_size": 4,
    },
}


@pytest.mark.parametrize("kind", sorted(HF_CONFIGS))
def test_transformers_backbone_from_local_config_trains_and_reloads(tmp_path, kind):
    import json

    hf = json.dumps(HF_CONFIGS[kind])
    cfg = load_config(
        "tiny",
        SMALL
        + [
            "out_dir=%s" % tmp_path,
            "visual_lam.backbone=hf",
            "visual_lam.hf_config=%s" % hf,
            "visual_lam.steps=3",
            "act_vae.steps=3",
        ],
    )
    eps = make_synthetic_episodes(4, length=16, image_size=16, seed=1)
    act, _, stats = train_act_vae(cfg, episodes=eps, resume=False, progress=False)
    model, res = train_visual_lam(cfg, act, stats, eps, None, resume=False, progress=False)
    assert res.step == 3
    fr = (
        torch.from_numpy(eps[0]["images"]["observation.images.scene"])
        .permute(0, 3, 1, 2)
        .contiguous()
    )
    _, idx = model.encode_pair(fr[:2], fr[6:8])
    loaded, ck = load_visual_lam(tmp_path / "visual_lam" / "final.safetensors")
    assert ck.meta["hf_config"]["model_type"] == kind
    assert torch.equal(loaded.encode_pair(fr[:2], fr[6:8])[1], idx)


def test_transformers_backbone_by_local_path(tmp_path):
    from transformers import AutoConfig, AutoModel

    conf = AutoConfig.for_model(**HF_CONFIGS["dinov2"])
    AutoModel.from_config(conf).save_pretrained(tmp_path / "tiny-dinov2")
    cfg = load_config(
        "tiny",
        SMALL + ["visual_lam.backbone=hf", "visual_lam.hf_model=%s" % (tmp_path / "tiny-dinov2")],
    )
    m = VisualLAM(cfg.visual_lam, ActVAE(cfg.act_vae, 3, 6), 16).eval()
    ref = AutoModel.from_pretrained(tmp_path / "tiny-dinov2")
    # the weights really came from the directory
    for (k, a), (_, b) in zip(m.backbone.net.model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    z, idx = m.encode_pair(
        torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    )
    assert idx.shape == (2, m.T)
    with pytest.raises(ValueError, match="hf_model or visual_lam.hf_config"):
        bad = load_config("tiny", SMALL + ["visual_lam.backbone=hf"])
        VisualLAM(bad.visual_lam, ActVAE(bad.act_vae, 3, 6), 16)


def test_pseudo_labels_written_next_to_videos(trained, tmp_path):
    import json

    from clap_ros.data.video import read_video, write_video
    from clap_train.pseudo_label import load_pseudo_labels, run_pseudo_label

    clips = trained["clips"][:2]
    (tmp_path / "videos").mkdir()
    entries = []
    for i, c in enumerate(clips):
        write_video(tmp_path / "videos" / ("%06d.mp4" % i), c["frames"], fps=15)
        entries.append(
            {
                "file": "videos/%06d.mp4" % i,
                "action_category": c["action_category"],
                "instruction": "move " + c["action_category"],
                "scene_id": c["scene_id"],
                "appearance": c["appearance"],
                "num_frames": len(c["frames"]),
                "seed": i,
            }
        )
    (tmp_path / "labels.json").write_text(
        json.dumps({"format": "clap_ros_human_videos", "version": 1, "fps": 15, "clips": entries})
    )
    cfg = trained["cfg"]
    path = run_pseudo_label(
        cfg,
        checkpoint=str(trained["out"] / "visual_lam" / "final.safetensors"),
        directory=str(tmp_path),
        progress=False,
    )
    assert path == tmp_path / "pseudo_actions.json"
    doc = load_pseudo_labels(tmp_path)
    m = trained["model"]
    assert doc["chunk_len"] == 6 and doc["codebook_size"] == 32 and doc["tokens_per_chunk"] == m.T
    assert [c["file"] for c in doc["clips"]] == [e["file"] for e in entries]
    c0 = doc["clips"][0]
    assert c0["start_frames"] == list(range(0, 20 - 6, cfg.pseudo_label.stride))
    frames = (
        torch.from_numpy(read_video(tmp_path / entries[0]["file"])).permute(0, 3, 1, 2).contiguous()
    )
    _, idx = m.encode_pair(frames[0:3], frames[6:9])
    assert c0["tokens"][:3] == idx.tolist()
