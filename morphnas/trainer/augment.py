"""Normalisation and batched, seeded data augmentation on the device (no PIL, no torchvision).

`Normalizer` turns uint8 (or float) batches into float32 with per-channel mean/std from the training
data. `Augmentation` works on raw images (uint8 stays uint8): the trainer draws the random parameters of a
whole epoch at once from a CPU `torch.Generator` (same images on every device for one seed) and augments the
epoch's shuffled training set in a few large chunks, so that each training step only slices a batch. Ops:
random crop with zero padding (black, like torchvision's `RandomCrop(padding=p)`), horizontal flip, and
cutout filled with a given per-channel value (the trainer passes the training mean: after normalisation the
hole is 0, as in the cutout paper). The three primitive ops are public and deterministic given their parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentParams", "Augmentation", "Normalizer", "cutout", "horizontal_flip", "random_crop"]


@dataclass(frozen=True)
class Normalizer:
    """Per-channel affine map x ↦ (x − mean) / std, with mean and std measured in raw pixel units."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, chunk: int = 8192) -> Normalizer:
        """Measure per-channel mean and std of images `x` (N×C×H×W) in float64, chunk by chunk (no big copy)."""
        c = x.shape[1]
        s = torch.zeros(c, dtype=torch.float64, device=x.device)
        s2 = torch.zeros(c, dtype=torch.float64, device=x.device)
        for i in range(0, x.shape[0], chunk):
            b = x[i : i + chunk].to(torch.float64)
            s += b.sum(dim=(0, 2, 3))
            s2 += (b * b).sum(dim=(0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mean = s / n
        std = (s2 / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
        return cls(mean.float(), std.float())

    def to(self, device: torch.device | str) -> Normalizer:
        """The same normaliser with its statistics on `device`."""
        return Normalizer(self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch (uint8 or float) to float32, in one fused op."""
        scale = (1.0 / self.std).view(1, -1, 1, 1)
        shift = (-self.mean / self.std).view(1, -1, 1, 1)
        return torch.addcmul(shift, x, scale)


def random_crop(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad each image by `padding` and crop back to H×W at offsets (dy, dx) ∈ [0, 2·padding]².

    Offsets (padding, padding) give the image unchanged; (0, 0) moves content down-right by `padding`.
    """
    if padding == 0:
        return x
    b, c, h, w = x.shape
    wp = w + 2 * padding
    xp = F.pad(x, (padding, padding, padding, padding)).reshape(b, c, -1)
    # one gather over the flattened padded image: element (i, j) of the crop is at (dy + i) * wp + dx + j
    grid = (torch.arange(h, device=x.device).view(h, 1) * wp + torch.arange(w, device=x.device)).view(1, h * w)
    index = (dy * wp + dx).view(b, 1) + grid
    return xp.gather(2, index.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


def horizontal_flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images where boolean `mask` (B,) is True."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def cutout(
    x: torch.Tensor, size: int, cy: torch.Tensor, cx: torch.Tensor, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Fill a size×size square centred at (cy, cx) in each image (clipped at the borders) with `fill`.

    `fill` is one value per channel (cast to the images' dtype); None fills with zeros.
    """
    if size == 0:
        return x
    b, _, h, w = x.shape
    top = (cy - size // 2).view(b, 1)
    left = (cx - size // 2).view(b, 1)
    r = torch.arange(h, device=x.device).view(1, h)
    q = torch.arange(w, device=x.device).view(1, w)
    in_rows = (r >= top) & (r < top + size)
    in_cols = (q >= left) & (q < left + size)
    mask = in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)
    if fill is None:
        return x.masked_fill(mask, 0)
    return torch.where(mask, fill.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1), x)


@dataclass(frozen=True)
class AugmentParams:
    """Random parameters for N images: crop offsets, flip flags, cutout centres (all shape (N,))."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same parameters on `device`."""
        parts = (self.dy, self.dx, self.flip, self.cy, self.cx)
        return AugmentParams(*(t.to(device, non_blocking=True) for t in parts))

    def slice(self, start: int, stop: int) -> AugmentParams:
        """Parameters of images start..stop-1 (views, no copy)."""
        return AugmentParams(self.dy[start:stop], self.dx[start:stop], self.flip[start:stop],
                             self.cy[start:stop], self.cx[start:stop])


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations to apply: crop padding in pixels (0 = off), horizontal flip, cutout size (0 = off)."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout < 0:
            raise ValueError(f"crop padding and cutout size must be ≥ 0; got {self.crop_padding}, {self.cutout}")

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def sample(self, n: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
        """Draw parameters for `n` images from `generator` (a CPU generator: device-independent results)."""
        p = self.crop_padding
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        cy = torch.randint(0, height, (n,), generator=generator)
        cx = torch.randint(0, width, (n,), generator=generator)
        return AugmentParams(dy, dx, flip, cy, cx)

    def __call__(self, x: torch.Tensor, params: AugmentParams, fill: torch.Tensor | None = None) -> torch.Tensor:
        """Apply crop, flip and cutout (those enabled) to raw images; dtype and shape are kept."""
        x = random_crop(x, self.crop_padding, params.dy, params.dx)
        if self.flip:
            x = horizontal_flip(x, params.flip)
        return cutout(x, self.cutout, params.cy, params.cx, fill)
