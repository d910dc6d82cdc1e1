"""Search quality without training: strategies at an equal number of evaluations of a synthetic objective.

For each seed a hidden target architecture is drawn: a random chain of ``--target-ops`` morphisms of the small
CNN every search starts from. The objective of an architecture is a fake "accuracy" that rises as its summary
statistics approach the target's — depth, log2 parameters, Add skips, Concat skips, log2 widest layer,
5x5 convolutions, batch norms — plus Gaussian noise. These order-free statistics are a measure independent of
the GP's edit distance (which aligns layer sequences and matches skip positions), so the benchmark does not
reward a kernel for being its own objective. Every strategy gets the same budget of evaluations; the script
reports the median best-so-far curve over seeds, a table, and writes a PNG plot.

Usage: ``python benchmarks/bench_search_quality.py [--seeds 10] [--budget 50] [--out-dir docs/img]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from morphnas.graph import Graph, generators
from morphnas.graph.morphisms import random_morph
from morphnas.searcher import Observation, make_strategy

STRATEGIES = ["bayesian", "random-walk", "random", "evolution", "hill-climbing"]
OPTIONS = {"evolution": {"population_size": 10, "sample_size": 3}}  # Real et al.'s P, S scaled to the budget
SCALES = np.array([3.0, 1.5, 1.0, 1.0, 1.0, 2.0, 3.0])


def start() -> Graph:
    """The initial architecture of every search (and the root of every target)."""
    return generators.cnn((3, 16, 16), 10, n_blocks=2, filters=16, dense_units=32, seed=None)


def stats(g: Graph) -> np.ndarray:
    """Order-free summary statistics (not the edit distance's view of an architecture)."""
    kinds = [layer.kind for layer in g.layers.values()]
    k5 = sum(1 for layer in g.layers.values() if layer.kind == "conv2d" and layer.kernel_size == 5)
    return np.array([g.depth(), np.log2(g.n_params()), kinds.count("add"), kinds.count("concat"),
                     np.log2(max(1, g.max_width())), k5, kinds.count("batchnorm")], dtype=np.float64)


class Objective:
    """``0.95 - 0.5·(1 - exp(-Σ|s - s*|/scale / 4))`` plus N(0, noise²): higher is better, max ≈ 0.95."""

    def __init__(self, seed: int, target_ops: int, noise: float) -> None:
        rng = np.random.default_rng([seed, 12345])
        target = start()
        for _ in range(target_ops):
            target, _ = random_morph(target, rng)
        self.target = stats(target)
        self.noise = noise
        self.rng = np.random.default_rng([seed, 54321])

    def clean(self, g: Graph) -> float:
        gap = float(np.sum(np.abs(stats(g) - self.target) / SCALES))
        return 0.95 - 0.5 * (1.0 - np.exp(-gap / 4.0))

    def __call__(self, g: Graph) -> float:
        return self.clean(g) + float(self.rng.normal(0.0, self.noise))


def run(label: str, seed: int, budget: int, target_ops: int, noise: float,
        bo_scale: float | None = 1.0) -> tuple[list[float], float]:
    """Best-so-far noise-free objective after each evaluation, and the seconds spent in suggest().

    ``label`` is a strategy name, or ``bayesian:<acquisition>[:<option>=<value>,...]`` for the method with
    another acquisition (e.g. ``bayesian:ei``, ``bayesian:ucb:beta=1``).
    """
    name, _, rest = label.partition(":")
    acquisition, _, acq_options = rest.partition(":")
    options = dict(OPTIONS.get(name, {}))
    if acquisition:
        options["acquisition"] = acquisition
    if acq_options:
        options["acquisition_options"] = {k: float(v) for k, v in (kv.split("=") for kv in acq_options.split(","))}
    if name in ("bayesian", "bo-scratch"):
        options["annealing"] = {"scale": bo_scale}
    objective = Objective(seed, target_ops, noise)
    strategy = make_strategy(name, [start()], seed=seed, **options)
    best, curve, spent = -np.inf, [], 0.0
    for trial in range(budget):
        t0 = time.perf_counter()
        s = strategy.suggest(trial)  # never None: nothing is pending (StrategyExhausted says if it gives up)
        spent += time.perf_counter() - t0
        strategy.observe(Observation(trial, s.architecture, objective(s.architecture)))
        best = max(best, objective.clean(s.architecture))  # judged without the noise
        curve.append(best)
    return curve, spent


def diagnose(seeds: int, budget: int, target_ops: int, noise: float) -> None:
    """Why the method does what it does: the GP's held-out accuracy on this objective, and where BO looks."""
    from scipy.stats import spearmanr

    from morphnas.searcher import ArchitectureCache, ArchitectureGP

    for seed in range(seeds):
        objective = Objective(seed, target_ops, noise)
        rng = np.random.default_rng([seed, 7])
        graphs = [start()]
        while len(graphs) < 120:  # a random walk of morphisms around the start
            graph, _ = random_morph(graphs[int(rng.integers(len(graphs)))], rng)
            graphs.append(graph)
        y = np.array([objective(g) for g in graphs])
        cache = ArchitectureCache()
        idx = np.array([cache.add(g) for g in graphs])
        perm = rng.permutation(len(graphs))
        train, test = perm[:80], perm[80:]
        cells = []
        for kernel in ("bourgain", "exp-distance", "wl"):
            mean, _ = ArchitectureGP(cache, kernel).fit(idx[train], y[train]).predict(idx[test])
            cells.append(f"{kernel} {spearmanr(mean, y[test])[0]:.2f}")
        print(f"seed {seed}: GP held-out Spearman (80 train / 40 test random-walk architectures): " + ", ".join(cells))
    for seed in range(seeds):
        objective = Objective(seed, target_ops, noise)
        strategy = make_strategy("bayesian", [start()], seed=seed)
        ranks, z, predicted, actual = [], [], [], []
        for trial in range(budget):
            s = strategy.suggest(trial)
            value = objective(s.architecture)
            if trial >= 10:
                order = [o.trial_id for o in sorted(strategy.trained, key=lambda o: -o.metric)]
                ranks.append(order.index(s.parent))
                z.append((value - s.info["mean"]) / max(s.info["std"], 1e-9))
                predicted.append(s.info["mean"])
                actual.append(value)
            strategy.observe(Observation(trial, s.architecture, value))
        r = np.array(ranks)
        hp = strategy.gp.hyperparameters
        print(f"seed {seed}: BO after 10 evaluations: parent = current best in {np.mean(r == 0):.0%} (top 3: "
              f"{np.mean(r < 3):.0%}); (observed - predicted)/std mean {np.mean(z):+.2f}; Spearman(predicted, "
              f"observed) {spearmanr(predicted, actual)[0]:.2f}; fitted constant mean {hp['mean']:+.2f} std")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--target-ops", type=int, default=12)
    parser.add_argument("--noise", type=float, default=0.005)
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--out-dir", default="docs/img")
    parser.add_argument("--name", default="search_quality", help="stem of the PNG and JSON files written")
    parser.add_argument("--diagnose", action="store_true", help="print the GP and BO diagnostics and stop")
    parser.add_argument("--bo-scale", default="1.0",
                        help="annealing temperature scale of the Bayesian variants: a number, or 'none' (spread)")
    args = parser.parse_args()
    if args.diagnose:
        diagnose(args.seeds, args.budget, args.target_ops, args.noise)
        return
    curves: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in args.strategies:
        rows, spent = [], 0.0
        for seed in range(args.seeds):
            scale = None if args.bo_scale.lower() == "none" else float(args.bo_scale)
            curve, sec = run(name, seed, args.budget, args.target_ops, args.noise, scale)
            rows.append(curve)
            spent += sec
            print(f"{name:14s} seed {seed}: best {curve[-1]:.4f}  ({sec:.1f} s in suggest)", flush=True)
        curves[name] = np.array(rows)
        seconds[name] = spent / (args.seeds * args.budget)
    checkpoints = sorted({10, args.budget // 2, args.budget})
    header = "| strategy | " + " | ".join(f"median best @{c}" for c in checkpoints) + \
        " | mean rank @end | s / suggestion |"
    print(header)
    print("|" + "---|" * (len(checkpoints) + 3))
    finals = np.stack([curves[n][:, -1] for n in args.strategies], axis=1)  # (seeds, strategies)
    ranks = (-finals).argsort(axis=1).argsort(axis=1).mean(axis=0) + 1
    for k, name in enumerate(args.strategies):
        med = np.median(curves[name], axis=0)
        cells = " | ".join(f"{med[c - 1]:.4f}" for c in checkpoints)
        print(f"| {name} | {cells} | {ranks[k]:.2f} | {seconds[name]:.3f} |")
    for name in args.strategies:
        c = curves[name]
        gains = np.diff(c, axis=1)
        print(f"{name}: improvements per run {np.mean((gains > 0).sum(axis=1)):.1f}; median gain in evaluations "
              f"1-10 {np.median(c[:, 9] - c[:, 0]):.3f}, 10-{args.budget} {np.median(c[:, -1] - c[:, 9]):.3f}")
    if "bayesian" in curves:
        for name in args.strategies:
            if name != "bayesian":
                wins = np.mean(curves["bayesian"][:, -1] > curves[name][:, -1])
                ties = np.mean(curves["bayesian"][:, -1] == curves[name][:, -1])
                print(f"bayesian beats {name} on {wins:.0%} of seeds (ties {ties:.0%})")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{args.name}.json", "w") as fh:
        json.dump({n: c.tolist() for n, c in curves.items()}, fh)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.arange(1, args.budget + 1)
    for name in args.strategies:
        c = curves[name]
        ax.plot(x, np.median(c, axis=0), label=name, lw=2 if name == "bayesian" else 1.3)
        ax.fill_between(x, np.percentile(c, 25, axis=0), np.percentile(c, 75, axis=0), alpha=0.15)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best-so-far objective (noise-free)")
    ax.set_title(f"Synthetic NAS objective: median and IQR over {args.seeds} seeds")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{args.name}.png", dpi=120)
    print(f"wrote {out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
