"""CLAP-NTP: a transformers causal LM over image/instruction/state tokens emitting <ACT_k>
tokens."""

import json

import numpy as np
import pytest
import torch

from clap_train.ntp import (
    ClapNTP,
    HumanCodeWindows,
    NTPConfig,
    PolicySource,
    PolicyWindows,
    attach_pseudo_codes,
    build_causal_lm,
    human_code_windows,
    load_pseudo_codes,
)

# Two shared cores: a second intra-op thread only spins against other processes (40x slower).
torch.set_num_threads(1)

K, T, S, VOCAB, IMG = 12, 4, 3, 10, 32


def tiny_cfg(**kw):
    base = dict(
        hidden_size=48,
        num_layers=2,
        num_heads=4,
        intermediate_size=96,
        obs_width=24,
        obs_stride=16,
        max_instruction_len=5,
    )
    base.update(kw)
    return NTPConfig(**base)


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return ClapNTP(
        tiny_cfg(**kw), image_size=IMG, codebook_size=K, num_tokens=T, state_dim=S, vocab_size=VOCAB
    )


def problem(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, IMG, IMG, generator=g)
    ids = torch.randint(2, VOCAB, (b, 5), generator=g)
    mask = torch.ones(b, 5, dtype=torch.long)
    mask[:, 3:] = 0
    ids = ids * mask
    state = torch.randn(b, S, generator=g)
    codes = torch.randint(0, K, (b, T), generator=g)
    return img, ids, mask, state, codes


def test_loss_decreases_and_greedy_decode_reproduces_memorised_codes():
    model = make_model()
    img, ids, mask, state, codes = problem()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        out = model.loss(img, ids, mask, codes, state)
        first = first if first is not None else float(out["loss"].detach())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    model.eval()
    assert float(out["loss"].detach()) < 0.1 * first
    with torch.no_grad():
        idx, logits = model.decode_greedy(model.encoder(img), ids, mask, state)
    assert idx.shape == (6, T) and logits.shape == (6, T, K)
    assert torch.equal(idx, codes)
    # the decoder's per-step logits agree with the teacher-forced pass on the same codes
    with torch.no_grad():
        tf = model(model.encoder(img), ids, mask, codes, state)
    assert torch.allclose(tf, logits, atol=1e-4)


def test_gpt2_family_builds_and_decodes():
    model = make_model(lm="tiny-gpt2").eval()
    img, ids, mask, state, codes = problem(2)
    idx, logits = model.decode_greedy(model.encoder(img), ids, mask, state)
    assert idx.shape == (2, T) and int(idx.max()) < K
    assert torch.equal(idx, logits.argmax(-1))


