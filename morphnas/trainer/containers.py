"""The dataset containers, and how to build one from data already in memory.

`ImageSplit` holds images (uint8 or float32 tensors N×C×H×W) and their int64 labels; `ImageDataset` a
training split, an optional test split, class names and the dataset's augmentation recipe.
`from_arrays` and `from_torch_dataset` build an `ImageDataset` from arrays or any torch `Dataset`;
`stratified_split` carves the seeded validation split the search trains against. Every loader, file
formats included, ends in `from_arrays`, so all data pass the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from morphnas.trainer.arrays import as_images, as_labels, check_label_range, check_lengths, to_numpy

__all__ = ["ImageDataset", "ImageSplit", "from_arrays", "from_torch_dataset", "stratified_split"]


@dataclass(frozen=True, repr=False)
class ImageSplit:
    """Images (uint8 or float32 tensor N×C×H×W) and their int64 class labels (N,), same length, N ≥ 1."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise ValueError("ImageSplit needs torch tensors; use ImageSplit.from_arrays for numpy or lists")
        if self.x.ndim != 4:
            raise ValueError(f"images must be a 4-D tensor N×C×H×W; got shape {tuple(self.x.shape)}")
        if self.x.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32; got {self.x.dtype}")
        if self.y.ndim != 1 or self.y.dtype != torch.int64:
            raise ValueError(f"labels must be a 1-D int64 tensor; got {self.y.dtype} of shape {tuple(self.y.shape)}")
        check_lengths(len(self.x), len(self.y), "split")

    @classmethod
    def from_arrays(cls, x: Any, y: Any, *, channels_last: bool | None = None, what: str = "data") -> ImageSplit:
        """Validate and convert array-likes (numpy, torch, nested lists) into a split.

        `x` may be N×C×H×W, N×H×W×C (detected when C ∈ {1, 3, 4} is last, or forced by `channels_last`)
        or N×H×W (grayscale); `y` must hold integer class indices.
        """
        return cls(as_images(x, what, channels_last), as_labels(y, what, len(x) if hasattr(x, "__len__") else None))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return f"ImageSplit(n={len(self)}, image_shape={self.image_shape}, dtype={self.x.dtype})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (int(self.x.shape[1]), int(self.x.shape[2]), int(self.x.shape[3]))

    def subset(self, index: Any) -> ImageSplit:
        """The images at `index` (integer indices or a boolean mask), as a new split."""
        idx = index if isinstance(index, torch.Tensor) else torch.as_tensor(np.asarray(index))
        idx = idx.to(self.x.device)
        return ImageSplit(self.x[idx], self.y[idx])

    def class_counts(self, n_classes: int) -> np.ndarray:
        """Number of images per class, an int64 array of length `n_classes`."""
        return np.bincount(self.y.cpu().numpy(), minlength=n_classes).astype(np.int64)


@dataclass(frozen=True, repr=False)
class ImageDataset:
    """A classification dataset: training split, optional test split, class names, flip-safety.

    `flip_ok` and `crop_padding` are the dataset's usual augmentation recipe, which the trainer's defaults
    follow: flip only where mirrored images are labelled the same *and* occur naturally (CIFAR-10: yes;
    digits: no; Fashion-MNIST: no, its product photos are canonically oriented — every shoe points left);
    `crop_padding=None` means H // 8. The test split is never used by the trainer itself.
    """

    name: str
    train: ImageSplit
    test: ImageSplit | None
    class_names: tuple[str, ...]
    flip_ok: bool = False
    source: str = ""
    crop_padding: int | None = None

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if n < 2:
            raise ValueError(f"a classification dataset needs at least 2 classes; got class names {self.class_names}")
        check_label_range(self.train.y, n, f"{self.name} training labels")
        present = torch.unique(self.train.y)
        if len(present) < 2:
            raise ValueError(
                f"{self.name}: the training labels contain a single class ({int(present[0])}); "
                "classification needs examples of at least 2 classes"
            )
        if self.test is not None:
            check_label_range(self.test.y, n, f"{self.name} test labels")
            if self.test.image_shape != self.train.image_shape:
                raise ValueError(
                    f"{self.name}: test images are {self.test.image_shape} but training images are "
                    f"{self.train.image_shape}; both splits must have the same C×H×W"
                )

    def __repr__(self) -> str:
        test = len(self.test) if self.test is not None else 0
        return (
            f"ImageDataset({self.name!r}, train={len(self.train)}, test={test}, input_shape={self.input_shape}, "
            f"n_classes={self.n_classes}, flip_ok={self.flip_ok}, crop_padding={self.crop_padding})"
        )

    @property
    def n_classes(self) -> int:
        """Number of classes (the length of `class_names`)."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image: what a network generator needs."""
        return self.train.image_shape

    def split_validation(
        self, fraction: float = 0.1, seed: int | np.random.Generator = 0
    ) -> tuple[ImageSplit, ImageSplit]:
        """Carve a stratified validation split from the training data: (train, validation), disjoint.

        Same `seed` ⇒ same split; class proportions are kept in both parts. The test split is untouched.
        """
        keep, held = stratified_split(self.train.y.cpu().numpy(), fraction, seed)
        return self.train.subset(keep), self.train.subset(held)


