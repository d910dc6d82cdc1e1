"""Datasets and training for morphnas: load image data, carve a validation split, train any network.

`load_dataset("demo" | "fashion-mnist" | "mnist" | "cifar10" | path.npz)` gives an `ImageDataset`;
`Trainer.from_dataset(data, TrainConfig(...)).fit(module, seed=...)` trains an `nn.Module` on the device
with early stopping and returns a `TrainResult`; `Trainer.evaluate` / `evaluate` score a module on a split.
`TrainConfig.final_recipe(dataset)` is the recipe of the final retrain (its constants: `recipe.FINAL_RECIPES`).
"""

from morphnas.trainer.augment import Augmentation, Normalizer
from morphnas.trainer.datasets import (
    DATASET_NAMES,
    DownloadError,
    ImageDataset,
    ImageSplit,
    dataset_search_dirs,
    from_arrays,
    from_torch_dataset,
    load_cifar10,
    load_dataset,
    load_demo,
    load_idx_dataset,
    load_npz,
    read_cifar_batch,
    read_idx,
    stratified_split,
)
from morphnas.trainer.recipe import FINAL_RECIPES, final_recipe_fields
from morphnas.trainer.trainer import (
    LEGACY_AMP,
    EpochRecord,
    EvalResult,
    TrainConfig,
    Trainer,
    TrainResult,
    cpu_has_bf16_matrix_units,
    evaluate,
    lr_factors,
    precision_name,
    resolve_amp,
    select_device,
)

__all__ = [
    "DATASET_NAMES",
    "FINAL_RECIPES",
    "LEGACY_AMP",
    "Augmentation",
    "DownloadError",
    "EpochRecord",
    "EvalResult",
    "ImageDataset",
    "ImageSplit",
    "Normalizer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "cpu_has_bf16_matrix_units",
    "dataset_search_dirs",
    "evaluate",
    "final_recipe_fields",
    "from_arrays",
    "from_torch_dataset",
    "load_cifar10",
    "load_dataset",
    "load_demo",
    "load_idx_dataset",
    "load_npz",
    "lr_factors",
    "precision_name",
    "read_cifar_batch",
    "read_idx",
    "resolve_amp",
    "select_device",
    "stratified_split",
]
