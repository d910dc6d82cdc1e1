"""Malformed data files through the command line, as a new user meets them.

Every case writes one bad file among otherwise good ones and runs ``morphnas search`` on it: the command
must exit 2 with a single line that names the file and says what was expected, without a traceback, without
advice to load the file unsafely, and without creating the run directory.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from morphnas.cli import main
from morphnas.trainer import registry
from morphnas.trainer.datasets import CIFAR10_FILES, DATA_DIR_ENV, DataFileError, read_cifar_batch


def idx_bytes(arr: np.ndarray) -> bytes:
    """`arr` (uint8) in the IDX format."""
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def good_idx(root: Path) -> Path:
    """A small, valid Fashion-MNIST directory (plain IDX files, 10 classes)."""
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 20), ("t10k", 10)):
        (d / f"{stem}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)))
        (d / f"{stem}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n, dtype=np.uint8) % 10))
    return d


def cifar_batch(n: int = 10, **changes: object) -> bytes:
    """A CIFAR-format batch pickled like the originals, with some entries replaced (None removes one)."""
    d: dict[bytes, object] = {b"batch_label": b"test", b"labels": [i % 10 for i in range(n)],
                              b"data": np.zeros((n, 3072), np.uint8), b"filenames": []}
    for key, value in changes.items():
        if value is None:
            del d[key.encode()]
        else:
            d[key.encode()] = value
    return pickle.dumps(d, protocol=2)


def good_cifar(root: Path) -> Path:
    """A small, valid `cifar-10-batches-py` directory."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (d / name).write_bytes(cifar_batch())
    return d


# Each case makes its data under the given root and returns (--dataset value, --data-dir or None, bad file).
Case = Callable[[Path], tuple[str, Path | None, Path]]


def idx_case(stem: str, content: Callable[[bytes], bytes]) -> Case:
    """Fashion-MNIST with IDX file `stem` replaced by `content(original bytes)`."""
    def make(root: Path) -> tuple[str, Path | None, Path]:
        bad = good_idx(root) / stem
        bad.write_bytes(content(bad.read_bytes()))
        return "fashion-mnist", root, bad
    return make


def idx_gz_truncated(root: Path) -> tuple[str, Path | None, Path]:
    d = good_idx(root)
    (d / "train-images-idx3-ubyte").unlink()
    bad = d / "train-images-idx3-ubyte.gz"
    pixels = np.random.default_rng(1).integers(0, 256, (20, 6, 6), dtype=np.uint8)
    bad.write_bytes(gzip.compress(idx_bytes(pixels))[:-100])
    return "fashion-mnist", root, bad


def cifar_case(name: str, content: bytes) -> Case:
    """CIFAR-10 with batch `name` replaced by `content`."""
    def make(root: Path) -> tuple[str, Path | None, Path]:
        bad = good_cifar(root) / name
        bad.write_bytes(content)
        return "cifar10", root, bad
    return make


def npz_case(write: Callable[[Path], None]) -> Case:
    """An .npz file given by path, written by `write`."""
    def make(root: Path) -> tuple[str, Path | None, Path]:
        root.mkdir(parents=True)
        bad = root / "mine.npz"
        write(bad)
        return str(bad), None, bad
    return make


X = np.zeros((20, 6, 6), np.uint8)
Y = np.arange(20) % 2


def npz_not_zip(p: Path) -> None:
    p.write_bytes(b"\x80\x04\x95 this is a pickle, or a text file, anything but a zip")


def npz_object_array(p: Path) -> None:
    np.savez(p, x_train=np.array([X[0], "not an image"], dtype=object), y_train=Y[:2])


def npz_missing_keys(p: Path) -> None:
    np.savez(p, images=X, labels=Y)


def npz_labels_out_of_range(p: Path) -> None:
    np.savez(p, x_train=X, y_train=np.where(Y == 1, 5, 0), class_names=np.array(["a", "b", "c"]))


