"""The word-level instruction tokenizer shared by training and the planner node (no torch)."""

import json
import sys

import numpy as np
import pytest

from clap_ros.inference.tokenizer import InstructionTokenizer, TokenizerError, normalize

CORPUS = [
    "Put the red cube in the blue bowl.",
    "push the green block to the left",
    "put the blue cube in the red bowl",
    "open the drawer",
]


def test_round_trip_of_known_words():
    tok = InstructionTokenizer.fit(CORPUS, max_length=12)
    for text in CORPUS:
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == " ".join(normalize(text))


def test_batch_padding_mask_and_unknown_words():
    tok = InstructionTokenizer.fit(CORPUS, max_length=6)
    ids, mask = tok.encode_batch(["put the red cube", "stack the purple pyramid now please ok", ""])
    assert ids.shape == mask.shape == (3, 6) and ids.dtype == mask.dtype == np.int64
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert (ids[0][mask[0] == 0] == tok.pad_id).all()
    # truncated at max_length; unseen words map to <unk>
    assert mask[1].sum() == 6 and ids[1, 0] == tok.unk_id and ids[1, 1] == tok.encode("the")[0]
    # an empty instruction still attends to one token, so attention rows are never all masked
    assert mask[2].tolist() == [1, 0, 0, 0, 0, 0] and ids[2, 0] == tok.unk_id


def test_vocabulary_is_deterministic_and_frequency_ordered():
    a = InstructionTokenizer.fit(CORPUS)
    b = InstructionTokenizer.fit(list(reversed(CORPUS)))
    assert a == b
    assert a.vocab[:3] == ["<pad>", "<unk>", "the"]  # "the" is the most frequent word


def test_save_load_round_trip(tmp_path):
    tok = InstructionTokenizer.fit(CORPUS, max_length=9)
    path = tok.save(tmp_path / "tokenizer.json")
    again = InstructionTokenizer.load(path)
    assert again == tok
    assert again.encode_batch(CORPUS)[0].tolist() == tok.encode_batch(CORPUS)[0].tolist()


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        InstructionTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        InstructionTokenizer.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TokenizerError, match="not a clap_ros_word_tokenizer"):
        InstructionTokenizer.load(tmp_path / "other.json")
    with pytest.raises(TokenizerError, match="must start with"):
        InstructionTokenizer(["hello", "<pad>", "<unk>"])
    with pytest.raises(TokenizerError, match="duplicate"):
        InstructionTokenizer(["<pad>", "<unk>", "a", "a"])
    tok = InstructionTokenizer.fit(CORPUS)
    with pytest.raises(TokenizerError, match="outside vocabulary"):
        tok.decode([tok.vocab_size + 3])


def test_runtime_module_does_not_import_torch():
    import subprocess

    code = (
        "import sys; import clap_ros.inference.tokenizer as t; "
        "t.InstructionTokenizer.fit(['a b']).encode_batch(['a']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
