"""Image-classification datasets for the trainer: loading, validation, and a seeded stratified split.

Every source becomes an `ImageDataset`: a training split, an optional test split, class names and
whether horizontal flips preserve labels. Images are tensors N×C×H×W, uint8 when the source is 8-bit
(every built-in source) and float32 otherwise; labels are int64 class indices. Sources: the small real
demo set shipped in the package, Fashion-MNIST and MNIST (IDX files, gzipped or not), CIFAR-10 (the
python-pickle batches, read by a restricted unpickler), `.npz` files, numpy/torch arrays and any torch
`Dataset`. Bad input raises a `ValueError` that says what was expected.

The test split is only for a final evaluation the user asks for: the search trains on the training
split minus a validation split carved from it by `ImageDataset.split_validation`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = [
    "DATASET_NAMES",
    "DownloadError",
    "ImageDataset",
    "ImageSplit",
    "as_images",
    "dataset_search_dirs",
    "from_arrays",
    "from_torch_dataset",
    "load_cifar10",
    "load_dataset",
    "load_demo",
    "load_idx_dataset",
    "load_npz",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: Environment variable naming a directory that holds datasets (one sub-folder per dataset).
DATA_DIR_ENV = "MORPHNAS_DATA_DIR"
DEMO_FILE = "fashion_mnist_demo.npz"


class DownloadError(OSError):
    """A dataset could not be downloaded, or a downloaded file failed its checksum."""


# ----------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------


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
        _check_lengths(len(self.x), len(self.y), "split")

    @classmethod
    def from_arrays(cls, x: Any, y: Any, *, channels_last: bool | None = None, what: str = "data") -> ImageSplit:
        """Validate and convert array-likes (numpy, torch, nested lists) into a split.

        `x` may be N×C×H×W, N×H×W×C (detected when C ∈ {1, 3, 4} is last, or forced by `channels_last`)
        or N×H×W (grayscale); `y` must hold integer class indices.
        """
        return cls(_as_images(x, what, channels_last), _as_labels(y, what, len(x) if hasattr(x, "__len__") else None))

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
        _check_label_range(self.train.y, n, f"{self.name} training labels")
        present = torch.unique(self.train.y)
        if len(present) < 2:
            raise ValueError(
                f"{self.name}: the training labels contain a single class ({int(present[0])}); "
                "classification needs examples of at least 2 classes"
            )
        if self.test is not None:
            _check_label_range(self.test.y, n, f"{self.name} test labels")
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


# ----------------------------------------------------------------------------------------------
# Validation and conversion of array-likes
# ----------------------------------------------------------------------------------------------


def _check_lengths(n_x: int, n_y: int, what: str) -> None:
    if n_x != n_y:
        raise ValueError(f"{what}: {n_x} images but {n_y} labels; every image needs exactly one label")
    if n_x == 0:
        raise ValueError(f"{what}: empty (0 images); at least one image is needed")


def _check_label_range(y: torch.Tensor, n_classes: int, what: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what}: label {bad} is out of range; labels must lie in [0, {n_classes - 1}]")


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    return np.asarray(a)


def _as_images(x: Any, what: str, channels_last: bool | None = None) -> torch.Tensor:
    """Validate image array-like `x` and return a uint8 or float32 tensor N×C×H×W."""
    a = _to_numpy(x)
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


def _as_labels(y: Any, what: str, n_expected: int | None = None) -> torch.Tensor:
    """Validate label array-like `y` (integer class indices) and return an int64 tensor."""
    a = _to_numpy(y)
    if a.ndim != 1:
        hint = " (one-hot labels? pass labels.argmax(1))" if a.ndim == 2 else ""
        raise ValueError(f"{what}: labels must be a 1-D array of class indices; got shape {a.shape}{hint}")
    if n_expected is not None:
        _check_lengths(n_expected, len(a), what)
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


def as_images(x: Any, what: str = "images") -> torch.Tensor:
    """Images in any accepted layout (N×H×W, N×C×H×W, N×H×W×C; numpy or torch) as an N×C×H×W tensor."""
    return _as_images(x, what)


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
        images.append(_to_numpy(img))
        labels.append(label.item() if hasattr(label, "item") else label)
    if not images:
        raise ValueError(f"{what}: empty (the dataset yielded no items)")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"{what}: images have different shapes {sorted(shapes)[:3]}; all must have one shape")
    return np.stack(images), np.asarray(labels)


# ----------------------------------------------------------------------------------------------
# File formats
# ----------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or not (detected from the content), as a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header says {dims} ({expected} bytes) but the file holds {len(raw) - header}")
    arr = np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and numpy arrays: a CIFAR batch cannot run code."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _CifarUnpickler(f, encoding="latin1").load()


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10/100 python batch: (uint8 images N×3×32×32, int64 labels); N comes from the file."""
    d = _unpickle(Path(path))
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR batch (a {type(d).__name__}, expected a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    key = "labels" if "labels" in d else "fine_labels"
    if "data" not in d or key not in d:
        raise ValueError(f"{path}: not a CIFAR batch (keys {sorted(d)}; expected 'data' and 'labels')")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d[key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
        raise ValueError(
            f"{path}: data of shape {data.shape} and {len(labels)} labels; expected N×3072 with N = len(labels)"
        )
    return data.reshape(-1, 3, 32, 32), labels


CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def load_cifar10(directory: str | os.PathLike[str]) -> ImageDataset:
    """Load CIFAR-10 from a `cifar-10-batches-py` directory (any batch size: read from each file)."""
    d = Path(directory)
    missing = [f for f in CIFAR10_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing CIFAR-10 files {missing}")
    parts = [read_cifar_batch(d / f) for f in CIFAR10_FILES[:5]]
    x_test, y_test = read_cifar_batch(d / "test_batch")
    names: Sequence[str] = CIFAR10_CLASSES
    if (d / "batches.meta").is_file():
        meta = _unpickle(d / "batches.meta")
        meta = {k.decode() if isinstance(k, bytes) else k: v for k, v in meta.items()}
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", names)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _dataset("cifar10", x, y, x_test, y_test, names, flip_ok=True, source=str(d), crop_padding=4)


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_idx_dataset(
    directory: str | os.PathLike[str],
    name: str = "idx",
    class_names: Sequence[str] | None = None,
    flip_ok: bool = False,
    crop_padding: int | None = 2,
) -> ImageDataset:
    """Load an MNIST-format dataset (the four IDX files, each gzipped or not) from `directory`."""
    d = Path(directory)
    paths = [_idx_file(d, stem) for stem in IDX_FILES]
    missing = [stem + "[.gz]" for stem, p in zip(IDX_FILES, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(f"{d}: missing IDX files {missing}")
    x, y, xt, yt = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    names = class_names if class_names is not None else tuple(str(i) for i in range(int(y.max()) + 1))
    return _dataset(name, x, y, xt, yt, names, flip_ok=flip_ok, source=str(d), crop_padding=crop_padding)


def load_npz(path: str | os.PathLike[str]) -> ImageDataset:
    """Load a dataset from a `.npz` file with keys x_train, y_train and optionally x_test, y_test, class_names.

    Read with `allow_pickle=False`: an .npz file cannot run code. Optional 0-d keys `flip_ok` and
    `crop_padding` set the dataset's augmentation recipe (see `ImageDataset`).
    """
    p = Path(path)
    with np.load(p, allow_pickle=False) as z:
        arrays = {k.lower(): z[k] for k in z.files}
    if "x_train" not in arrays or "y_train" not in arrays:
        raise ValueError(f"{p}: an .npz dataset needs keys x_train and y_train; found {sorted(arrays)}")
    names = arrays.get("class_names")
    return from_arrays(
        arrays["x_train"],
        arrays["y_train"],
        arrays.get("x_test"),
        arrays.get("y_test"),
        class_names=[str(c) for c in names] if names is not None else None,
        name=p.stem,
        flip_ok=bool(arrays["flip_ok"]) if "flip_ok" in arrays else False,
        source=str(p),
        crop_padding=int(arrays["crop_padding"]) if "crop_padding" in arrays else None,
    )


def _dataset(
    name: str, x: Any, y: Any, xt: Any, yt: Any, names: Sequence[str], *, flip_ok: bool, source: str,
    crop_padding: int | None,
) -> ImageDataset:
    return from_arrays(x, y, xt, yt, class_names=names, name=name, flip_ok=flip_ok, source=source,
                       crop_padding=crop_padding)


def load_demo() -> ImageDataset:
    """The real Fashion-MNIST subset shipped in the package (3,000 train / 500 test, stratified; MIT).

    Same recipe as Fashion-MNIST: no flips, crop padding 2."""
    res = importlib.resources.files("morphnas.trainer").joinpath("demo_data").joinpath(DEMO_FILE)
    with res.open("rb") as f:
        z = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return from_arrays(
        z["x_train"], z["y_train"], z["x_test"], z["y_test"],
        class_names=[str(c) for c in z["class_names"]], name="demo", flip_ok=False, crop_padding=2,
        source=f"morphnas/trainer/demo_data/{DEMO_FILE}",
    )


# ----------------------------------------------------------------------------------------------
# Named datasets: where to look, what to download
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Remote:
    filename: str
    urls: tuple[str, ...]
    md5: str


@dataclass(frozen=True)
class _Spec:
    name: str
    subdirs: tuple[str, ...]
    expected: tuple[str, ...]
    remotes: tuple[_Remote, ...]


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

_SPECS: dict[str, _Spec] = {
    "fashion-mnist": _Spec(
        "fashion-mnist",
        ("fashion-mnist", "FashionMNIST/raw"),
        tuple(f + "[.gz]" for f in IDX_FILES),
        tuple(
            _Remote(f + ".gz", (_FMNIST_URL + f + ".gz",), md5)
            for f, md5 in zip(
                IDX_FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
    ),
    "mnist": _Spec(
        "mnist",
        ("mnist", "MNIST/raw"),
        tuple(f + "[.gz]" for f in IDX_FILES),
        tuple(
            _Remote(f + ".gz", tuple(u + f + ".gz" for u in _MNIST_URLS), md5)
            for f, md5 in zip(
                IDX_FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
    ),
    "cifar10": _Spec(
        "cifar10",
        ("cifar-10-batches-py",),
        CIFAR10_FILES,
        (_Remote("cifar-10-python.tar.gz", (_CIFAR10_URL,), "c58f30108f718f92721af3b95e74349a"),),
    ),
}
_ALIASES = {
    "demo": "demo",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}
#: The names `load_dataset` accepts (besides a path to an .npz file).
DATASET_NAMES = ("demo", "fashion-mnist", "mnist", "cifar10")
#: System-wide locations checked last (Debian's `dataset-fashion-mnist` package installs here).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}


def _default_root(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".morphnas" / "data"


def dataset_search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories searched for dataset `name`, in order: `data_dir` (and its sub-folder for the
    dataset), `$MORPHNAS_DATA_DIR/<sub-folder>`, `~/.morphnas/data/<sub-folder>`, then system locations."""
    key = _ALIASES.get(name.lower())
    if key not in _SPECS:
        raise ValueError(f"no files to search for {name!r}: datasets with files are {', '.join(_SPECS)}")
    spec = _SPECS[key]
    dirs: list[Path] = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        dirs += [base / s for s in spec.subdirs] + [base]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs += [Path(env).expanduser() / s for s in spec.subdirs]
    dirs += [Path.home() / ".morphnas" / "data" / s for s in spec.subdirs]
    dirs += list(SYSTEM_DIRS.get(spec.name, ()))
    return dirs


def _complete(spec: _Spec, d: Path) -> bool:
    if spec.name == "cifar10":
        return all((d / f).is_file() for f in CIFAR10_FILES)
    return all(_idx_file(d, stem) is not None for stem in IDX_FILES)


def _load_from(spec: _Spec, d: Path) -> ImageDataset:
    if spec.name == "cifar10":
        return load_cifar10(d)
    if spec.name == "fashion-mnist":
        return load_idx_dataset(d, "fashion-mnist", FASHION_MNIST_CLASSES, flip_ok=False)
    return load_idx_dataset(d, "mnist", MNIST_CLASSES, flip_ok=False)


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download `url` to `target` atomically, verifying its MD5; a bad or partial file is never left behind."""
    tmp = target.with_name(target.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if h.hexdigest() != md5:
            raise DownloadError(f"{url}: checksum mismatch (md5 {h.hexdigest()}, expected {md5}); file discarded")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _download_file(remote: _Remote, directory: Path) -> Path:
    target = directory / remote.filename
    if target.is_file() and _md5(target) == remote.md5:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        try:
            _fetch(url, target, remote.md5)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors))


def _download(spec: _Spec, root: Path) -> Path:
    if spec.name == "cifar10":
        archive = _download_file(spec.remotes[0], root)
        out = root / "cifar-10-batches-py"
        out.mkdir(parents=True, exist_ok=True)
        wanted = {f"cifar-10-batches-py/{f}" for f in (*CIFAR10_FILES, "batches.meta")}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    tmp = out / (Path(member.name).name + ".part")
                    tmp.write_bytes(src.read())
                    os.replace(tmp, out / Path(member.name).name)
        return out
    out = root / spec.subdirs[0]
    for remote in spec.remotes:
        _download_file(remote, out)
    return out


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> ImageDataset:
    """Load a dataset by name (`demo`, `fashion-mnist`, `mnist`, `cifar10`) or from a path to an .npz file.

    Files are looked for in `dataset_search_dirs(name, data_dir)`. If absent and `download=True`, the official
    files are downloaded (MD5-verified) into `data_dir`, else `$MORPHNAS_DATA_DIR`, else `~/.morphnas/data`;
    if absent otherwise, `FileNotFoundError` names the expected files and the places searched.
    """
    key = _ALIASES.get(str(name).lower())
    if key == "demo":
        return load_demo()
    if key is not None:
        spec = _SPECS[key]
        dirs = dataset_search_dirs(key, data_dir)
        for d in dirs:
            if _complete(spec, d):
                return _load_from(spec, d)
        if download:
            return _load_from(spec, _download(spec, _default_root(data_dir)))
        raise FileNotFoundError(
            f"dataset {key!r} not found: expected the files {', '.join(spec.expected)} in one of "
            + ", ".join(str(d) for d in dirs)
            + f". Pass data_dir=..., set ${DATA_DIR_ENV}, or use download=True (needs internet)."
        )
    path = Path(str(name)).expanduser()
    if path.suffix == ".npz" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no such .npz dataset file: {path}")
        return load_npz(path)
    raise ValueError(
        f"unknown dataset {name!r}: valid names are {', '.join(DATASET_NAMES)}, or a path to an .npz file"
    )