def npz_member_not_npy(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY\x01\x00garbage that is no header")
        z.writestr("y_train.npy", b"")


CASES: dict[str, tuple[Case, str]] = {
    # IDX files (Fashion-MNIST, MNIST)
    "idx-wrong-magic": (idx_case("train-images-idx3-ubyte", lambda b: b"\x01\x02\x03\x04" + b[4:]),
                        "not an IDX file"),
    "idx-truncated-data": (idx_case("t10k-images-idx3-ubyte", lambda b: b[:-10]), "truncated"),
    "idx-truncated-header": (idx_case("train-labels-idx1-ubyte", lambda b: b[:6]), "truncated"),
    "idx-damaged-gzip": (idx_gz_truncated, "gzip"),
    "idx-labels-out-of-range": (idx_case("train-labels-idx1-ubyte", lambda b: b[:-1] + b"\x0a"), "label 10"),
    "idx-labels-count": (idx_case("train-labels-idx1-ubyte", lambda b: idx_bytes(np.zeros(19, np.uint8))),
                         "19 labels"),
    "idx-labels-file-holds-images": (idx_case("t10k-labels-idx1-ubyte", lambda b: idx_bytes(X)), "labels"),
    # CIFAR python batches
    "cifar-forbidden-global": (cifar_case("data_batch_3", b"cos\nsystem\n(S'echo pwned'\ntR."), "os.system"),
    "cifar-not-a-pickle": (cifar_case("data_batch_2", b"\x00\x01 definitely not a pickle"), "pickle"),
    "cifar-empty-file": (cifar_case("test_batch", b""), "pickle"),
    "cifar-not-a-dict": (cifar_case("data_batch_1", pickle.dumps([1, 2, 3], protocol=2)), "dict"),
    "cifar-missing-keys": (cifar_case("data_batch_4", cifar_batch(labels=None)), "'labels'"),
    "cifar-data-shape": (cifar_case("data_batch_5", cifar_batch(data=np.zeros((10, 1024), np.uint8))), "3072"),
    "cifar-data-not-pixels": (cifar_case("data_batch_5", cifar_batch(data=np.full((10, 3072), 300))), "0–255"),
    "cifar-labels-out-of-range": (cifar_case("data_batch_1", cifar_batch(labels=[12] * 10)), "label 12"),
    "cifar-labels-not-integers": (cifar_case("test_batch", cifar_batch(labels=["cat"] * 10)), "integer"),
    # .npz files
    "npz-not-a-zip": (npz_case(npz_not_zip), "zip"),
    "npz-object-array": (npz_case(npz_object_array), "object"),
    "npz-missing-keys": (npz_case(npz_missing_keys), "x_train and y_train"),
    "npz-labels-out-of-range": (npz_case(npz_labels_out_of_range), "label 5"),
    "npz-member-not-npy": (npz_case(npz_member_not_npy), "x_train"),
}


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dataset anywhere but what the test writes: empty HOME, no $MORPHNAS_DATA_DIR, no system folders."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(registry, "SYSTEM_DIRS", {})
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_is_one_line_error_exit_2(case: str, isolated: Path, capsys: pytest.CaptureFixture) -> None:
    make, fragment = CASES[case]
    dataset, data_dir, bad = make(isolated / "data")
    out = isolated / "run"
    argv = ["search", "--dataset", dataset, "--max-trials", "1", "--max-epochs", "1", "--device", "cpu",
            "--out", str(out), "-q"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert captured.out == ""
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("morphnas: error: ") and str(bad) in line and "expected" in line, line
    assert fragment in line, line
    assert "Traceback" not in line and "allow_pickle" not in line and "pickle.load" not in line, line
    assert not out.exists() and not (isolated / "runs").exists()


def test_refused_pickle_is_a_data_file_error_and_an_unpickling_error(tmp_path: Path) -> None:
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(DataFileError, match=r"builtins\.eval") as info:
        read_cifar_batch(bad)
    assert isinstance(info.value, pickle.UnpicklingError) and isinstance(info.value, ValueError)
