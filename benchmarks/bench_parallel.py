"""Parallel trials: throughput of N workers on one machine, the driver's idle share, the cost of a suggestion.

``throughput``: the same fixed list of architectures (the default CNN at six sizes, each trained from
scratch for a fixed number of epochs, patience off) goes through the real search loop with each worker
setting in turn — ``1x2`` (one worker, two threads), ``1x1`` and ``2x1`` (two process workers, one thread
each) — and the benchmark reports trials per hour, each setting's ratio to ``1x1``, and the driver overhead:
the share of the run's wall-clock in which no worker was training. The architectures come from a strategy
registered here that replays a list, so every setting trains exactly the same work.

``suggest``: the Bayesian strategy's time per suggestion with 1 and with 4 trials pending (fantasies), at a
given number of observed architectures (synthetic metrics; no training).

    python benchmarks/bench_parallel.py throughput --data-dir ../shared/datasets/fashion-mnist --train 36000 --epochs 4
    python benchmarks/bench_parallel.py suggest --observed 50 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import morphnas
from morphnas.engine.results import busy_seconds
from morphnas.graph import generators
from morphnas.graph.graph import Graph
from morphnas.searcher import register_strategy
from morphnas.searcher.strategies import Observation, Strategy, StrategyExhausted, Suggestion, make_strategy
from morphnas.trainer.datasets import from_arrays, load_dataset

ARCHITECTURES = ((24, 64), (32, 64), (24, 80), (32, 80), (24, 96), (32, 96))  # (filters, dense units): six trials


class ReplayList(Strategy):
    """Suggests ``initial`` in order, each from scratch, and nothing else: the same work for every setting."""

    name = "replay-list"

    def propose(self, trial_id: int) -> Suggestion | None:
        if self.pending:
            return None
        raise StrategyExhausted("the list is done")


def _architectures(input_shape: tuple[int, ...], n_classes: int) -> list[Graph]:
    return [generators.cnn(input_shape, n_classes, filters=f, dense_units=d) for f, d in ARCHITECTURES]


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    full = load_dataset("fashion-mnist", data_dir=args.data_dir)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(full.train), size=args.train, replace=False))
    data = from_arrays(full.train.x[keep].numpy(), full.train.y[keep].numpy(), name="fashion-mnist-subset",
                       class_names=full.class_names)
    initial = _architectures(data.input_shape, data.n_classes)
    register_strategy("replay-list", lambda initial, seed=0, **_: ReplayList(_architectures(data.input_shape,
                                                                                             data.n_classes), seed),
                      overwrite=True)
    settings = {"1x2": {"workers": 1, "threads_per_trial": 2, "executor": "thread"},
                "1x1": {"workers": 1, "threads_per_trial": 1, "executor": "thread"},
                "2x1": {"workers": 2, "threads_per_trial": 1, "executor": "process"}}
    out_root = Path(args.out)
    results: dict[str, Any] = {"architectures": [g.n_params() for g in initial], "train_images": args.train,
                               "epochs": args.epochs, "settings": {}}
    for name in args.settings:
        opts = settings[name]
        print(f"--- {name}: {opts} (load {os.getloadavg()[0]:.2f})", flush=True)
        start = time.time()
        # the strategy is a local replay list: a plugin module in a real setting, here registered in this process
        # (process workers only train; the strategy stays in the driver)
        run = morphnas.search(data=data, dataset="arrays", strategy="replay-list", max_trials=len(initial),
                              max_epochs=args.epochs, patience=None, seed=0, quiet=True,
                              out=str(out_root / f"{name}-{int(start)}"), **opts)
        end = time.time()
        trials = run.trials
        wall = end - start
        busy = busy_seconds(trials) / wall
        row = {"wall_s": wall, "trials": len(trials), "trials_per_hour": 3600 * len(trials) / wall,
               "trial_seconds": [round(t.extra["seconds"], 1) for t in trials],
               "median_trial_s": statistics.median(t.extra["seconds"] for t in trials),
               "driver_overhead": 1 - busy, "load_after": os.getloadavg()[0]}
        results["settings"][name] = row
        print(json.dumps(row), flush=True)
    base = results["settings"].get("1x1")
    if base:
        for row in results["settings"].values():
            row["ratio_vs_1x1"] = row["trials_per_hour"] / base["trials_per_hour"]
    return results


def suggest_cost(args: argparse.Namespace) -> dict[str, Any]:
    g = generators.cnn((1, 28, 28), 10, filters=16, dense_units=32)
    out: dict[str, Any] = {}
    for n_obs in args.observed:
        times: dict[int, list[float]] = {1: [], 4: []}
        for rep in range(args.repeats):
            strategy = make_strategy("bayesian", [g], seed=rep)
            rng = np.random.default_rng(rep)
            tid = 0
            while len(strategy.observations) < n_obs:
                s = strategy.suggest(tid)
                strategy.observe(Observation(tid, s.architecture, float(rng.uniform(0.5, 0.9))))
                tid += 1
            for pending in (1, 4):
                ids = list(range(tid, tid + pending))
                for t in ids[:-1]:
                    strategy.suggest(t)
                t0 = time.perf_counter()
                strategy.suggest(ids[-1])
                times[pending].append(time.perf_counter() - t0)
                for t in ids:
                    strategy.cancel(t)
        out[str(n_obs)] = {f"pending_{k}": statistics.median(v) for k, v in times.items()}
        print(n_obs, out[str(n_obs)], flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="which", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--data-dir", required=True, help="directory with the Fashion-MNIST IDX files")
    t.add_argument("--train", type=int, default=6000, help="training images (a seeded subset)")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--settings", nargs="+", default=["1x1", "2x1", "1x2"], choices=["1x1", "2x1", "1x2"])
    t.add_argument("--out", default="bench-out/parallel")
    t.add_argument("--json", default=None)
    s = sub.add_parser("suggest")
    s.add_argument("--observed", type=int, nargs="+", default=[50, 200])
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = throughput(args) if args.which == "throughput" else suggest_cost(args)
    result["machine"] = {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
