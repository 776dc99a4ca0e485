"""Random-shift image augmentation for the policy stages (NTP, RF).

With a hundred demonstrations per task a small CNN can recognise each training scene and recall
its trajectory instead of locating the objects: held-out layouts then get some training layout's
motion. Shifting every training image by a few pixels (edge-replicated, as DrQ and Diffusion Policy
do) breaks that shortcut cheaply. Applied to batches only, never at inference.
"""

from __future__ import annotations

from typing import Dict

import torch


def random_shift(images: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """uint8/float ``[B,C,H,W]`` -> the same shape, each image translated by an integer offset in
    [-shift, shift] on both axes, border pixels replicated."""
    if shift <= 0:
        return images
    b, _, h, w = images.shape
    dy = torch.randint(-shift, shift + 1, (b, 1), generator=gen)
    dx = torch.randint(-shift, shift + 1, (b, 1), generator=gen)
    rows = (torch.arange(h)[None, :] + dy).clamp(0, h - 1)  # [B,H]
    cols = (torch.arange(w)[None, :] + dx).clamp(0, w - 1)  # [B,W]
    bi = torch.arange(b)[:, None, None]
    # [B,C,H,W] -> index H and W per sample, keep C
    out = images.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


class ShiftedSource:
    """Wraps a batch source (``sample(batch_size, gen) -> dict`` with an ``image`` entry) and
    shifts its images; every other attribute is the wrapped source's."""

    def __init__(self, source, shift: int):
        self.source, self.shift = source, int(shift)

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        batch = self.source.sample(batch_size, gen)
        batch["image"] = random_shift(batch["image"], self.shift, gen)
        return batch

    def __getattr__(self, name):
        return getattr(self.source, name)
