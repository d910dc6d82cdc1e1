"""The final recipe: how the chosen architecture is retrained once the search is over, per dataset, in one place.

A search trial and the final retrain want different training. A trial must rank candidates cheaply, so it keeps
the plain defaults of `TrainConfig` (every option below off). The final retrain is where accuracy is won, so it
turns on what costs little per epoch and helps a long run: label smoothing, a short linear warm-up, cosine
decay to exactly zero at the last step, an exponential moving average (EMA) of the weights (validated, kept and
returned instead of the raw weights), no early stopping, and the dataset's augmentation.

The constants below are starting points taken from common practice, NOT yet measured here:
`benchmarks/bench_recipe.py` trains a net with each ingredient on and off on Fashion-MNIST and logs validation
and test accuracy epoch by epoch, and the values are to be set from its figures (docs/benchmarks.md). Change
them here only; `TrainConfig.final_recipe(dataset)` and the benchmark read them from this table.

- label smoothing 0.1 (Szegedy et al. 2016; the usual value for 10 classes);
- EMA decay 0.999 per optimizer step: an averaging horizon of about 1/(1-0.999) = 1,000 steps, about 2.4 epochs
  of full Fashion-MNIST at batch 128; the trainer ramps the decay up over the first steps
  (min(decay, (1+t)/(10+t))) so early averages do not drag the random initialisation along;
- warm-up 1 epoch, linear from about 0 to the peak learning rate (it matters most with larger batches and
  scaled learning rates);
- augmentation: the dataset's own crop padding and flip (`ImageDataset.crop_padding`, `flip_ok`: 4 px and flips
  for CIFAR-10, 2 px and no flips for Fashion-MNIST and MNIST) plus cutout: 16 px on CIFAR-10 (DeVries & Taylor
  2017), off on 28×28 data until measured.

This module imports nothing from morphnas (the trainer imports it), so the table is plain data.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FINAL_RECIPES", "final_recipe_fields"]

_COMMON: dict[str, Any] = {
    "schedule": "cosine",
    "label_smoothing": 0.1,
    "ema_decay": 0.999,
    "warmup_epochs": 1.0,
    "patience": None,  # the final retrain has no held-out data to stop on: it trains the planned epochs
}

FINAL_RECIPES: dict[str, dict[str, Any]] = {
    "default": {**_COMMON},
    "fashion-mnist": {**_COMMON, "cutout": 0},
    "mnist": {**_COMMON, "cutout": 0},
    "cifar10": {**_COMMON, "cutout": 16},
}
# datasets that take another's recipe: the demo set is a sample of Fashion-MNIST
_ALIASES = {"demo": "fashion-mnist", "cifar-10": "cifar10", "fashion_mnist": "fashion-mnist"}


def final_recipe_fields(dataset: str | None = None) -> dict[str, Any]:
    """The `TrainConfig` fields of the final recipe for `dataset` (a registered name; anything else, e.g. an .npz
    path or None, gets the "default" recipe). A copy: changing it changes nothing here."""
    name = (dataset or "default").lower()
    name = _ALIASES.get(name, name)
    return dict(FINAL_RECIPES.get(name, FINAL_RECIPES["default"]))
