"""Tests of morphnas.trainer.augment: normalisation, crop, flip and cutout do exactly what they say."""

from __future__ import annotations

import torch

from morphnas.trainer import Augmentation, Normalizer
from morphnas.trainer.augment import cutout, horizontal_flip, random_crop


def batch(n: int = 4, c: int = 2, h: int = 6, w: int = 5) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1.0


def test_crop_centre_offset_is_identity_and_shift_moves_content() -> None:
    x = batch()
    p = 2
    same = random_crop(x, p, torch.full((4,), p), torch.full((4,), p))
    assert torch.equal(same, x)
    shifted = random_crop(x, p, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert torch.equal(shifted[:, :, p:, p:], x[:, :, :-p, :-p])  # content moved down-right by p
    assert (shifted[:, :, :p, :] == 0).all() and (shifted[:, :, :, :p] == 0).all()  # zero padding came in
    mixed = random_crop(x, 1, torch.tensor([1, 2, 0, 1]), torch.tensor([1, 1, 1, 2]))
    assert torch.equal(mixed[0], x[0])
    assert torch.equal(mixed[1, :, :-1], x[1, :, 1:])  # dy = 2p moves content up by p rows
    assert torch.equal(mixed[3, :, :, :-1], x[3, :, :, 1:])


def test_flip_mirrors_only_selected_images() -> None:
    x = batch()
    out = horizontal_flip(x, torch.tensor([True, False, True, False]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    assert torch.equal(out[2, :, :, 0], x[2, :, :, -1])


def test_cutout_zeroes_a_clipped_square() -> None:
    x = batch(n=2, c=1, h=8, w=8)
    out = cutout(x, 4, torch.tensor([4, 0]), torch.tensor([4, 7]))
    zero0 = out[0, 0] == 0
    assert zero0.sum() == 16 and zero0[2:6, 2:6].all()
    zero1 = out[1, 0] == 0
    assert zero1.sum() == 2 * 3 and zero1[0:2, 5:8].all()  # clipped at the top-right corner
    assert torch.equal(cutout(x, 0, torch.tensor([4, 0]), torch.tensor([4, 7])), x)
    rgb = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    filled = cutout(rgb, 2, torch.tensor([4]), torch.tensor([4]), fill=torch.tensor([10.0, 20.0, 30.0]))
    assert filled.dtype == torch.uint8 and filled[0, :, 4, 4].tolist() == [10, 20, 30] and filled[0, 0, 0, 0] == 200


def test_augmentation_is_seeded_keeps_shape_and_dtype() -> None:
    aug = Augmentation(crop_padding=3, flip=True, cutout=5)
    x = batch(n=64, c=3, h=12, w=12)
    p1 = aug.sample(64, 12, 12, torch.Generator().manual_seed(7))
    p2 = aug.sample(64, 12, 12, torch.Generator().manual_seed(7))
    a, b = aug(x, p1), aug(x, p2)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.float32
    assert 0 <= int(p1.dy.min()) and int(p1.dy.max()) <= 6 and 16 < int(p1.flip.sum()) < 48
    assert not torch.equal(aug(x, aug.sample(64, 12, 12, torch.Generator().manual_seed(8))), a)
    assert torch.equal(aug(x[10:20], p1.slice(10, 20)), a[10:20])  # batch by batch = all at once
    raw = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = aug(raw, p1, fill=torch.tensor([1.0, 2.0, 3.0]))
    assert out.dtype == torch.uint8 and out.shape == raw.shape  # raw images stay raw
    assert torch.equal(out, aug(raw.float(), p1, fill=torch.tensor([1.0, 2.0, 3.0])).to(torch.uint8))
    assert not Augmentation().enabled and Augmentation(flip=True).enabled
    assert not Augmentation().sample(8, 4, 4, torch.Generator()).flip.any()


def test_normalizer_standardises_each_channel_from_uint8() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), generator=gen, dtype=torch.uint8)
    x[:, 1] //= 4  # a darker channel
    norm = Normalizer.fit(x, chunk=7)
    z = norm(x)
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(norm(x.float()), z)
    constant = Normalizer.fit(torch.full((4, 1, 2, 2), 9, dtype=torch.uint8))
    assert torch.isfinite(constant(torch.full((1, 1, 2, 2), 9, dtype=torch.uint8))).all()
