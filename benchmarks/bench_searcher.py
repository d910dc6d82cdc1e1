"""Overhead of one Bayesian suggestion (distance updates + GP fit + candidate search) at 50, 200 and 500 observed.

The observed architectures are a random walk of morphisms from the Auto-Keras default CNN for CIFAR-10
(3x32x32, 10 classes; no weights: the searcher never needs them). For each size the script reports, as medians
over ``--repeats`` runs on the same machine in the same process:

- ``add``: adding one new architecture to the distance cache (its distances to all n members);
- ``suggest (cold fit)`` / ``suggest (warm fit)``: a whole ``suggest()`` with the GP hyperparameters fitted
  from the defaults or warm-started from the previous fit (the strategy's ``refit`` policy set to ``cold`` /
  ``warm``; its default, ``doubling``, fits cold while n <= 64 and whenever n has doubled since the last cold
  fit), with its GP-fit part and the rest (the candidate search: the default ``bayesian``'s trust-region pool, or
  ``autokeras``'s tree annealing; ``--strategy``) and the number of candidates scored;
- the GP fit with torch's default intra-op threads against one thread (the strategy's setting), as a ratio.

Usage: ``python benchmarks/bench_searcher.py [--strategy bayesian|autokeras] [--sizes 50 200 500] [--repeats 3]
[--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from morphnas.graph import generators
from morphnas.graph.morphisms import random_morph
from morphnas.searcher import ArchitectureGP, Observation, make_strategy


def population(n: int, seed: int = 0) -> list:
    """``n`` architectures: a random walk of morphisms from the default CNN."""
    rng = np.random.default_rng(seed)
    graphs = [generators.cnn((3, 32, 32), 10, seed=None)]
    while len(graphs) < n:
        graph, _ = random_morph(graphs[int(rng.integers(len(graphs)))], rng)
        graphs.append(graph)
    return graphs


def metric(graph) -> float:
    return float(0.8 - 0.02 * abs(graph.depth() - 10) - 0.02 * abs(np.log2(graph.n_params()) - 18)
                 + 0.01 * min(graph.n_skips(), 4))


def bench_size(n: int, repeats: int, strategy_name: str = "bayesian") -> dict:
    graphs = population(n + repeats + 1)
    rng = np.random.default_rng(1)
    # the model's proposal is what is timed: bayesian's climbs (a random child once its region has collapsed, which
    # these random-walk observations soon do) cost milliseconds and fit no GP
    options = {"climb_collapsed": False} if strategy_name == "bayesian" else {}
    strategy = make_strategy(strategy_name, graphs[:1], seed=0, **options)
    strategy.suggest(0)
    for tid, g in enumerate(graphs[:n]):
        strategy.observe(Observation(tid, g, metric(g) + float(rng.normal(0, 0.005))))
    mean_layers = float(np.mean([g.n_layers() for g in graphs[:n]]))

    adds = []
    for g in graphs[n:n + repeats]:
        cache = strategy.cache
        start = time.perf_counter()
        cache.add(g)
        adds.append(time.perf_counter() - start)  # (these few extra members are kept: n grows by <1 %)

    def suggestion(trial_id: int, cold: bool) -> dict:
        strategy.refit = "cold" if cold else "warm"
        start, cpu = time.perf_counter(), time.process_time()
        s = strategy.suggest(trial_id)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert s.info["cold_fit"] == cold
        strategy.cancel(trial_id)  # keep n fixed: withdraw the suggestion
        gp_fit = s.info["seconds"]["gp_fit"]
        scored = s.info["pool"] if "pool" in s.info else s.info["annealing"]["scored"]
        return {"total": total, "cpu": cpu, "gp_fit": gp_fit, "search": total - gp_fit, "scored": scored}

    suggestion(10**6, cold=True)  # warm-up: imports, allocations
    cold = [suggestion(10**6 + k, cold=True) for k in range(1, repeats + 1)]
    warm = [suggestion(2 * 10**6 + k, cold=False) for k in range(repeats)]

    idx = np.array([strategy.cache_index(o.trial_id) for o in strategy.trained])
    y = np.array([o.metric for o in strategy.trained])
    threads = {}
    for label, t in (("default", None), ("one", 1)):
        times = []
        for _ in range(repeats):
            gp = ArchitectureGP(strategy.cache, threads=t)
            start = time.perf_counter()
            gp.fit(idx, y)
            times.append(time.perf_counter() - start)
        threads[label] = statistics.median(times)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {"n": n, "mean_layers": mean_layers, "add": statistics.median(adds),
            "cold": {k: med(cold, k) for k in cold[0]}, "warm": {k: med(warm, k) for k in warm[0]},
            "gp_fit_threads": threads, "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="bayesian", help="a GP strategy: bayesian (default) or autokeras")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    print(f"strategy {args.strategy}; machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads; load average {os.getloadavg()[0]:.1f} at start")
    results = []
    for n in args.sizes:
        r = bench_size(n, args.repeats, args.strategy)
        results.append(r)
        print(f"n={n:4d} (mean {r['mean_layers']:.0f} layers): add {r['add'] * 1e3:6.1f} ms | "
              f"suggest cold {r['cold']['total']:.2f} s ({r['cold']['cpu']:.2f} CPU; "
              f"GP {r['cold']['gp_fit']:.2f}, search "
              f"{r['cold']['search']:.2f}) | warm {r['warm']['total']:.2f} s ({r['warm']['cpu']:.2f} CPU; "
              f"GP {r['warm']['gp_fit']:.2f}, "
              f"search {r['warm']['search']:.2f}, {r['warm']['scored']:.0f} scored) | GP fit threads "
              f"default/one = {r['gp_fit_threads']['default'] / r['gp_fit_threads']['one']:.1f}x")
    base = results[0]
    for r in results[1:]:
        print(f"growth n={base['n']} -> {r['n']} ({r['n'] / base['n']:.0f}x n): add "
              f"{r['add'] / base['add']:.1f}x, warm suggest {r['warm']['total'] / base['warm']['total']:.1f}x, "
              f"cold suggest {r['cold']['total'] / base['cold']['total']:.1f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
