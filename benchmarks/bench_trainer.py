"""Trainer benchmarks: throughput against a minimal hand-written loop, and accuracy on real data.

    python benchmarks/bench_trainer.py throughput [--train 10000] [--epochs 1] [--rounds 3] [--threads N]
    python benchmarks/bench_trainer.py accuracy --dataset fashion-mnist [--epochs 15] [--json out.json]
    python benchmarks/bench_trainer.py accuracy --dataset cifar10 [--epochs 15] [--set flip=false ...]

Data come from the shared real datasets (`--data-dir`, default $MORPHNAS_SHARED_DATASETS or
../shared/datasets beside the checkout). The network is the Auto-Keras default CNN,
`morphnas.graph.generators.cnn(input_shape, n_classes)`, compiled with `to_module()`.

throughput: the first `--train` Fashion-MNIST training images (and 1,000 validation images), batch 128, SGD
  with Nesterov momentum and weight decay, float32 on both sides (`amp="off"`). Reference: a minimal PyTorch
  loop over a pre-normalised float tensor in memory (randperm, forward, loss, zero_grad, backward, step; an
  inference-mode validation pass each epoch). Candidate: `Trainer.fit` (uint8 data, per-epoch augmentation
  with crop 3 px and flips — the most augmentation work any recipe does on 28×28 —, per-batch normalisation,
  cosine schedule, accuracy/loss bookkeeping, best-weight copies), again with augmentation off, and that again
  with the search's live progress bars updated by the per-batch hook (drawn into /dev/null as a terminal). Runs
  are interleaved in rounds in one process; every run starts from the same weights.
  Ratio = candidate images/s ÷ reference images/s (medians over rounds; also the median of the per-round
  ratios, which is robust to load that drifts between rounds), wall-clock of whole epochs including
  validation on both sides.
accuracy: `Trainer.from_dataset(data)` with `TrainConfig(max_epochs=N)` (all else default, 10% stratified
  validation split, seed 0), then after every epoch the test accuracy of the current weights (the test split
  is only looked at, never used to select anything; the time spent on it is excluded from wall-clock).
  `--set field=value` overrides a `TrainConfig` field (ints, floats, true/false/none parsed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morphnas.engine.progress import Progress
from morphnas.graph import generators
from morphnas.trainer import EpochRecord, ImageSplit, TrainConfig, Trainer, load_dataset, precision_name, resolve_amp


def shared_dir(arg: str | None) -> Path:
    """Where the shared real datasets are."""
    if arg:
        return Path(arg)
    env = os.environ.get("MORPHNAS_SHARED_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def machine() -> str:
    """One line describing the machine and software, with the precision `amp="auto"` trains in on its CPU (bf16
    on AMX), so that a figure is never compared across precisions unawares."""
    auto = precision_name(resolve_amp("auto", torch.device("cpu")))
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, python {platform.python_version()}, amp auto on the CPU = {auto}")


def default_cnn(input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """The Auto-Keras default CNN from the graph generators (seeded weights)."""
    return generators.cnn(input_shape, n_classes).to_module()


def reference_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
                    opt: torch.optim.Optimizer, bs: int, gen: torch.Generator) -> float:
    """One epoch of the minimal hand-written loop plus a validation pass; returns validation accuracy."""
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    for i in range(len(y) // bs):
        idx = perm[i * bs : (i + 1) * bs]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    correct = torch.zeros((), dtype=torch.int64)
    with torch.inference_mode():
        for i in range(0, len(vy), 1024):
            correct += (model(vx[i : i + 1024]).argmax(1) == vy[i : i + 1024]).sum()
    return correct.item() / len(vy)


def bench_throughput(args: argparse.Namespace) -> dict:
    """Trainer vs minimal loop, same model, data, batch size; interleaved rounds."""
    data = load_dataset("fashion-mnist", data_dir=shared_dir(args.data_dir))
    train = ImageSplit(data.train.x[: args.train], data.train.y[: args.train])
    val = ImageSplit(data.train.x[-1000:], data.train.y[-1000:])
    # float32 on both sides: the reference loop has no autocast, so the trainer's default bf16 on an AMX CPU
    # would compare precisions, not loops (bf16 is measured on its own in bench_epoch_speed.py)
    cfg = TrainConfig(max_epochs=args.epochs, batch_size=args.batch, patience=None, amp="off")
    trainers = {
        "trainer (crop 3 px + flip)": Trainer(train, val, cfg, device="cpu", n_classes=10, flip_default=True),
        "trainer (no augmentation)": Trainer(
            train, val, TrainConfig(max_epochs=args.epochs, batch_size=args.batch, patience=None, crop_padding=0,
                               amp="off"),
            device="cpu", n_classes=10),
    }
    # the same trainer again with the search's live progress bars fed by the per-batch hook (drawn into /dev/null
    # as if it were a terminal): progress must cost nothing measurable
    bars = Progress(live=True, stream=open(os.devnull, "w"))
    bars.start_search(1, None, args.epochs, 0, lambda: 0.0)
    hooks = {"trainer (no augmentation, live progress bars)": lambda *a: bars.on_batch(0, *a)}
    trainers["trainer (no augmentation, live progress bars)"] = trainers["trainer (no augmentation)"]
    norm = trainers["trainer (no augmentation)"].normalizer
    fx, fvx = norm(train.x), norm(val.x)  # the reference gets its data pre-normalised, in memory
    init = default_cnn(data.input_shape, 10).state_dict()
    n_images = (len(train) // args.batch) * args.batch * args.epochs
    times: dict[str, list[float]] = {"reference (hand-written loop)": [], **{k: [] for k in trainers}}
    for r in range(args.rounds):
        model = default_cnn(data.input_shape, 10)
        model.load_state_dict(init)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        gen = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            reference_epoch(model, fx, train.y, fvx, val.y, opt, args.batch, gen)
        times["reference (hand-written loop)"].append(time.perf_counter() - t0)
        for name, trainer in trainers.items():
            model = default_cnn(data.input_shape, 10)
            model.load_state_dict(init)
            t0 = time.perf_counter()
            res = trainer.fit(model, seed=r, on_batch=hooks.get(name))
            times[name].append(time.perf_counter() - t0)
            assert res.ok, res.reason
        print(f"round {r + 1}: " + ", ".join(f"{k.split(' ')[0]} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    bars.stop()
    ref = statistics.median(times["reference (hand-written loop)"])
    out = {"images_per_run": n_images, "rounds": args.rounds, "machine": machine(), "results": {}}
    ref_times = times["reference (hand-written loop)"]
    for name, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median(r / t for r, t in zip(ref_times, ts, strict=True))
        out["results"][name] = {"median_s": med, "images_per_s": n_images / med, "ratio": ref / med,
                                "paired_ratio": paired, "times_s": ts}
        print(f"{name:32s} {n_images / med:8.0f} images/s  (median {med:.2f} s)  ratio {ref / med:.3f}  "
              f"median of per-round ratios {paired:.3f}")
    return out


def overrides(items: list[str]) -> dict:
    """`TrainConfig` fields from `field=value` strings."""
    out: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        low = raw.lower()
        if low in ("true", "false", "none"):
            out[key] = {"true": True, "false": False, "none": None}[low]
        else:
            try:
                out[key] = int(raw)
            except ValueError:
                try:
                    out[key] = float(raw)
                except ValueError:
                    out[key] = raw
    return out


def bench_accuracy(args: argparse.Namespace) -> dict:
    """Default CNN, trainer defaults, test accuracy and wall-clock after every epoch."""
    data = load_dataset(args.dataset, data_dir=shared_dir(args.data_dir))
    trainer = Trainer.from_dataset(data, TrainConfig(max_epochs=args.epochs, **overrides(args.set)), seed=0)
    model = default_cnn(data.input_shape, data.n_classes)
    rows: list[dict] = []
    excluded = 0.0
    print(f"{data}; {machine()}", flush=True)

    def log(rec: EpochRecord, module: nn.Module) -> None:
        nonlocal excluded
        t0 = time.perf_counter()
        test = trainer.evaluate(module, data.test)
        row = {"epoch": rec.epoch, "train_loss": rec.train_loss, "val_accuracy": rec.val_accuracy,
               "test_accuracy": test.accuracy, "epoch_s": rec.seconds, "wall_s": rec.elapsed - excluded}
        rows.append(row)
        excluded += time.perf_counter() - t0
        print(json.dumps(row), flush=True)

    result = trainer.fit(model, seed=0, callback=log)
    final = trainer.evaluate(model, data.test)
    out = {"dataset": str(data), "machine": machine(), "config": str(trainer.config),
           "augmentation": str(trainer.augmentation), "status": result.status, "stopped_by": result.stopped_by,
           "best_epoch": result.best_epoch, "best_val_accuracy": result.best_metric,
           "test_accuracy_of_best_epoch": final.accuracy, "epochs": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "epochs"}), flush=True)
    return out


def main(argv: list[str]) -> None:
    """Parse arguments, run one benchmark, optionally write its JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["throughput", "accuracy"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs is None:
        args.epochs = 1 if args.which == "throughput" else 15
    out = bench_throughput(args) if args.which == "throughput" else bench_accuracy(args)
    out["command"] = "python benchmarks/bench_trainer.py " + " ".join(argv)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main(sys.argv[1:])
