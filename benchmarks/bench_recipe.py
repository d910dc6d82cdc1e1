"""The final recipe, ingredient by ingredient: validation and test accuracy epoch by epoch for recipe variants.

    python benchmarks/bench_recipe.py --dataset fashion-mnist --data-dir /work/shared/datasets/fashion-mnist \\
        [--net resnet] [--epochs 15] [--train-images 0] [--seeds 0] \\
        [--variants base,ls,ema,warmup,cutout,flip,recipe] [--extra NAME:FIELD=VALUE,...] [--out bench-out/recipe]

Each variant trains the same generated net (`--net`, default arguments, weights seeded by the seed) from scratch
for `--epochs` epochs with no early stopping, on the training split minus a stratified 10% validation split
(seed 0), or a seeded subset of `--train-images` of it (0 = all; `--test-images` likewise, for a quick check).
After every epoch it records the validation accuracy (of the weights the trainer validates: the EMA average when
on) and the test accuracy of the same weights — the test split is only looked at, never used to choose anything
inside a run; the time spent on it is left out of the wall-clock. Variants:

  base     the search trials' defaults (`TrainConfig()`: SGD + Nesterov, lr 0.05, cosine to 0, batch 128) without
           early stopping
  ls       base + the recipe's label smoothing         ema     base + the recipe's weight EMA
  warmup   base + the recipe's warm-up epochs          cutout  base + cutout (`--cutout`, or the recipe's if > 0)
  flip     base + horizontal flips (off for Fashion-MNIST by its recipe: does mirroring help anyway?)
  recipe   `TrainConfig.final_recipe(dataset)`: every ingredient the recipe turns on (morphnas/trainer/recipe.py)
  NAME     any `--extra NAME:field=value,field=value` (TrainConfig fields on top of base; `recipe+` as a prefix
           of NAME's fields puts them on top of the recipe instead, e.g. `--extra slow-ema:recipe+ema_decay=0.9995`)

Writes into `--out` after every finished run (so a killed run keeps what it finished): `recipe.json` (every epoch
of every run), `recipe.md` (per variant: best-validation epoch, its test accuracy, the last epoch's test
accuracy, mean over seeds) and `recipe.png` (validation and test accuracy against epoch). Set the recipe's
constants from these figures, in morphnas/trainer/recipe.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_trainer import machine, overrides
from torch import nn

from morphnas.fileio import atomic_write
from morphnas.graph.generators import get_generator
from morphnas.trainer import EpochRecord, ImageDataset, TrainConfig, Trainer, load_dataset
from morphnas.trainer.recipe import final_recipe_fields

VARIANTS = ("base", "ls", "ema", "warmup", "cutout", "flip", "recipe")


def variant_configs(names: list[str], extras: list[str], dataset: str, epochs: int, cutout: int,
                    common: dict[str, Any]) -> dict[str, TrainConfig]:
    """The `TrainConfig` of each named variant (`common` fields on top of each, e.g. from `--set`)."""
    recipe = final_recipe_fields(dataset)
    base = {"max_epochs": epochs, "patience": None} | common
    singles = {"ls": {"label_smoothing": recipe["label_smoothing"]}, "ema": {"ema_decay": recipe["ema_decay"]},
               "warmup": {"warmup_epochs": recipe["warmup_epochs"]},
               "cutout": {"cutout": recipe.get("cutout") or cutout}, "flip": {"flip": True}}
    out: dict[str, TrainConfig] = {}
    for name in names:
        if name == "base":
            out[name] = TrainConfig(**base)
        elif name == "recipe":
            out[name] = TrainConfig(**(recipe | base))
        elif name in singles:
            out[name] = TrainConfig(**(base | singles[name]))
        else:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} or define it with --extra")
    for spec in extras:
        name, _, fields = spec.partition(":")
        on_recipe = fields.startswith("recipe+")
        fields = fields.removeprefix("recipe+")
        extra = overrides([f for f in fields.split(",") if f])
        out[name] = TrainConfig(**((recipe if on_recipe else {}) | base | extra))
    return out


def train_variant(name: str, cfg: TrainConfig, data: ImageDataset, train: Any, val: Any, net: str,
                  seed: int, device: str) -> dict[str, Any]:
    """Train `net` with `cfg`; validation and test accuracy after every epoch."""
    assert data.test is not None
    trainer = Trainer(train, val, cfg, device=device, n_classes=data.n_classes, flip_default=data.flip_ok,
                      crop_padding_default=data.crop_padding)
    module = get_generator(net)(data.input_shape, data.n_classes, seed=seed).to_module()
    rows: list[dict[str, Any]] = []
    excluded = 0.0

    def log(rec: EpochRecord, validated: nn.Module) -> None:
        nonlocal excluded
        t0 = time.perf_counter()
        test = trainer.evaluate(validated, data.test)
        rows.append({"epoch": rec.epoch, "lr": rec.lr, "train_loss": rec.train_loss,
                     "train_accuracy": rec.train_accuracy, "val_loss": rec.val_loss, "val_accuracy": rec.val_accuracy,
                     "test_accuracy": test.accuracy, "epoch_s": rec.seconds, "wall_s": rec.elapsed - excluded})
        excluded += time.perf_counter() - t0
        print(f"  {name} seed {seed} epoch {rec.epoch}: val {rec.val_accuracy:.2%} test {test.accuracy:.2%} "
              f"({rec.seconds:.0f} s)", flush=True)

    result = trainer.fit(module, seed=seed, callback=log)
    if not result.ok:
        raise RuntimeError(f"{name}: training failed: {result.reason}")
    best = rows[result.best_epoch - 1]
    return {"variant": name, "seed": seed, "config": str(cfg), "augmentation": str(trainer.augmentation),
            "best_epoch": result.best_epoch, "best_val_accuracy": best["val_accuracy"],
            "test_at_best_val": best["test_accuracy"], "test_at_last": rows[-1]["test_accuracy"],
            "seconds": rows[-1]["wall_s"], "train_images_per_s": result.train_images_per_second, "epochs": rows}


def markdown(report: dict[str, Any]) -> str:
    """Per run and per variant (mean over seeds): best validation, its epoch, test at it and at the last epoch."""
    lines = [f"Recipe variants: {report['setting']}", "", f"Machine: {report['machine']}", "",
             "| variant | seed | best val | at epoch | test at best val | test at last epoch | minutes |",
             "|---|---|---:|---:|---:|---:|---:|"]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for run in report["runs"]:
        by_variant.setdefault(run["variant"], []).append(run)
        lines.append(f"| {run['variant']} | {run['seed']} | {run['best_val_accuracy']:.2%} | {run['best_epoch']} | "
                     f"{run['test_at_best_val']:.2%} | {run['test_at_last']:.2%} | {run['seconds'] / 60:.1f} |")
    lines += ["", "| variant | seeds | mean best val | mean test at best val | mean test at last epoch |",
              "|---|---:|---:|---:|---:|"]
    for name, runs in by_variant.items():
        keys = ("best_val_accuracy", "test_at_best_val", "test_at_last")
        mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
        lines.append(f"| {name} | {len(runs)} | {mean['best_val_accuracy']:.2%} | {mean['test_at_best_val']:.2%} | "
                     f"{mean['test_at_last']:.2%} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Validation and test accuracy against epoch, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colours: dict[str, Any] = {}
    for run in report["runs"]:
        colour = colours.setdefault(run["variant"], f"C{len(colours) % 10}")
        epochs = [r["epoch"] for r in run["epochs"]]
        for ax, key in zip(axes, ("val_accuracy", "test_accuracy"), strict=True):
            ax.plot(epochs, [r[key] for r in run["epochs"]], color=colour, alpha=0.8,
                    label=run["variant"] if run["seed"] == report["seeds"][0] else None)
    for ax, title in zip(axes, ("validation accuracy", "test accuracy (looked at, never used)"), strict=True):
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str]) -> int:
    """Parse arguments, train every variant for every seed, write JSON, markdown and PNG after each run."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--net", default="resnet", help="a generator name (default arguments)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--train-images", type=int, default=0, help="a seeded subset of the training part (0 = all)")
    p.add_argument("--test-images", type=int, default=0,
                   help="score a seeded subset of the test split (0 = all; a quick check only)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (net weights, shuffling, augmentation)")
    p.add_argument("--variants", default="base,ls,ema,warmup,recipe")
    p.add_argument("--extra", action="append", default=[], metavar="NAME:FIELD=VALUE,...")
    p.add_argument("--cutout", type=int, default=8, help="cutout size of the 'cutout' variant when the recipe has none")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="TrainConfig fields for all")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="bench-out/recipe")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    configs = variant_configs(names, args.extra, args.dataset, args.epochs, args.cutout, overrides(args.set))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    if data.test is None:
        raise SystemExit(f"dataset {args.dataset!r} has no test split")
    train, val = data.split_validation(0.1, 0)
    if args.test_images:
        keep = np.sort(np.random.default_rng(0).permutation(len(data.test))[: args.test_images])
        data = dataclasses.replace(data, test=data.test.subset(keep))
    if args.train_images:
        if args.train_images > len(train):
            raise SystemExit(f"--train-images {args.train_images} > {len(train)} training images")
        train = train.subset(np.sort(np.random.default_rng(0).permutation(len(train))[: args.train_images]))
    setting = (f"{data.name}, net {args.net}, {len(train)} training / {len(val)} validation / {len(data.test)} test "
               f"images, {args.epochs} epochs, seeds {seeds}; recipe {final_recipe_fields(args.dataset)}")
    print(f"{setting}\n{machine()}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"setting": setting, "machine": machine(), "seeds": seeds, "runs": [],
                              "command": "python benchmarks/bench_recipe.py " + " ".join(argv)}
    for seed in seeds:
        for name, cfg in configs.items():
            report["runs"].append(train_variant(name, cfg, data, train, val, args.net, seed, args.device))
            atomic_write(out / "recipe.json", json.dumps(report, indent=1))
            atomic_write(out / "recipe.md", markdown(report))
            plot(report, out / "recipe.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
