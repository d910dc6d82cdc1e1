"""Tests of morphnas.trainer.datasets: real demo data, file formats, downloads, validation, stratified split."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from morphnas.trainer import (
    DownloadError,
    from_arrays,
    from_torch_dataset,
    load_cifar10,
    load_dataset,
    load_npz,
    read_cifar_batch,
    read_idx,
    registry,
    stratified_split,
)
from morphnas.trainer import datasets as ds


def shared_datasets() -> Path:
    """The project's shared real datasets (../shared/datasets or $MORPHNAS_SHARED_DATASETS); skip if absent."""
    env = os.environ.get("MORPHNAS_SHARED_DATASETS")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root}")
    return root


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    """Write `arr` (uint8) as an IDX file, gzipped or not."""
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def small_idx_dir(root: Path, gz_pattern: tuple[bool, bool, bool, bool] = (True, False, True, False)) -> dict:
    """Four small IDX files (mixed gz/plain) of a 3-class dataset, and the arrays they hold."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 5, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(12, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(6, dtype=np.uint8) % 3,
    }
    root.mkdir(parents=True, exist_ok=True)
    for (stem, arr), gz in zip(arrays.items(), gz_pattern, strict=True):
        write_idx(root / (stem + (".gz" if gz else "")), arr, gz)
    return arrays


def cifar_batch_bytes(n: int, seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    """A CIFAR-format batch of `n` images, pickled like the originals (protocol 2, bytes keys)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in np.arange(n) % 10]
    d = {b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": []}
    return pickle.dumps(d, protocol=2), data, labels


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dataset anywhere: empty HOME, no $MORPHNAS_DATA_DIR, no system directories."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ds.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(registry, "SYSTEM_DIRS", {})
    return tmp_path


# --- demo set -------------------------------------------------------------------------------------


def test_demo_set_is_small_stratified_real_fashion_mnist() -> None:
    demo = load_dataset("demo")
    assert (len(demo.train), len(demo.test)) == (3000, 500)
    assert demo.input_shape == (1, 28, 28) and demo.train.x.dtype == torch.uint8
    assert demo.class_names[0] == "T-shirt/top" and demo.n_classes == 10
    assert (demo.flip_ok, demo.crop_padding) == (False, 2)  # Fashion-MNIST's recipe: canonically oriented
    assert (demo.train.class_counts(10) == 300).all() and (demo.test.class_counts(10) == 50).all()
    demo_file = Path(ds.__file__).parent / "demo_data" / ds.DEMO_FILE
    assert demo_file.stat().st_size < 3_000_000
    root = shared_datasets() / "fashion-mnist"
    with np.load(demo_file) as z:
        train_index, test_index = z["train_index"], z["test_index"]
    x = read_idx(root / "train-images-idx3-ubyte.gz")
    y = read_idx(root / "train-labels-idx1-ubyte.gz")
    assert np.array_equal(demo.train.x[:, 0].numpy(), x[train_index])
    assert np.array_equal(demo.train.y.numpy(), y[train_index])
    yt = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(demo.test.y.numpy(), yt[test_index])


# --- CIFAR-10 -------------------------------------------------------------------------------------


def test_cifar_loader_reads_shared_subset_with_batch_size_from_file() -> None:
    root = shared_datasets() / "cifar-10-batches-py"
    data = load_dataset("cifar10", data_dir=root.parent)
    assert (len(data.train), len(data.test)) == (5000, 1000)
    assert data.input_shape == (3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.class_names[:2] == ("airplane", "automobile") and data.flip_ok and data.crop_padding == 4
    with open(root / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32)
    assert np.array_equal(data.train.x[1000].numpy(), first)  # batch 2 starts after the 1,000 of batch 1
    assert data.train.y[1000:2000].tolist() == list(raw["labels"])


def test_cifar_batch_size_comes_from_the_file(tmp_path: Path) -> None:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    expected = []
    for i, name in enumerate(ds.CIFAR10_FILES):
        blob, data, labels = cifar_batch_bytes(7 + i, seed=i)
        (d / name).write_bytes(blob)
        expected.append((data, labels))
    data = load_cifar10(d)
    assert len(data.train) == sum(7 + i for i in range(5)) and len(data.test) == 12
    x, y = read_cifar_batch(d / "data_batch_1")
    assert x.shape == (7, 3, 32, 32) and np.array_equal(x.reshape(7, -1), expected[0][0])
    assert y.tolist() == expected[0][1]


def test_cifar_reader_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        read_cifar_batch(evil)


def test_cifar_batch_with_mismatched_labels_is_rejected(tmp_path: Path) -> None:
    d = {b"labels": [0, 1], b"data": np.zeros((3, 3072), np.uint8)}
    (tmp_path / "b").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match="N = len"):
        read_cifar_batch(tmp_path / "b")


# --- IDX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_gzipped_or_plain(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "f", arr, gz)
    out = read_idx(tmp_path / "f")
    assert out.dtype == np.uint8 and np.array_equal(out, arr) and out.flags.writeable


def test_idx_bad_magic_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((4, 4), np.uint8), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-3])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_idx_dataset_from_data_dir_and_env_var(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = small_idx_dir(isolated / "direct")
    data = load_dataset("fashion-mnist", data_dir=isolated / "direct")
    assert data.input_shape == (1, 5, 4) and len(data.train) == 12 and not data.flip_ok
    assert np.array_equal(data.train.x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert data.class_names[9] == "Ankle boot"
    small_idx_dir(isolated / "env" / "mnist")
    monkeypatch.setenv(ds.DATA_DIR_ENV, str(isolated / "env"))
    mnist = load_dataset("mnist")
    assert mnist.name == "mnist" and not mnist.flip_ok and len(mnist.test) == 6


def test_real_fashion_mnist_loads_from_shared_dir() -> None:
    data = load_dataset("fashion-mnist", data_dir=shared_datasets())
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert (data.train.class_counts(10) == 6000).all()


# --- names, missing files, downloads --------------------------------------------------------------


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"demo, fashion-mnist, mnist, cifar10"):
        load_dataset("imagenet")


def test_missing_files_error_names_files_and_places(isolated: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", data_dir=isolated / "nowhere")
    msg = str(info.value)
    assert "data_batch_1" in msg and "test_batch" in msg and str(isolated / "nowhere") in msg
    assert ".morphnas" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist")


def _serve_idx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: bool) -> None:
    """Point the Fashion-MNIST download at local file:// URLs with the right (or a wrong) MD5."""
    src = tmp_path / "remote"
    small_idx_dir(src, (True, True, True, True))
    remotes = []
    for stem in ds.IDX_FILES:
        f = src / (stem + ".gz")
        md5 = hashlib.md5(f.read_bytes()).hexdigest()
        remotes.append(ds.Remote(f.name, (f.as_uri(),), "0" * 32 if corrupt and "labels" in stem else md5))
    spec = ds.DATASET_SPECS["fashion-mnist"]
    patched = ds.DatasetSpec(spec.name, spec.subdirs, spec.expected, tuple(remotes))
    monkeypatch.setitem(ds.DATASET_SPECS, "fashion-mnist", patched)


def test_download_verifies_checksums_and_loads(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_idx(isolated, monkeypatch, corrupt=False)
    with pytest.raises(FileNotFoundError):
        load_dataset("fashion-mnist")  # offline behaviour: no download unless asked
    data = load_dataset("fashion-mnist", data_dir=isolated / "data", download=True)
    assert len(data.train) == 12
    assert sorted(p.name for p in (isolated / "data" / "fashion-mnist").iterdir()) == sorted(
        s + ".gz" for s in ds.IDX_FILES
    )


def test_download_with_bad_checksum_fails_and_leaves_nothing(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_idx(isolated, monkeypatch, corrupt=True)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_dataset("fashion-mnist", data_dir=isolated / "data", download=True)
    left = {p.name for p in (isolated / "data" / "fashion-mnist").iterdir()}
    assert "train-labels-idx1-ubyte.gz" not in left and not any(n.endswith(".part") for n in left)


def test_download_unreachable_url_is_a_clear_error(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ds.DATASET_SPECS["mnist"]
    remotes = tuple(ds.Remote(r.filename, ((isolated / "absent" / r.filename).as_uri(),), r.md5) for r in spec.remotes)
    monkeypatch.setitem(ds.DATASET_SPECS, "mnist", ds.DatasetSpec(spec.name, spec.subdirs, spec.expected, remotes))
    with pytest.raises(DownloadError, match=r"could not download train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", download=True)


def test_cifar_download_extracts_archive(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = isolated / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i, name in enumerate((*ds.CIFAR10_FILES, "evil/../../escape")):
            blob = cifar_batch_bytes(3, seed=i)[0]
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = ds.DATASET_SPECS["cifar10"]
    remote = ds.Remote(archive.name, (archive.as_uri(),), md5)
    monkeypatch.setitem(ds.DATASET_SPECS, "cifar10", ds.DatasetSpec(spec.name, spec.subdirs, spec.expected, (remote,)))
    data = load_dataset("cifar10", data_dir=isolated / "dl", download=True)
    assert len(data.train) == 15 and len(data.test) == 3
    assert not (isolated / "escape").exists()


# --- npz, arrays, torch datasets --------------------------------------------------------------------


def test_npz_round_trip_and_missing_keys(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)  # NHWC, like Keras
    y = np.arange(20) % 4
    np.savez_compressed(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5],
                        class_names=np.array(["a", "b", "c", "d"]))
    data = load_dataset(str(tmp_path / "mine.npz"))
    assert data.input_shape == (3, 8, 8) and data.class_names == ("a", "b", "c", "d") and not data.flip_ok
    assert np.array_equal(data.train.x.numpy(), x.transpose(0, 3, 1, 2))
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="x_train and y_train"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "absent.npz"))


def test_array_layouts_and_dtypes() -> None:
    y = np.array([0, 1, 0, 1])
    gray = from_arrays(np.zeros((4, 6, 6), np.uint8), y)
    assert gray.input_shape == (1, 6, 6) and gray.train.x.dtype == torch.uint8
    floats = from_arrays(torch.rand(4, 3, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 1, 0]))
    assert floats.train.x.dtype == torch.float32 and floats.n_classes == 2
    wide = from_arrays(np.full((4, 1, 2, 2), 1000, np.int32), y)
    assert wide.train.x.dtype == torch.float32
    forced = from_arrays(np.zeros((4, 3, 5, 3), np.uint8), y, channels_last=True)
    assert forced.input_shape == (3, 3, 5)
    assert from_arrays(np.zeros((4, 1, 2, 2)), y.astype(np.float32)).train.y.dtype == torch.int64


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "message"),
    [
        (np.zeros((5, 1, 4, 4)), np.array([0, 1, 0, 1]), {}, "5 images but 4 labels"),
        (np.zeros((5, 16)), np.arange(5) % 2, {}, "got 2-D"),
        (np.zeros((5, 1, 1, 4, 4)), np.arange(5) % 2, {}, "got 5-D"),
        (np.zeros((4, 1, 4, 4)), np.array([0, 1, 2, 3]), {"n_classes": 3}, "label 3 is out of range"),
        (np.zeros((4, 1, 4, 4)), np.array([0, 1, 2, 3]), {"class_names": ["a", "b"]}, "out of range"),
        (np.zeros((4, 1, 4, 4)), np.array([0, -1, 1, 1]), {}, "negative"),
        (np.zeros((4, 1, 4, 4)), np.array([0.0, 0.5, 1.0, 1.0]), {}, "non-integer value 0.5"),
        (np.zeros((4, 1, 4, 4)), np.array(["a", "b", "a", "b"]), {}, "integer class indices"),
        (np.full((4, 1, 4, 4), np.nan), np.array([0, 1, 0, 1]), {}, "NaN"),
        (np.zeros((0, 1, 4, 4)), np.zeros(0, int), {}, "empty"),
        (np.zeros((4, 1, 4, 4)), np.array([2, 2, 2, 2]), {}, "single class"),
        (np.zeros((4, 1, 4, 4)), np.eye(4)[[0, 1, 0, 1]], {}, "one-hot"),
        (np.zeros((4, 1, 4, 4), bool), np.array([0, 1, 0, 1]), {}, "numeric"),
    ],
)
def test_bad_input_gives_value_error_naming_the_problem(x: np.ndarray, y: np.ndarray, kwargs: dict,
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_arrays(x, y, **kwargs)


def test_test_split_must_match_training_images() -> None:
    with pytest.raises(ValueError, match="same C×H×W"):
        from_arrays(np.zeros((4, 1, 4, 4)), [0, 1, 0, 1], np.zeros((2, 1, 5, 5)), [0, 1])
    with pytest.raises(ValueError, match="both x_test and y_test"):
        from_arrays(np.zeros((4, 1, 4, 4)), [0, 1, 0, 1], np.zeros((2, 1, 4, 4)))


def test_torch_datasets_map_style_and_iterable() -> None:
    x = torch.rand(10, 1, 4, 4)
    y = torch.arange(10) % 2
    tds = torch.utils.data.TensorDataset(x, y)
    data = from_torch_dataset(tds, tds)
    assert torch.equal(data.train.x, x) and torch.equal(data.train.y, y) and len(data.test) == 10

    class Stream(torch.utils.data.IterableDataset):
        classes = ("even", "odd")

        def __iter__(self):
            return iter((x[i, 0].numpy(), int(y[i])) for i in range(10))

    streamed = from_torch_dataset(Stream())
    assert streamed.class_names == ("even", "odd") and streamed.input_shape == (1, 4, 4)
    with pytest.raises(ValueError, match=r"\(image, label\)"):
        from_torch_dataset([x[0], x[1]])


# --- stratified split -----------------------------------------------------------------------------


def test_stratified_split_keeps_proportions_is_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(5), [100, 50, 30, 12, 8])
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checks that the global RNG is left alone
    keep, held = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    assert np.array_equal(np.bincount(labels[held]), [20, 10, 6, 2, 2])
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], held)
    assert np.array_equal(stratified_split(labels, 0.2, np.random.default_rng(3))[1], held)


def test_split_validation_on_dataset_and_tiny_classes() -> None:
    demo = load_dataset("demo")
    train, val = demo.split_validation(0.1, seed=0)
    assert len(val) == 300 and (val.class_counts(10) == 30).all() and len(train) == 2700
    keep, held = stratified_split(np.array([0, 0, 1]), 0.5)
    assert held.tolist() == [held[0]] and 2 in keep  # a single-example class stays in training
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(np.array([0, 1]), 1.0)
