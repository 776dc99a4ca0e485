"""Build the instruction vocabulary from the training data (robot episodes + human clips).

The tokenizer itself lives in the runtime package (``clap_ros.inference.tokenizer``) so the planner
node and the trainer share one implementation; this module only decides what text it is fit on.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

from clap_ros.inference.tokenizer import InstructionTokenizer


def instruction_texts(
    episodes: Sequence[Dict[str, Any]] = (), clips: Sequence[Dict[str, Any]] = ()
) -> List[str]:
    """Every instruction string of the data; a human clip without one contributes its action
    category, which is also what NTP is conditioned on for that clip."""
    texts = [str(ep.get("instruction") or "") for ep in episodes]
    texts += [str(c.get("instruction") or c.get("action_category") or "") for c in clips]
    return [t for t in texts if t]


def fit_tokenizer(
    episodes: Sequence[Dict[str, Any]] = (),
    clips: Sequence[Dict[str, Any]] = (),
    max_length: int = 16,
    extra_texts: Optional[Iterable[str]] = None,
    min_count: int = 1,
) -> InstructionTokenizer:
    texts = instruction_texts(episodes, clips) + list(extra_texts or ())
    return InstructionTokenizer.fit(texts, max_length=max_length, min_count=min_count)
