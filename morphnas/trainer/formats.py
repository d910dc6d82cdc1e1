"""Dataset file formats: IDX (MNIST, Fashion-MNIST), CIFAR python batches and `.npz` files.

Readers of single files (`read_idx`, `read_cifar_batch`) and loaders of whole datasets in one of these
formats (`load_idx_dataset`, `load_cifar10`, `load_npz`). Nothing a user gives can run code: CIFAR
batches are read by a restricted unpickler, `.npz` files without pickle support.

A malformed file raises `DataFileError` (a `ValueError`) with one line of the form
``<file>: <what is wrong>; expected <what a good file holds>``, never a low-level exception from gzip,
zip, struct or pickle, and never numpy's advice to load a file unsafely.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from morphnas.trainer.containers import ImageDataset, from_arrays

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "IDX_FILES",
    "DataFileError",
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



class DataFileError(ValueError):
    """A data file is malformed; the message names the file and says what was expected."""


class _RefusedPickle(DataFileError, pickle.UnpicklingError):
    """A CIFAR batch asked the unpickler for something other than plain containers and numpy arrays."""


def _reason(exc: BaseException) -> str:
    """A low-level exception as a short single-line reason."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_labels(labels: np.ndarray, n_classes: int, path: Path, what: str) -> None:
    """Raise DataFileError naming `path` unless `labels` are integer class indices in [0, n_classes - 1]."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataFileError(
            f"{path}: labels of dtype {labels.dtype} and shape {labels.shape}; expected a 1-D array of integer "
            f"class indices ({what})"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataFileError(
            f"{path}: label {bad} is out of range; expected labels in [0, {n_classes - 1}] ({what})"
        )


# ----------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or not (detected from the content), as a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(
                f"{path}: a damaged gzip file ({_reason(exc)}); expected a complete gzipped IDX file"
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFileError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}); expected 00 00, a type code "
            "(08 for uint8) and the number of dimensions"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(
            f"{path}: truncated IDX header ({len(raw)} bytes); "
            f"expected {header} bytes of header for {ndim} dimension(s)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        state = "truncated" if len(raw) - header < expected else "too long"
        raise DataFileError(
            f"{path}: {state}: the IDX header says {dims} but the file holds {len(raw) - header} bytes of data; "
            f"expected {expected}"
        )
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
    for images, labels, ip, lp in ((x, y, paths[0], paths[1]), (xt, yt, paths[2], paths[3])):
        if images.ndim != 3:
            raise DataFileError(f"{ip}: an IDX array of shape {images.shape}; expected images N×H×W (idx3)")
        if labels.ndim != 1:
            raise DataFileError(f"{lp}: an IDX array of shape {labels.shape}; expected N labels (idx1)")
        if len(labels) != len(images):
            raise DataFileError(
                f"{lp}: {len(labels)} labels for the {len(images)} images of {ip.name}; expected one label per image"  # type: ignore[union-attr]
            )
    if class_names is None:
        _check_labels(y, 256, paths[1], "at most 256 classes")  # type: ignore[arg-type]
    names = class_names if class_names is not None else tuple(str(i) for i in range(int(y.max()) + 1))
    for lp, labels in ((paths[1], y), (paths[3], yt)):
        _check_labels(labels, len(names), lp, f"the {len(names)} classes of {name}")  # type: ignore[arg-type]
    try:
        return from_arrays(x, y, xt, yt, class_names=names, name=name, flip_ok=flip_ok, source=str(d),
                           crop_padding=crop_padding)
    except ValueError as exc:
        raise DataFileError(f"{d}: {exc}") from None


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
            raise _RefusedPickle(f"refusing to load {module}.{name} from a CIFAR batch file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


_CIFAR_EXPECTED = "expected a CIFAR python batch: a pickled dict of 'data' (N×3072 uint8) and 'labels'"


def _unpickle(path: Path) -> Any:
    """Unpickle a CIFAR file with the restricted unpickler; anything but plain data is a DataFileError."""
    with open(path, "rb") as f:
        try:
            return _CifarUnpickler(f, encoding="latin1").load()
        except _RefusedPickle as exc:
            raise _RefusedPickle(f"{path}: {exc}, which could run code; {_CIFAR_EXPECTED}") from None
        except Exception as exc:  # a damaged pickle fails in many ways (EOFError, UnpicklingError, ...)
            raise DataFileError(f"{path}: not a readable pickle ({_reason(exc)}); {_CIFAR_EXPECTED}") from None


def _str_keys(d: dict[Any, Any]) -> dict[str, Any]:
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in d.items()}


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10/100 python batch: (uint8 images N×3×32×32, int64 labels); N comes from the file."""
    d = _unpickle(Path(path))
    if not isinstance(d, dict):
        raise DataFileError(f"{path}: not a CIFAR batch (a pickled {type(d).__name__}); expected a dict")
    d = _str_keys(d)
    key = "labels" if "labels" in d else "fine_labels"
    if "data" not in d or key not in d:
        raise DataFileError(f"{path}: not a CIFAR batch (keys {sorted(d)}); expected keys 'data' and 'labels'")
    try:
        data = np.asarray(d["data"])
        labels = np.asarray(d[key])
    except (ValueError, TypeError) as exc:
        raise DataFileError(f"{path}: unreadable 'data' or '{key}' ({_reason(exc)}); {_CIFAR_EXPECTED}") from None
    if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
        raise DataFileError(f"{path}: 'data' of dtype {data.dtype} is not pixels; expected integers 0–255 (uint8)")
    if labels.ndim != 1 or (labels.dtype.kind not in "iu" and labels.size):
        raise DataFileError(
            f"{path}: '{key}' of dtype {labels.dtype} and shape {labels.shape}; "
            "expected a list of integer class indices"
        )
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
        raise DataFileError(
            f"{path}: data of shape {data.shape} and {len(labels)} labels; expected N×3072 with N = len(labels)"
        )
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_names(meta_path: Path, default: Sequence[str]) -> list[str]:
    """The class names of a `batches.meta` file."""
    meta = _unpickle(meta_path)
    names = _str_keys(meta).get("label_names", default) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) < 2 or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataFileError(f"{meta_path}: no usable 'label_names'; expected a dict with a list of class names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def load_cifar10(directory: str | os.PathLike[str]) -> ImageDataset:
    """Load CIFAR-10 from a `cifar-10-batches-py` directory (any batch size: read from each file)."""
    d = Path(directory)
    missing = [f for f in CIFAR10_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing CIFAR-10 files {missing}")
    names: Sequence[str] = CIFAR10_CLASSES
    if (d / "batches.meta").is_file():
        names = _cifar_names(d / "batches.meta", names)
    parts = []
    for f in CIFAR10_FILES:
        x_part, y_part = read_cifar_batch(d / f)
        _check_labels(y_part, len(names), d / f, f"the {len(names)} classes of CIFAR-10")
        parts.append((x_part, y_part))
    (x_test, y_test) = parts.pop()
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    try:
        return from_arrays(x, y, x_test, y_test, class_names=names, name="cifar10", flip_ok=True, source=str(d),
                           crop_padding=4)
    except ValueError as exc:
        raise DataFileError(f"{d}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# .npz
# ----------------------------------------------------------------------------------------------


_NPZ_EXPECTED = "expected a zip of .npy arrays as numpy.savez writes"


def _npz_arrays(p: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, by lower-cased name; object arrays are refused before they are read."""
    if not zipfile.is_zipfile(p):
        raise DataFileError(f"{p}: not an .npz file (not a zip archive); {_NPZ_EXPECTED}")
    arrays: dict[str, np.ndarray] = {}
    where = ""
    try:
        with np.load(p, allow_pickle=False) as z:
            members = set(z.zip.namelist())
            for k in z.files:
                where = f"array {k!r}: "
                with z.zip.open(k + ".npy" if k + ".npy" in members else k) as f:
                    version = np.lib.format.read_magic(f)
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    dtype = header(f)[2]
                if dtype.hasobject:
                    raise DataFileError(
                        f"{p}: array {k!r} holds Python objects (dtype {dtype}), which are never loaded since that "
                        "could run code; expected numeric arrays (and strings for class_names)"
                    )
                arrays[k.lower()] = z[k]
    except DataFileError:
        raise
    except Exception as exc:  # a damaged archive or member fails in many ways (BadZipFile, ValueError, ...)
        raise DataFileError(f"{p}: a damaged .npz file ({where}{_reason(exc)}); {_NPZ_EXPECTED}") from None
    return arrays


def load_npz(path: str | os.PathLike[str]) -> ImageDataset:
    """Load a dataset from a `.npz` file with keys x_train, y_train and optionally x_test, y_test, class_names.

    Read without pickle support: an .npz file cannot run code. Optional 0-d keys `flip_ok` and
    `crop_padding` set the dataset's augmentation recipe (see `ImageDataset`).
    """
    p = Path(path)
    arrays = _npz_arrays(p)
    if "x_train" not in arrays or "y_train" not in arrays:
        raise DataFileError(
            f"{p}: no arrays x_train and y_train (found {sorted(arrays)}); expected keys x_train and y_train, "
            "optionally x_test, y_test, class_names"
        )
    names = arrays.get("class_names")
    try:
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
    except (ValueError, TypeError) as exc:
        raise DataFileError(f"{p}: {_reason(exc) if isinstance(exc, TypeError) else exc}") from None
