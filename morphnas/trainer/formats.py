"""Dataset file formats: IDX (MNIST, Fashion-MNIST), CIFAR python batches and `.npz` files.

Readers of single files (`read_idx`, `read_cifar_batch`) and loaders of whole datasets in one of these
formats (`load_idx_dataset`, `load_cifar10`, `load_npz`). Nothing a user gives can run code: CIFAR
batches are read by a restricted unpickler, `.npz` files without pickle support.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from morphnas.trainer.containers import ImageDataset, from_arrays

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "IDX_FILES",
    "idx_file",
    "load_cifar10",
    "load_idx_dataset",
    "load_npz",
    "read_cifar_batch",
    "read_idx",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: The batch files of a `cifar-10-batches-py` directory: five training batches, then the test batch.
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
#: The four files of an MNIST-format dataset, each possibly with a `.gz` suffix.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# ----------------------------------------------------------------------------------------------
# IDX
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


def idx_file(directory: Path, stem: str) -> Path | None:
    """The IDX file `stem` or `stem.gz` in `directory`, or None."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dataset(
    directory: str | os.PathLike[str],
    name: str = "idx",
    class_names: Sequence[str] | None = None,
    flip_ok: bool = False,
    crop_padding: int | None = 2,
) -> ImageDataset:
    """Load an MNIST-format dataset (the four IDX files, each gzipped or not) from `directory`."""
    d = Path(directory)
    paths = [idx_file(d, stem) for stem in IDX_FILES]
    missing = [stem + "[.gz]" for stem, p in zip(IDX_FILES, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(f"{d}: missing IDX files {missing}")
    x, y, xt, yt = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    names = class_names if class_names is not None else tuple(str(i) for i in range(int(y.max()) + 1))
    return from_arrays(x, y, xt, yt, class_names=names, name=name, flip_ok=flip_ok, source=str(d),
                       crop_padding=crop_padding)


# ----------------------------------------------------------------------------------------------
# CIFAR python batches
# ----------------------------------------------------------------------------------------------


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
    return from_arrays(x, y, x_test, y_test, class_names=names, name="cifar10", flip_ok=True, source=str(d),
                       crop_padding=4)


# ----------------------------------------------------------------------------------------------
# .npz
# ----------------------------------------------------------------------------------------------


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
