"""Epoch speed A/B: what makes an epoch faster, each option against a reference measured in the same run.

    python benchmarks/bench_epoch_speed.py --dataset fashion-mnist --data-dir /work/shared/datasets/fashion-mnist \\
        --train-images 10000 [--val-images 5000] [--nets cnn,resnet] [--rounds 3] [--epochs 1] \\
        [--experiments channels_last,compile,batch,eval_batch,threads] [--device cpu] [--out bench-out/epoch-speed]

Experiments (the first variant of each is its reference):
  channels_last  contiguous vs channels-last memory format (today on for CUDA only)
  compile        eager vs `torch.compile` of the training step (`--compile-backend`, default inductor); the first
                 step, compiling included, is reported apart as compile seconds and left out of the throughput
  batch          batch 128 vs 256 vs 512, lr scaled by `--lr-scaling` (speed only; accuracy is bench_recipe's job)
  eval_batch     validation at batch 1024 vs 256 vs 4096 (the ratio is of validation seconds)
  threads        torch's default intra-op threads vs every other count from 1 to the cores
  amp            float32 vs bf16 autocast (bf16 pays on GPUs and on CPUs with AMX; `auto` picks it there)

Method: one process; every variant has its own `Trainer` on the same images (the first `--train-images` of the
training split, validation on `--val-images` from its end) and trains the same generated net from the same
initial weights for `--epochs` epochs (no early stopping). Rounds alternate the variants, the order rotated each
round, so load that drifts during the run hits all alike. Per run: training images/s (training steps only,
compiling excluded), validation seconds, whole-epoch seconds. Ratio = variant ÷ reference throughput within a
round (for eval_batch: reference ÷ variant validation seconds), median over rounds; above 1 is faster.
Writes `epoch_speed.json` and `epoch_speed.md` into `--out`. Run it on an otherwise idle machine: the load
average at the start and end is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_trainer import machine

from morphnas.graph.generators import get_generator
from morphnas.trainer import ImageSplit, TrainConfig, Trainer, load_dataset

EXPERIMENTS = ("channels_last", "compile", "batch", "eval_batch", "threads", "amp")


@dataclass
class Variant:
    """One arm of an experiment: `TrainConfig` overrides and, for the threads experiment, a thread count."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


