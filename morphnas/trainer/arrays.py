"""Validation and conversion of array-likes (numpy, torch, nested lists) into image and label tensors.

The checks every data source goes through, kept apart from the dataset containers so that both the
containers and the file readers can use them: images become uint8 or float32 tensors N×C×H×W, labels
int64 class indices. Bad input raises a `ValueError` that says what was expected.

`LabelEncoding` maps the labels a user has (strings, or integers of any values such as 3, 7, 42) to the class
indices 0..k-1 that everything else works with, and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["LabelEncoding", "as_images", "as_labels", "check_label_range", "check_lengths", "label_array",
           "to_numpy"]


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
        hint = " (ImageClassifier.fit takes string labels; or map them with LabelEncoding)" if kind in "USO" else ""
        raise ValueError(f"{what}: labels must be integer class indices; got dtype {a.dtype}{hint}")
    labels = a.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{what}: label {int(labels.min())} is negative; labels must be class indices ≥ 0")
    return torch.from_numpy(np.ascontiguousarray(labels))


# ---------------------------------------------------------------------------------------------- user labels
EXPECTED_LABELS = "all strings or all integers (whole-number floats count as integers)"


def _describe(v: Any) -> str:
    return "None" if v is None else f"{v!r} ({type(v).__name__})"


def label_array(y: Any, what: str = "labels") -> tuple[np.ndarray, str]:
    """The user's labels as a 1-D array of str or of an integer dtype, and that type's name ("str", "int64"...).

    Accepted: strings (numpy str arrays, lists, object arrays of str) and integers of any values (any numpy
    integer dtype is kept; Python ints give int64); floats that are whole numbers count as int64. Anything
    else — non-whole or non-finite floats, booleans, bytes, None, a mix of types, other objects — is a
    `ValueError` saying what was found.
    """
    if isinstance(y, torch.Tensor) or (isinstance(y, np.ndarray) and y.dtype.kind != "O"):
        a = to_numpy(y)
    else:  # lists, tuples, object arrays, pandas: look at each value (np.asarray(["a", 1]) would give strings)
        try:
            seq = list(y)
        except TypeError:
            raise ValueError(f"{what}: labels must be a 1-D array; got {type(y).__name__}") from None
        if any(isinstance(v, (list, tuple, np.ndarray, torch.Tensor)) and np.ndim(v) > 0 for v in seq):
            try:
                a = np.asarray(seq, dtype=object)
            except ValueError:
                raise ValueError(f"{what}: labels must be a 1-D array; got nested sequences") from None
            if a.ndim == 1:
                raise ValueError(f"{what}: labels must be a 1-D array; got nested sequences of different lengths")
        else:
            a = np.empty(len(seq), dtype=object)
            a[:] = [v.item() if isinstance(v, (np.ndarray, torch.Tensor)) else v for v in seq]
    if a.ndim != 1:
        hint = " (one-hot labels? pass labels.argmax(1))" if a.ndim == 2 else ""
        raise ValueError(f"{what}: labels must be a 1-D array; got shape {a.shape}{hint}")
    if len(a) == 0:
        raise ValueError(f"{what}: empty (0 labels); at least one labelled image is needed")
    kind = a.dtype.kind
    if kind == "U":
        return a, "str"
    if kind in "iu":
        return a, a.dtype.name
    if kind == "f":
        return _whole(a, what), "int64"
    if kind != "O":
        raise ValueError(f"{what}: labels must be {EXPECTED_LABELS}; found dtype {a.dtype}")
    types = {type(v) for v in a}
    if all(issubclass(t, str) for t in types):
        return a.astype(str), "str"
    numbers = (int, float, np.integer, np.floating)
    for i, v in enumerate(a):
        if v is None or isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, *numbers)):
            raise ValueError(f"{what}: labels must be {EXPECTED_LABELS}; found {_describe(v)} at index {i}")
    if any(issubclass(t, str) for t in types):
        found = sorted({"str" if issubclass(t, str) else "number" for t in types})
        i = next(i for i, v in enumerate(a) if not isinstance(v, str))
        raise ValueError(f"{what}: labels must be {EXPECTED_LABELS}; found a mix of {' and '.join(found)} "
                         f"(e.g. {_describe(a[i])} at index {i})")
    if all(issubclass(t, (int, np.integer)) for t in types):
        return a.astype(np.int64), "int64"
    return _whole(a.astype(np.float64), what), "int64"


def _whole(a: np.ndarray, what: str) -> np.ndarray:
    bad = ~np.isfinite(a) | (a != np.round(a))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: labels must be {EXPECTED_LABELS}; found the non-integer value {float(a[i])!r} "
                         f"at index {i}")
    return a.astype(np.int64)


@dataclass(frozen=True)
class LabelEncoding:
    """The user's label values in class order: class i is ``values[i]``; values are sorted.

    ``label_type`` is "str" or the numpy integer dtype of the labels fit saw ("int64", "int32", "uint8"...);
    ``decode`` returns arrays of that type. ``to_dict``/``from_dict`` give its JSON form (``label_values``,
    ``label_type``).
    """

    values: tuple[Any, ...]
    label_type: str

    def __post_init__(self) -> None:
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"label values must be distinct; got {list(self.values)}")

    @classmethod
    def fit(cls, *labels: Any, what: str = "labels") -> LabelEncoding:
        """The encoding of every value in ``labels`` (training labels first: their type is kept)."""
        arrays = [label_array(y, what) for y in labels if y is not None]
        if not arrays:
            raise ValueError(f"{what}: no labels given")
        kinds = {"str" if t == "str" else "int" for _, t in arrays}
        if len(kinds) > 1:
            raise ValueError(f"{what}: the training labels are {arrays[0][1]} but other labels are "
                             f"{next(t for _, t in arrays if t != arrays[0][1])}; all must be {EXPECTED_LABELS}")
        label_type = arrays[0][1]
        values = np.unique(np.concatenate([a for a, _ in arrays]))
        return cls(tuple(str(v) if label_type == "str" else int(v) for v in values), label_type)

    @classmethod
    def identity(cls, n_classes: int) -> LabelEncoding:
        """Labels that are the class indices themselves (a dataset loaded by name)."""
        return cls(tuple(range(n_classes)), "int64")

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_classes: int | None = None) -> LabelEncoding:
        """From ``to_dict``'s form (e.g. a run's normalization.json); without one, the identity on n_classes."""
        if data.get("label_values") is None:
            n = n_classes if n_classes is not None else len(data.get("class_names", ()))
            return cls.identity(n)
        label_type = str(data["label_type"])
        values = data["label_values"]
        return cls(tuple(str(v) if label_type == "str" else int(v) for v in values), label_type)

    def to_dict(self) -> dict[str, Any]:
        return {"label_values": list(self.values), "label_type": self.label_type}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(v) for v in self.values)

    @property
    def n_classes(self) -> int:
        return len(self.values)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(str) if self.label_type == "str" else np.dtype(self.label_type)

    def encode(self, y: Any, what: str = "labels") -> np.ndarray:
        """Class indices (int64) of the user's labels ``y``; a ValueError for a label fit never saw."""
        a, label_type = label_array(y, what)
        if (label_type == "str") != (self.label_type == "str"):
            raise ValueError(f"{what}: the labels are {label_type} but the classifier was fit on "
                             f"{self.label_type} labels {_preview(self.values)}")
        index = {v: i for i, v in enumerate(self.values)}
        keys = a.tolist() if label_type == "str" else [int(v) for v in a]
        try:
            return np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
        except KeyError as exc:
            raise ValueError(f"{what}: label {exc.args[0]!r} was not among the labels the classifier was fit on "
                             f"{_preview(self.values)}") from None

    def decode(self, indices: Any) -> np.ndarray:
        """The user's labels of class indices ``indices``: str array or the fit labels' integer dtype."""
        idx = to_numpy(indices).astype(np.int64)
        return np.asarray(list(self.values), dtype=self.dtype)[idx]


def _preview(values: Sequence[Any], n: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}]"
