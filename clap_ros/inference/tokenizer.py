"""Word-level instruction tokenizer shared by training (clap_train) and the runtime planner.

Deliberately tiny and dependency-free (plain Python + numpy): the planner node must turn an
instruction string into exactly the ids the NTP model was trained on, without torch or a hub
tokenizer. The vocabulary is a JSON file shipped inside the model bundle, so training and runtime
cannot drift apart.

Normalisation: lower-case, words are maximal runs of ``[a-z0-9]``; everything else separates words.
Id 0 is padding, id 1 is the unknown word.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, UNK)
FORMAT = "clap_ros_word_tokenizer"
VERSION = 1

_WORD = re.compile(r"[a-z0-9]+")


class TokenizerError(ValueError):
    """A vocabulary file or tokenizer argument is malformed."""


def normalize(text: str) -> List[str]:
    """Split an instruction into normalised words (the unit the vocabulary is built from)."""
    if not isinstance(text, str):
        raise TokenizerError(f"instruction must be a string, got {type(text).__name__}")
    return _WORD.findall(text.lower())


class InstructionTokenizer:
    """Maps instructions to fixed-length id arrays plus attention masks."""

    def __init__(self, vocab: Sequence[str], max_length: int = 16):
        vocab = list(vocab)
        if tuple(vocab[:2]) != SPECIAL_TOKENS:
            raise TokenizerError(f"vocabulary must start with {SPECIAL_TOKENS}, got {vocab[:2]}")
        if len(set(vocab)) != len(vocab):
            dupes = sorted(w for w, c in Counter(vocab).items() if c > 1)
            raise TokenizerError(f"vocabulary has duplicate entries: {dupes[:5]}")
        if int(max_length) < 1:
            raise TokenizerError(f"max_length must be >= 1, got {max_length}")
        self.vocab: List[str] = vocab
        self.max_length = int(max_length)
        self._index: Dict[str, int] = {w: i for i, w in enumerate(vocab)}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, texts: Iterable[str], max_length: int = 16, min_count: int = 1
    ) -> "InstructionTokenizer":
        """Build a vocabulary from instructions; words are ordered by frequency then spelling so
        the same corpus always gives the same ids."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(normalize(text))
        words = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(list(SPECIAL_TOKENS) + words, max_length=max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, text: str) -> List[int]:
        """Ids of the words of ``text`` (truncated to ``max_length``, not padded)."""
        return [self._index.get(w, self.unk_id) for w in normalize(text)][: self.max_length]

    def encode_batch(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Right-padded ``ids`` and ``mask`` (1 = real word), both int64 ``[B, max_length]``.

        An empty instruction still gets one ``<unk>`` so every row attends to something."""
        if isinstance(texts, str):
            raise TokenizerError("encode_batch takes a list of strings, not a single string")
        ids = np.zeros((len(texts), self.max_length), dtype=np.int64)
        mask = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for row, text in enumerate(texts):
            toks = self.encode(text) or [self.unk_id]
            ids[row, : len(toks)] = toks
            mask[row, : len(toks)] = 1
        return ids, mask

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.pad_id:
                continue
            if not 0 <= i < len(self.vocab):
                raise TokenizerError(f"token id {i} outside vocabulary of size {len(self.vocab)}")
            out.append(self.vocab[i])
        return " ".join(out)

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "max_length": self.max_length,
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "InstructionTokenizer":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise TokenizerError(f"not a {FORMAT} vocabulary (format={found!r})")
        if int(data.get("version", -1)) != VERSION:
            raise TokenizerError(
                f"unsupported tokenizer version {data.get('version')!r}; expected {VERSION}"
            )
        return cls(data["vocab"], max_length=int(data["max_length"]))

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "InstructionTokenizer":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer vocabulary not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise TokenizerError(f"tokenizer vocabulary {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, InstructionTokenizer)
            and self.vocab == other.vocab
            and self.max_length == other.max_length
        )

    def __repr__(self) -> str:
        return f"InstructionTokenizer(vocab_size={self.vocab_size}, max_length={self.max_length})"