def stratified_split(
    labels: Any, fraction: float, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held-out) with `fraction` of every class held out, seeded and sorted.

    Each class with at least 2 examples gives at least one example to each side; a class with a single
    example stays on the kept side. Uses a local `numpy.random.Generator`, never the global RNG.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be strictly between 0 and 1; got {fraction}")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty 1-D array; got shape {y.shape}")
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = round(fraction * len(idx))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any = None,
    y_test: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
    name: str = "arrays",
    flip_ok: bool = False,
    channels_last: bool | None = None,
    source: str = "",
    crop_padding: int | None = None,
) -> ImageDataset:
    """Build a dataset from numpy arrays, torch tensors or nested lists, validating everything.

    `n_classes` defaults to the length of `class_names`, else to the largest label + 1. Horizontal flips
    are off unless `flip_ok=True` (they are wrong for digits, text and many other image kinds);
    `crop_padding` is the default random-crop padding for this data (None: H // 8).
    """
    if (x_test is None) != (y_test is None):
        raise ValueError("give both x_test and y_test, or neither")
    train = ImageSplit.from_arrays(x_train, y_train, channels_last=channels_last, what=f"{name} training set")
    test = None
    if x_test is not None:
        test = ImageSplit.from_arrays(x_test, y_test, channels_last=channels_last, what=f"{name} test set")
    if n_classes is None:
        if class_names is not None:
            n_classes = len(class_names)
        else:
            n_classes = int(max(train.y.max(), test.y.max() if test is not None else 0)) + 1
    if class_names is None:
        class_names = tuple(str(i) for i in range(n_classes))
    elif len(class_names) != n_classes:
        raise ValueError(f"{name}: {len(class_names)} class names for {n_classes} classes")
    names = tuple(str(c) for c in class_names)
    return ImageDataset(name, train, test, names, flip_ok=flip_ok, source=source or name, crop_padding=crop_padding)


def from_torch_dataset(
    train: Any,
    test: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    n_classes: int | None = None,
    name: str = "torch-dataset",
    flip_ok: bool = False,
) -> ImageDataset:
    """Materialise any torch `Dataset` (map-style or iterable) of (image, label) items as an `ImageDataset`.

    Images may be tensors or arrays (C×H×W, H×W×C or H×W); class names default to the dataset's
    `classes` attribute when it has one.
    """
    xs, ys = _collect_items(train, f"{name} training set")
    xt = yt = None
    if test is not None:
        xt, yt = _collect_items(test, f"{name} test set")
    if class_names is None and getattr(train, "classes", None) is not None:
        class_names = [str(c) for c in train.classes]
    return from_arrays(xs, ys, xt, yt, class_names=class_names, n_classes=n_classes, name=name, flip_ok=flip_ok)


def _collect_items(ds: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    items: Iterable[Any]
    if hasattr(ds, "__len__") and hasattr(ds, "__getitem__"):
        items = (ds[i] for i in range(len(ds)))
    else:
        items = iter(ds)
    images, labels = [], []
    for k, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"{what}: item {k} is {type(item).__name__}; expected an (image, label) pair")
        img, label = item[0], item[1]
        images.append(to_numpy(img))
        labels.append(label.item() if hasattr(label, "item") else label)
    if not images:
        raise ValueError(f"{what}: empty (the dataset yielded no items)")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{what}: images have different shapes {sorted(shapes)[:3]}; all must have one shape")
    return np.stack(images), np.asarray(labels)