def variants(experiment: str, args: argparse.Namespace) -> list[Variant]:
    """The arms of `experiment`, the reference first."""
    if experiment == "channels_last":
        return [Variant("contiguous", {"channels_last": False}), Variant("channels-last", {"channels_last": True})]
    if experiment == "compile":
        return [Variant("eager"), Variant(f"compile ({args.compile_backend})",
                                          {"compile": True, "compile_backend": args.compile_backend})]
    if experiment == "batch":
        return [Variant(f"batch {b}", {"batch_size": b, "lr_scaling": args.lr_scaling}) for b in (128, 256, 512)]
    if experiment == "eval_batch":
        return [Variant(f"eval batch {b}", {"eval_batch_size": b}) for b in (1024, 256, 4096)]
    if experiment == "threads":
        default = torch.get_num_threads()
        counts = [n for n in range(1, (os.cpu_count() or 1) + 1) if n != default]
        return [Variant(f"{default} threads (default)", threads=default),
                *(Variant(f"{n} threads", threads=n) for n in counts)]
    if experiment == "amp":
        return [Variant("float32", {"amp": "off"}), Variant("bf16 autocast", {"amp": "bf16"})]
    raise SystemExit(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")


def one_run(trainer: Trainer, net: str, input_shape: tuple[int, ...], n_classes: int, seed: int,
            threads: int | None) -> dict[str, Any]:
    """Train a fresh copy of generator `net` (weights seeded 0) once; its timings."""
    module = get_generator(net)(input_shape, n_classes, seed=0).to_module()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = trainer.fit(module, seed=seed)
    finally:
        torch.set_num_threads(before)
    if not result.ok:
        raise RuntimeError(f"{net}: training failed: {result.reason}")
    h = result.history
    train_s = sum(r.train_seconds for r in h)
    return {"train_images_per_s": result.train_images_per_second, "train_s": train_s,
            "val_s": sum(r.seconds - r.train_seconds for r in h), "epoch_s": sum(r.seconds for r in h) / len(h),
            "compile_s": result.compile_seconds, "compile_error": result.compile_error,
            "val_accuracy": h[-1].val_accuracy}


def run_experiment(experiment: str, net: str, splits: tuple[ImageSplit, ImageSplit], data: Any,
                   args: argparse.Namespace) -> dict[str, Any]:
    """All rounds of one experiment on one net; per-variant medians and ratios to the reference."""
    arms = variants(experiment, args)
    base = {"max_epochs": args.epochs, "patience": None, "batch_size": args.batch}
    trainers = [Trainer(*splits, TrainConfig(**(base | arm.overrides)), device=args.device, n_classes=data.n_classes,
                        flip_default=data.flip_ok, crop_padding_default=data.crop_padding) for arm in arms]
    runs: list[list[dict[str, Any]]] = [[] for _ in arms]
    for r in range(args.rounds):
        order = [(i + r) % len(arms) for i in range(len(arms))]
        for i in order:
            runs[i].append(one_run(trainers[i], net, data.input_shape, data.n_classes, r, arms[i].threads))
        print(f"  {net} {experiment} round {r + 1}: " + ", ".join(
            f"{arms[i].name} {runs[i][-1]['train_images_per_s']:.0f} img/s" for i in range(len(arms))), flush=True)
    out = []
    for arm, rs in zip(arms, runs, strict=True):
        if experiment == "eval_batch":
            ratios = [ref["val_s"] / run["val_s"] for ref, run in zip(runs[0], rs, strict=True)]
        else:
            ratios = [run["train_images_per_s"] / ref["train_images_per_s"]
                      for ref, run in zip(runs[0], rs, strict=True)]
        out.append({"variant": arm.name, "overrides": arm.overrides, "threads": arm.threads,
                    "train_images_per_s": statistics.median(x["train_images_per_s"] for x in rs),
                    "val_s": statistics.median(x["val_s"] for x in rs),
                    "epoch_s": statistics.median(x["epoch_s"] for x in rs),
                    "compile_s": [x["compile_s"] for x in rs], "compile_error": rs[-1]["compile_error"],
                    "ratio": statistics.median(ratios), "ratios": ratios, "runs": rs})
    return {"experiment": experiment, "net": net, "reference": arms[0].name, "variants": out}


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown table, one row per variant."""
    lines = [f"Epoch speed: {report['setting']}", "", f"Machine: {report['machine']}; load average "
             f"{report['load_start']:.2f} at start, {report['load_end']:.2f} at end.", "",
             "| net | experiment | variant | train img/s | val s | epoch s | compile s | ratio (rounds) |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for res in report["results"]:
        for v in res["variants"]:
            compile_s = ", ".join(f"{c:.1f}" for c in v["compile_s"]) if any(v["compile_s"]) else "-"
            if v["compile_error"]:
                compile_s = f"failed: {v['compile_error'][:60]}"
            ratio = "reference" if v["variant"] == res["reference"] else (
                f"{v['ratio']:.3f} ({', '.join(f'{x:.2f}' for x in v['ratios'])})")
            lines.append(f"| {res['net']} | {res['experiment']} | {v['variant']} | {v['train_images_per_s']:.0f} | "
                         f"{v['val_s']:.2f} | {v['epoch_s']:.2f} | {compile_s} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Parse arguments, run the experiments on each net, write JSON and markdown."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--val-images", type=int, default=5000)
    p.add_argument("--nets", default="cnn,resnet", help="generator names, comma-separated")
    p.add_argument("--experiments", default="channels_last,compile,batch,eval_batch,threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128, help="batch size of every experiment but 'batch'")
    p.add_argument("--lr-scaling", default="sqrt", choices=["none", "linear", "sqrt"])
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads for every experiment but 'threads'")
    p.add_argument("--out", default="bench-out/epoch-speed")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    experiments = [e for e in args.experiments.split(",") if e]
    for e in experiments:
        variants(e, args)  # unknown names fail before anything is loaded
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    n = len(data.train)
    if args.train_images + args.val_images > n:
        raise SystemExit(f"--train-images + --val-images = {args.train_images + args.val_images} > {n} images")
    splits = (data.train.subset(torch.arange(args.train_images)),
              data.train.subset(torch.arange(n - args.val_images, n)))
    load_start = os.getloadavg()[0]
    setting = (f"{data.name}, {args.train_images} training and {args.val_images} validation images, "
               f"{args.epochs} epoch(s) per run, {args.rounds} rounds, device {args.device}, batch {args.batch}")
    print(f"{setting}\n{machine()}; load average {load_start:.2f}", flush=True)
    results = []
    start = time.perf_counter()
    for net in [x for x in args.nets.split(",") if x]:
        for e in experiments:
            results.append(run_experiment(e, net, splits, data, args))
    report = {"setting": setting, "machine": machine(), "load_start": load_start, "load_end": os.getloadavg()[0],
              "seconds": time.perf_counter() - start, "results": results,
              "command": "python benchmarks/bench_epoch_speed.py " + " ".join(argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "epoch_speed.json").write_text(json.dumps(report, indent=1))
    (out / "epoch_speed.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
