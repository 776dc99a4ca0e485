"""Trainer infrastructure: typed configs and overrides, schedule, checkpoints, resume, DDP."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from clap_train.act_vae import ActVAE
from clap_train.common import (
    ConfigError,
    cosine_lr_factor,
    cosine_with_warmup,
    fit,
    load_checkpoint,
    load_config,
    save_checkpoint,
    seed_everything,
)
from clap_train.config import CONFIG_DIR, ActVAEConfig, config_from_json
from clap_train.data import ChunkSource, Normalizer, action_chunks, make_synthetic_episodes


def tiny_cfg(tmp_path, *extra):
    return load_config(
        "tiny",
        [
            "out_dir=%s" % tmp_path,
            "act_vae.d_model=32",
            "act_vae.enc_layers=1",
            "act_vae.dec_layers=1",
            "act_vae.codebook_size=16",
            "act_vae.code_dim=8",
            "act_vae.batch_size=16",
            "act_vae.log_every=5",
            "data.chunk_len=8",
            *extra,
        ],
    )


def chunks_for(cfg, n=6):
    eps = make_synthetic_episodes(n, length=30, image_size=16, seed=1)
    ch = action_chunks(eps, cfg.data.chunk_len)
    return Normalizer.fit(ch.reshape(-1, ch.shape[-1])).normalize(ch)


def test_presets_load_and_are_typed():
    for name in ("tiny", "paper"):
        cfg = load_config(name)
        assert isinstance(cfg.act_vae, ActVAEConfig)
        assert isinstance(cfg.act_vae.lr, float) and isinstance(cfg.act_vae.steps, int)
    paper = load_config(CONFIG_DIR / "paper.yaml")
    assert (
        paper.act_vae.codebook_size,
        paper.act_vae.code_dim,
        paper.act_vae.num_tokens,
        paper.data.chunk_len,
    ) == (512, 128, 8, 32)


def test_default_preset_inherits_tiny_and_overrides_only_what_it_names():
    tiny, default = load_config("tiny"), load_config("default")
    assert default.rf.steps > tiny.rf.steps and default.ntp.steps > tiny.ntp.steps
    assert default.out_dir == "runs/default"
    # everything the preset does not name is tiny's (the architecture of models/default)
    assert default.rf.d_model == tiny.rf.d_model and default.act_vae.codebook_size == 64
    assert default.data.image_size == tiny.data.image_size


def test_preset_base_chain_and_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("base: tiny\nrf:\n  steps: 11\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nrf:\n  lr: 0.5\n")
    cfg = load_config(str(tmp_path / "b.yaml"))
    assert (
        cfg.rf.steps == 11 and cfg.rf.lr == 0.5 and cfg.rf.d_model == load_config("tiny").rf.d_model
    )
    (tmp_path / "c.yaml").write_text("base: d.yaml\n")
    (tmp_path / "d.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(str(tmp_path / "c.yaml"))
    (tmp_path / "e.yaml").write_text("base: [tiny]\n")
    with pytest.raises(ConfigError, match="base must be"):
        load_config(str(tmp_path / "e.yaml"))


def test_dotted_overrides_are_parsed_and_type_checked():
    cfg = load_config(
        "tiny",
        [
            "act_vae.lr=1e-3",
            "act_vae.steps=7",
            "data.robot_dataset=/x/y",
            "visual_lam.freeze_backbone=true",
            "seed=3",
        ],
    )
    assert cfg.act_vae.lr == pytest.approx(1e-3) and cfg.act_vae.steps == 7
    assert (
        cfg.data.robot_dataset == "/x/y"
        and cfg.visual_lam.freeze_backbone is True
        and cfg.seed == 3
    )
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("tiny", ["act_vae.lrr=1"])
    with pytest.raises(ConfigError, match="integer"):
        load_config("tiny", ["act_vae.steps=abc"])
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config("tiny", ["nosuchstage.x=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny", ["act_vae.lr"])


def test_config_json_round_trip():
    cfg = load_config("tiny", ["act_vae.lr=0.002"])
    back = config_from_json(cfg.to_json())
    assert back.to_dict() == cfg.to_dict()


def test_cosine_schedule_shape():
    f = [cosine_lr_factor(s, 10, 110, 0.1) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    cosine_with_warmup(opt, 10, 110, 0.1, last_step=60)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * cosine_lr_factor(60, 10, 110, 0.1))


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    cfg = tiny_cfg(tmp_path)
    seed_everything(0)
    model = ActVAE(cfg.act_vae, 3, cfg.data.chunk_len)
    x = torch.randn(4, cfg.data.chunk_len, 3)
    model.train()
    model.loss(x)  # initialises the codebook from data (a buffer, must survive the round trip)
    model.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.loss(x)["loss"].backward()
    opt.step()
    stats = {"action": Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32)).to_dict()}
    path = save_checkpoint(
        tmp_path / "a.safetensors", model, cfg, stats, 5, opt, {"stage": "act_vae"}
    )
    ck = load_checkpoint(path)
    assert ck.step == 5 and ck.meta["stage"] == "act_vae"
    assert ck.cfg.to_dict() == cfg.to_dict()
    np.testing.assert_array_equal(ck.stats["action"]["std"], np.ones(3, np.float32))
    model2 = ActVAE(ck.cfg.act_vae, 3, cfg.data.chunk_len).eval()
    model2.load_state_dict(ck.state_dict)
    z1, i1 = model.encode(x)
    z2, i2 = model2.encode(x)
    assert torch.equal(i1, i2) and torch.equal(z1, z2)
    assert torch.equal(model.decode_indices(i1), model2.decode_indices(i1))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert set(s1) == set(s2)
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"])


def test_corrupt_or_foreign_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a clap_train checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def _train(cfg, out, chunks, stop_after=None, resume=True):
    seed_everything(cfg.seed)
    model = ActVAE(cfg.act_vae, chunks.shape[-1], cfg.data.chunk_len)
    res = fit(
        model,
        ChunkSource(chunks),
        cfg.act_vae,
        out,
        cfg=cfg,
        meta=model.constructor_meta(),
        seed=cfg.seed,
        resume=resume,
        progress=False,
        stop_after=stop_after,
    )
    return model, res


def test_resume_is_bit_identical_to_uninterrupted(tmp_path):
    cfg = tiny_cfg(
        tmp_path, "act_vae.steps=24", "act_vae.restart_every=5", "act_vae.warmup_steps=4"
    )
    chunks = chunks_for(cfg)
    straight, r1 = _train(cfg, tmp_path / "straight", chunks, resume=False)
    _, half = _train(cfg, tmp_path / "resumed", chunks, stop_after=11)
    assert half.step == 11 and not (tmp_path / "resumed" / "final.safetensors").exists()
    resumed, r2 = _train(cfg, tmp_path / "resumed", chunks)
    assert r2.resumed_from == 11 and r2.step == 24
    assert (tmp_path / "resumed" / "final.safetensors").is_file()
    sd1, sd2 = straight.state_dict(), resumed.state_dict()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    # TensorBoard event file and metrics.jsonl were written
    assert list((tmp_path / "straight" / "tb").glob("events.out.tfevents.*"))
    lines = [
        json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    assert lines[-1]["step"] == 24 and "perplexity" in lines[-1] and "lr" in lines[-1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, cfg_json, chunks, q):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = config_from_json(cfg_json)
        model, res = _train(cfg, out, torch.as_tensor(chunks), resume=False)
        flat = torch.cat(
            [p.detach().reshape(-1) for p in model.state_dict().values() if p.is_floating_point()]
        )
        q.put((rank, flat.numpy(), res.step))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_processes_keep_replicas_identical(tmp_path):
    cfg = tiny_cfg(tmp_path, "act_vae.steps=6", "act_vae.restart_every=3", "act_vae.warmup_steps=1")
    chunks = chunks_for(cfg)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(
            target=_ddp_worker, args=(r, 2, port, str(tmp_path / "ddp"), cfg.to_json(), chunks, q)
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    got = dict((r, (flat, step)) for r, flat, step in (q.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got[0][1] == got[1][1] == 6
    # gradients are averaged and codebook EMA statistics all-reduced, so the replicas never drift
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert (tmp_path / "ddp" / "final.safetensors").is_file()
