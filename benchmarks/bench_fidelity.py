"""Single- against multi-fidelity search at equal time budget, on real data: what ASHA buys.

    python benchmarks/bench_fidelity.py --dataset fashion-mnist --data-dir /work/shared/datasets/fashion-mnist \
        --train-images 20000 --time-budget 30m --max-epochs 9 --seeds 0 1 2

For each seed, one search per mode — ``single`` (every trial ``--single-epochs``, default ``--max-epochs``) and
``asha`` (rungs ``--min-epochs`` · ``--eta``^k up to ``--max-epochs``) — alternating, so a drift in the
machine's load touches both alike. Each is an ordinary run directory under ``--out`` (``morphnas report`` works
on it), with the same strategy, seed, data and the whole-job ``--time-budget`` (search, final retrain on
train+validation, and one test). Reported per run:

- trials finished, and per hour of search; architectures evaluated (distinct), and per hour;
- the best validation accuracy *at the top rung* (trials trained ``--max-epochs`` in their lineage; for
  ``single`` every trial), and the incumbent (best by rung, then metric) with its rung;
- the final test accuracy (``final.json``) and the job's seconds.

``--train-images N`` keeps a stratified, seeded subset of N training images (the test split stays whole unless
``--test-images``). Wall-clock figures are only comparable on an otherwise idle machine with the same cores;
the script prints the load average before each run. ``--json FILE`` writes every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import morphnas
from morphnas.cli import parse_duration
from morphnas.engine.fidelity import Rungs
from morphnas.storage import RunDir
from morphnas.trainer.containers import ImageDataset, ImageSplit, stratified_split
from morphnas.trainer.datasets import load_dataset

MODES = ("single", "asha")


def subset(split: ImageSplit, n: int | None, seed: int) -> ImageSplit:
    """A stratified, seeded subset of ``n`` images of ``split`` (all of it when ``n`` is None or not smaller)."""
    if n is None or n >= len(split.y):
        return split
    if n < 1:
        raise ValueError(f"a subset needs at least one image, got {n}")
    _, keep = stratified_split(split.y.numpy(), n / len(split.y), seed)
    idx = np.sort(keep)
    return ImageSplit(split.x[idx], split.y[idx])


def bench_data(name: str, data_dir: str | None, train_images: int | None, test_images: int | None,
               seed: int = 0) -> ImageDataset:
    """The dataset with its training (and test) split cut to the given sizes."""
    data = load_dataset(name, data_dir=data_dir)
    test = None if data.test is None else subset(data.test, test_images, seed)
    return dataclasses.replace(data, train=subset(data.train, train_images, seed), test=test)


def summarise(path: Path, mode: str, top_epochs: int) -> dict[str, Any]:
    """One run's figures (see the module docstring)."""
    run = RunDir.open(path)
    try:
        trials = [t for t in run.trials() if t.finished]
        best = run.best_trial()
        final = run.final_report() or {}
        job = float(run.job_state().get("elapsed", 0.0))
    finally:
        run.close()
    search_seconds = max((float(t.extra.get("elapsed", 0.0)) for t in trials), default=0.0)
    top = [t for t in trials if t.has_metric and (t.fidelity or 0) >= top_epochs and t.status == "ok"]
    hours = search_seconds / 3600 if search_seconds > 0 else float("nan")
    archs = len({t.arch_hash for t in trials})
    return {"mode": mode, "run": str(path), "trials": len(trials), "trials_per_hour": len(trials) / hours,
            "architectures": archs, "architectures_per_hour": archs / hours,
            "promotions": sum(t.continues is not None for t in trials),
            "best_val_top_rung": max((t.metric for t in top), default=None),
            "incumbent": None if best is None else best.id, "incumbent_val": None if best is None else best.metric,
            "incumbent_rung": None if best is None else best.rung,
            "test_accuracy": final.get("test_accuracy"), "final_epochs": final.get("epochs"),
            "search_seconds": search_seconds, "job_seconds": job}


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.2%}" if pct else (f"{value:.1f}" if isinstance(value, float) else str(value))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-images", type=int, default=None, help="a stratified subset of the training split")
    ap.add_argument("--test-images", type=int, default=None, help="a stratified subset of the test split")
    ap.add_argument("--time-budget", type=parse_duration, required=True, help="each run's whole job, e.g. 30m")
    ap.add_argument("--max-epochs", type=int, default=9, help="the top rung (and single's epochs by default)")
    ap.add_argument("--single-epochs", type=int, default=None, help="epochs of a single-fidelity trial")
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--strategy", default="bayesian")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--generator", default="cnn", help="initial architectures (the recorded figures: cnn)")
    ap.add_argument("--generator-args", type=json.loads, default={}, help='JSON, e.g. \'{"filters": 32}\'')
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=None, help="directory for the run directories (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the rows to this file")
    args = ap.parse_args(argv)
    rungs = Rungs(args.min_epochs, args.eta, args.max_epochs)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    data = bench_data(args.dataset, args.data_dir, args.train_images, args.test_images)
    print(f"{args.dataset}: {len(data.train.y)} training images, "
          f"{0 if data.test is None else len(data.test.y)} test; budget {args.time_budget:.0f} s per run; "
          f"asha {rungs.describe()}, single {args.single_epochs or args.max_epochs} epochs per trial", flush=True)
    rows = []
    for seed in args.seeds:
        for mode in args.modes:
            path = out / f"{mode}-s{seed}"
            epochs = args.max_epochs if mode == "asha" else (args.single_epochs or args.max_epochs)
            print(f"[{time.strftime('%H:%M:%S')}] {mode}, seed {seed} (load {os.getloadavg()[0]:.2f}) -> {path}",
                  flush=True)
            morphnas.search(data=data, dataset=args.dataset, strategy=args.strategy, seed=seed,
                            time_budget=args.time_budget, max_epochs=epochs, fidelity=mode,
                            min_epochs=args.min_epochs, eta=args.eta, batch_size=args.batch_size,
                            generator=args.generator, generator_args=args.generator_args, out=str(path),
                            quiet=True)
            rows.append({"seed": seed, **summarise(path, mode, args.max_epochs)})
            r = rows[-1]
            print(f"  {r['trials']} trials ({r['promotions']} promotions), {r['architectures']} architectures; "
                  f"best val at the top rung {_fmt(r['best_val_top_rung'], True)}; incumbent trial {r['incumbent']} "
                  f"(rung {r['incumbent_rung']}, {_fmt(r['incumbent_val'], True)}); test "
                  f"{_fmt(r['test_accuracy'], True)}; job {r['job_seconds']:.0f} s", flush=True)
    print(f"\n{'mode':>6} {'seed':>4} {'trials':>6} {'/hour':>7} {'archs':>5} {'/hour':>7} {'top val':>8} "
          f"{'incumbent':>14} {'test':>7} {'job s':>6}")
    for r in rows:
        inc = f"{_fmt(r['incumbent_val'], True)} r{r['incumbent_rung']}"
        print(f"{r['mode']:>6} {r['seed']:>4} {r['trials']:>6} {_fmt(r['trials_per_hour']):>7} "
              f"{r['architectures']:>5} {_fmt(r['architectures_per_hour']):>7} "
              f"{_fmt(r['best_val_top_rung'], True):>8} {inc:>14} {_fmt(r['test_accuracy'], True):>7} "
              f"{r['job_seconds']:>6.0f}")
    for mode in args.modes:
        tests = [r["test_accuracy"] for r in rows if r["mode"] == mode and r["test_accuracy"] is not None]
        if tests:
            print(f"{mode}: mean test accuracy {np.mean(tests):.2%} over {len(tests)} seed(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
        print(f"rows: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
