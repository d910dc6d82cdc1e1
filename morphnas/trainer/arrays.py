"""Validation and conversion of array-likes (numpy, torch, nested lists) into image and label tensors.

The checks every data source goes through, kept apart from the dataset containers so that both the
containers and the file readers can use them: images become uint8 or float32 tensors N×C×H×W, labels
int64 class indices. Bad input raises a `ValueError` that says what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_images", "as_labels", "check_label_range", "check_lengths", "to_numpy"]


def check_lengths(n_x: int, n_y: int, what: str) -> None:
    """Raise unless there are as many labels as images, and at least one of each."""
    if n_x != n_y:
        raise ValueError(f"{what}: {n_x} images but {n_y} labels; every image needs exactly one label")
    if n_x == 0:
        raise ValueError(f"{what}: empty (0 images); at least one image is needed")


def check_label_range(y: torch.Tensor, n_classes: int, what: str) -> None:
    """Raise unless every label lies in [0, n_classes - 1]."""
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what}: label {bad} is out of range; expected labels in [0, {n_classes - 1}]")


def to_numpy(a: Any) -> np.ndarray:
    """A numpy view or copy of a tensor (half precision widened to float32) or any array-like."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    return np.asarray(a)


def as_images(x: Any, what: str = "images", channels_last: bool | None = None) -> torch.Tensor:
    """Images in any accepted layout (N×H×W, N×C×H×W, N×H×W×C; numpy or torch) as an N×C×H×W tensor.

    Integer pixels in 0–255 give uint8, anything else float32; channels-last is detected when C ∈ {1, 3, 4}
    is last, or forced by `channels_last`.
    """
    a = to_numpy(x)
    if a.ndim == 3:
        a = a[:, None, :, :]
    elif a.ndim == 4:
        if channels_last is None:
            channels_last = a.shape[1] not in (1, 3, 4) and a.shape[3] in (1, 3, 4)
        if channels_last:
            a = a.transpose(0, 3, 1, 2)
    else:
        raise ValueError(
            f"{what}: images must be N×C×H×W, N×H×W×C or N×H×W (grayscale); got {a.ndim}-D shape {a.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{what}: empty (0 images); at least one image is needed")
    if min(a.shape[1:]) == 0:
        raise ValueError(f"{what}: images have an empty dimension (C×H×W = {a.shape[1:]})")
    kind = a.dtype.kind
    if kind in "bOSUVcmM":
        raise ValueError(f"{what}: images must be numeric (integers 0–255 or floats); got dtype {a.dtype}")
    if kind in "iu":
        if a.dtype == np.uint8 or (a.min() >= 0 and a.max() <= 255):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    f = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(f).all():
        n_bad = int((~np.isfinite(f)).sum())
        raise ValueError(f"{what}: images contain {n_bad} NaN or infinite values; all pixels must be finite")
    return torch.from_numpy(f)


def as_labels(y: Any, what: str = "labels", n_expected: int | None = None) -> torch.Tensor:
    """Validate label array-like `y` (integer class indices, `n_expected` of them if given) as an int64 tensor."""
    a = to_numpy(y)
    if a.ndim != 1:
        hint = " (one-hot labels? pass labels.argmax(1))" if a.ndim == 2 else ""
        raise ValueError(f"{what}: labels must be a 1-D array of class indices; got shape {a.shape}{hint}")
    if n_expected is not None:
        check_lengths(n_expected, len(a), what)
    if len(a) == 0:
        raise ValueError(f"{what}: empty (0 labels); at least one labelled image is needed")
    kind = a.dtype.kind
    if kind == "f":
        if not np.isfinite(a).all() or not np.all(a == np.round(a)):
            bad = a[~np.isfinite(a) | (a != np.round(a))][0]
            raise ValueError(f"{what}: labels must be integer class indices; found non-integer value {bad}")
    elif kind not in "iu":
        raise ValueError(f"{what}: labels must be integer class indices; got dtype {a.dtype}")
    labels = a.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{what}: label {int(labels.min())} is negative; labels must be class indices ≥ 0")
    return torch.from_numpy(np.ascontiguousarray(labels))
