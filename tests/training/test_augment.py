"""Random-shift augmentation of the policy stages' training images."""

import torch

from clap_train.augment import ShiftedSource, random_shift


def test_random_shift_translates_with_replicated_borders():
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = random_shift(img, 2, gen)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert not torch.equal(out, img)  # seed 0 moves at least one image
    for b in range(2):
        # every output image is the input shifted by one (dy, dx) in [-2, 2], clamped at the edges
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(
                out[b],
                img[b][:, (torch.arange(8) + dy).clamp(0, 7)][
                    :, :, (torch.arange(8) + dx).clamp(0, 7)
                ],
            )
        ]
        assert found
    assert torch.equal(random_shift(img, 0, gen), img)
    again = random_shift(img, 2, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # reproducible from the step generator


def test_shifted_source_only_touches_images():
    class Src:
        extra = 7

        def sample(self, n, gen):
            return {
                "image": torch.zeros(n, 3, 4, 4, dtype=torch.uint8).index_fill_(
                    3, torch.tensor([0]), 255
                ),
                "state": torch.ones(n, 2),
            }

    src = ShiftedSource(Src(), 1)
    b = src.sample(16, torch.Generator().manual_seed(1))
    assert b["image"].shape == (16, 3, 4, 4) and torch.equal(b["state"], torch.ones(16, 2))
    assert src.extra == 7
    # the bright first column moved right in some samples (a shift of +1 px duplicates it)
    assert any(int((b["image"][i, 0, 0] == 255).sum()) != 1 for i in range(16))