def test_action_tokens_are_appended_to_a_pretrained_vocabulary(tmp_path):
    """The 'any LM by name' path: a causal LM saved locally (no download) gets K+1 new rows."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    base = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    AutoModelForCausalLM.from_config(base).save_pretrained(tmp_path / "lm")
    cfg = tiny_cfg(lm=str(tmp_path / "lm"))
    lm, offset = build_causal_lm(cfg, K + 1, 64)
    assert offset == 50 and lm.get_input_embeddings().num_embeddings == 50 + K + 1
    model = ClapNTP(
        cfg, image_size=IMG, codebook_size=K, num_tokens=T, state_dim=S, vocab_size=VOCAB
    )
    assert model.act_offset == 50 and model.bos_id == 50 + K and model.hidden_size == 32
    img, ids, mask, state, codes = problem(2)
    idx, logits = model.decode_greedy(model.encoder(img), ids, mask, state)
    assert idx.shape == (2, T) and int(idx.max()) < K and logits.shape == (2, T, K)


def test_missing_state_uses_the_learned_null_token():
    model = make_model().eval()
    img, ids, mask, state, codes = problem(4)
    lat = model.encoder(img)
    no_state = torch.zeros(4)
    with torch.no_grad():
        a = model(lat, ids, mask, codes, state, no_state)
        b = model(lat, ids, mask, codes, state * 10 + 3, no_state)
        c = model(lat, ids, mask, codes, state * 10 + 3, torch.ones(4))
    assert torch.allclose(a, b)  # human clips: proprioception is ignored
    assert not torch.allclose(a, c)  # robot samples: it is used


def test_padding_in_the_instruction_is_ignored():
    model = make_model().eval()
    img, ids, mask, state, codes = problem(3)
    lat = model.encoder(img)
    junk = ids.clone()
    junk[mask == 0] = 7  # change only padded positions
    with torch.no_grad():
        assert torch.allclose(
            model(lat, ids, mask, codes, state), model(lat, junk, mask, codes, state), atol=1e-5
        )


def test_state_normalisation_is_checked_and_applied():
    model = make_model()
    with pytest.raises(ValueError, match="4 dims, model expects 3"):
        model.set_state_stats([0.0] * 4, [1.0] * 4)
    model.set_state_stats([1.0, 2.0, 3.0], [0.0, 2.0, 2.0])
    assert model.state_std.min() > 0  # a constant dimension must not divide by zero


def _windows(n=10, frames=20):
    g = torch.Generator().manual_seed(0)
    return PolicyWindows(
        frames=torch.randint(0, 255, (frames, 3, IMG, IMG), dtype=torch.uint8, generator=g),
        i_t=torch.arange(n),
        state=torch.randn(n, S, generator=g),
        chunks=torch.randn(n, 8, 2, generator=g),
        instructions=["put the cube"] * n,
        episode=torch.zeros(n, dtype=torch.long),
        codes=torch.randint(0, K, (n, T), generator=g),
    )


def test_policy_source_mixes_human_pseudo_codes():
    from clap_ros.inference.tokenizer import InstructionTokenizer
    from clap_train.data import Normalizer

    robot = _windows()
    human = HumanCodeWindows(
        frames=torch.zeros(5, 3, IMG, IMG, dtype=torch.uint8),
        i_t=torch.arange(5),
        codes=torch.full((5, T), K - 1),
        instructions=["move left"] * 5,
    )
    tok = InstructionTokenizer.fit(["put the cube", "move left"], max_length=5)
    norm = Normalizer(np.zeros(2, np.float32), np.ones(2, np.float32))
    src = PolicySource(robot, tok, norm, human, human_mix=0.25)
    batch = src.sample(8, torch.Generator().manual_seed(1))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, IMG, IMG)
    assert batch["has_state"].tolist() == [1.0] * 6 + [0.0] * 2
    assert (batch["codes"][6:] == K - 1).all()
    assert tok.decode(batch["instr_ids"][7].tolist()) == "move left"
    assert "actions" not in batch  # RF never trains on human clips: they have no actions
    robot_only = PolicySource(robot, tok, norm).sample(4, torch.Generator().manual_seed(1))
    assert robot_only["actions"].shape == (4, 8, 2) and robot_only["has_state"].min() == 1


def test_pseudo_labels_from_file_and_memory(tmp_path):
    clips = [
        {
            "file": "videos/000000.mp4",
            "frames": np.zeros((12, 16, 16, 3), np.uint8),
            "action_category": "push",
            "instruction": "push the block",
        },
        {
            "file": "videos/000001.mp4",
            "frames": np.zeros((12, 16, 16, 3), np.uint8),
            "action_category": "left",
        },
    ]
    doc = {
        "format": "clap_pseudo_actions",
        "version": 1,
        "clips": [
            {
                "file": "videos/000001.mp4",
                "start_frames": [0, 2],
                "tokens": [[1, 2, 3, 4], [5, 6, 7, 8]],
            },
            {"file": "videos/000000.mp4", "start_frames": [1], "tokens": [[0, 0, 1, 1]]},
        ],
    }
    (tmp_path / "pseudo_actions.json").write_text(json.dumps(doc))
    pseudo = load_pseudo_codes(clips, tmp_path)
    assert pseudo == [[(1, [0, 0, 1, 1])], [(0, [1, 2, 3, 4]), (2, [5, 6, 7, 8])]]
    w = human_code_windows(clips, pseudo, image_size=IMG)
    assert w.codes.tolist() == [[0, 0, 1, 1], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert w.i_t.tolist() == [1, 12, 14]  # frame offsets into the concatenated clips
    assert w.instructions == ["push the block", "left", "left"]  # category when no instruction
    assert load_pseudo_codes(clips, tmp_path / "nowhere") is None
    attach_pseudo_codes(
        clips, [{"start_frames": [3], "tokens": [[9, 9, 9, 9]]}, {"start_frames": [], "tokens": []}]
    )
    assert load_pseudo_codes(clips) == [[(3, [9, 9, 9, 9])], []]
    with pytest.raises(ValueError, match="no pseudo labels for 1 clips"):
        load_pseudo_codes([{"file": "videos/x.mp4"}], tmp_path)


def test_per_task_metrics_evaluate_each_task_on_its_own_windows():
    from clap_train.ntp import PolicyWindows, per_task_metrics

    n = 6
    w = PolicyWindows(
        frames=torch.zeros(3, 3, 8, 8, dtype=torch.uint8),
        i_t=torch.tensor([0, 1, 2, 0, 1, 2]),
        state=torch.arange(n).float()[:, None],
        chunks=torch.zeros(n, 2, 1),
        instructions=list("abcdef"),
        episode=torch.tensor([0, 0, 1, 1, 2, 2]),
        codes=torch.arange(n)[:, None],
    )
    episodes = [{"task_name": "reach"}, {"task_name": "stack"}, {"task_name": "reach"}]
    seen = {}

    def evaluate(sub):
        key = "".join(sub.instructions)
        seen[key] = sub
        return {"acc": float(sub.codes.float().mean())}

    out = per_task_metrics(evaluate, w, episodes)
    # reach = episodes 0 and 2 (windows 0, 1, 4, 5); stack = episode 1 (windows 2, 3)
    assert out == {"acc@reach": 2.5, "acc@stack": 2.5}
    assert set(seen) == {"abef", "cd"}
    assert seen["cd"].state.flatten().tolist() == [2.0, 3.0]
    assert seen["abef"].i_t.tolist() == [0, 1, 1, 2]
    # one task only: the overall figure says it all
    assert per_task_metrics(evaluate, w, [{"task_name": "reach"}] * 3) == {}
