"""Image-classification datasets for the trainer: the public face of the data modules beside it.

Every source becomes an `ImageDataset`: a training split, an optional test split, class names and the
dataset's augmentation recipe. Images are tensors N×C×H×W, uint8 when the source is 8-bit (every built-in
source) and float32 otherwise; labels are int64 class indices. Bad input raises a `ValueError` that says
what was expected; a malformed file raises `DataFileError`, a `ValueError` whose one line names the file.
The code lives in one module per concept, re-exported here so that `morphnas.trainer.datasets` keeps
every name it ever had:

- `containers`: `ImageSplit`, `ImageDataset`, `from_arrays`, `from_torch_dataset`, `stratified_split`;
- `arrays`: validation and conversion of array-likes into image and label tensors (`as_images`);
- `formats`: IDX, CIFAR python batches (restricted unpickler) and `.npz` files;
- `download`: MD5-verified, atomic downloads (`DownloadError`, `Remote`);
- `registry`: the named datasets, where their files are looked for, `load_dataset`, the demo set.

The test split is only for a final evaluation the user asks for: the search trains on the training
split minus a validation split carved from it by `ImageDataset.split_validation`.
"""

from __future__ import annotations

from morphnas.trainer.arrays import as_images
from morphnas.trainer.containers import ImageDataset, ImageSplit, from_arrays, from_torch_dataset, stratified_split
from morphnas.trainer.download import DownloadError, Remote
from morphnas.trainer.formats import (
    CIFAR10_CLASSES,
    CIFAR10_FILES,
    IDX_FILES,
    DataFileError,
    idx_file,
    load_cifar10,
    load_idx_dataset,
    load_npz,
    read_cifar_batch,
    read_idx,
)
from morphnas.trainer.registry import (
    DATA_DIR_ENV,
    DATASET_NAMES,
    DATASET_SPECS,
    DEMO_FILE,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    SYSTEM_DIRS,
    DatasetSpec,
    dataset_search_dirs,
    load_dataset,
    load_demo,
)

#: The old private spelling, still imported by `demo_data/make_demo.py`.
_idx_file = idx_file

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "DATASET_NAMES",
    "DATASET_SPECS",
    "DATA_DIR_ENV",
    "DEMO_FILE",
    "FASHION_MNIST_CLASSES",
    "IDX_FILES",
    "MNIST_CLASSES",
    "SYSTEM_DIRS",
    "DataFileError",
    "DatasetSpec",
    "DownloadError",
    "ImageDataset",
    "ImageSplit",
    "Remote",
    "as_images",
    "dataset_search_dirs",
    "from_arrays",
    "from_torch_dataset",
    "idx_file",
    "load_cifar10",
    "load_dataset",
    "load_demo",
    "load_idx_dataset",
    "load_npz",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]
