"""The named datasets: what each is, where its files are looked for, and what to download.

`load_dataset(name | path.npz, data_dir, download)` is the one entry point. The table `DATASET_SPECS`
holds, per dataset with files, its sub-folder names, its expected files and its `Remote`s; the demo set
ships inside the package and needs no files.
"""

from __future__ import annotations

import importlib.resources
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morphnas.trainer.containers import ImageDataset, from_arrays
from morphnas.trainer.download import Remote, download_file, extract_members
from morphnas.trainer.formats import CIFAR10_FILES, IDX_FILES, idx_file, load_cifar10, load_idx_dataset, load_npz

__all__ = [
    "DATASET_NAMES",
    "DATASET_SPECS",
    "DATA_DIR_ENV",
    "DEMO_FILE",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "SYSTEM_DIRS",
    "DatasetSpec",
    "dataset_search_dirs",
    "load_dataset",
    "load_demo",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(i) for i in range(10))

#: Environment variable naming a directory that holds datasets (one sub-folder per dataset).
DATA_DIR_ENV = "MORPHNAS_DATA_DIR"
DEMO_FILE = "fashion_mnist_demo.npz"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset with files: the sub-folders it may live in, its expected files, its downloads."""

    name: str
    subdirs: tuple[str, ...]
    expected: tuple[str, ...]
    remotes: tuple[Remote, ...]


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

#: The datasets with files, by canonical name.
DATASET_SPECS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        ("fashion-mnist", "FashionMNIST/raw"),
        tuple(f + "[.gz]" for f in IDX_FILES),
        tuple(
            Remote(f + ".gz", (_FMNIST_URL + f + ".gz",), md5)
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
    "mnist": DatasetSpec(
        "mnist",
        ("mnist", "MNIST/raw"),
        tuple(f + "[.gz]" for f in IDX_FILES),
        tuple(
            Remote(f + ".gz", tuple(u + f + ".gz" for u in _MNIST_URLS), md5)
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
    "cifar10": DatasetSpec(
        "cifar10",
        ("cifar-10-batches-py",),
        CIFAR10_FILES,
        (Remote("cifar-10-python.tar.gz", (_CIFAR10_URL,), "c58f30108f718f92721af3b95e74349a"),),
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


def _default_root(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".morphnas" / "data"


def dataset_search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories searched for dataset `name`, in order: `data_dir` (and its sub-folder for the
    dataset), `$MORPHNAS_DATA_DIR/<sub-folder>`, `~/.morphnas/data/<sub-folder>`, then system locations."""
    key = _ALIASES.get(name.lower())
    if key not in DATASET_SPECS:
        raise ValueError(f"no files to search for {name!r}: datasets with files are {', '.join(DATASET_SPECS)}")
    spec = DATASET_SPECS[key]
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


def _complete(spec: DatasetSpec, d: Path) -> bool:
    if spec.name == "cifar10":
        return all((d / f).is_file() for f in CIFAR10_FILES)
    return all(idx_file(d, stem) is not None for stem in IDX_FILES)


def _load_from(spec: DatasetSpec, d: Path) -> ImageDataset:
    if spec.name == "cifar10":
        return load_cifar10(d)
    if spec.name == "fashion-mnist":
        return load_idx_dataset(d, "fashion-mnist", FASHION_MNIST_CLASSES, flip_ok=False)
    return load_idx_dataset(d, "mnist", MNIST_CLASSES, flip_ok=False)


def _download(spec: DatasetSpec, root: Path) -> Path:
    if spec.name == "cifar10":
        archive = download_file(spec.remotes[0], root)
        wanted = [f"cifar-10-batches-py/{f}" for f in (*CIFAR10_FILES, "batches.meta")]
        return extract_members(archive, root / "cifar-10-batches-py", wanted)
    out = root / spec.subdirs[0]
    for remote in spec.remotes:
        download_file(remote, out)
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
        spec = DATASET_SPECS[key]
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
