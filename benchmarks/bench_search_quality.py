"""Search quality without training: strategies at an equal number of evaluations of synthetic objectives.

Each strategy searches each registered objective (``morphnas.searcher.objectives``: ``stats-target``,
``far-optimum``, ``skip-pattern``) from the same small CNN, once per seed, for ``--budget`` evaluations, called
in the search loop's real order: the next trial is suggested while ``--pending`` trials are still pending (1 is a
one-worker search, 4 a four-worker one), and the oldest pending trial is observed after each suggestion. The
objective's noisy value is what the strategy observes; its noise-free value is what the benchmark judges.
Seeds are fixed: strategies are tuned on 0-19 and reported on the held-out 100-119 (the default). Those
held-out seeds have been read by four rounds of changes, so from the fifth round (2026-12-07) every result is
also reported on a fresh held-out set, 200-219, fixed here before that round's tuning started and not run
before it.

Output: per objective, the median best-so-far at 10, 25 and 50 evaluations, the mean rank at the end, wins and
losses of the first strategy against each other one at the end, seconds per suggestion; JSON of every curve
and one PNG per objective (median and interquartile band).

A strategy label is a registered name with options: ``bayesian``, ``autokeras``, ``bayesian[acquisition=ei]``,
``bayesian[control=random-scores]`` (values are JSON, else strings).

    python benchmarks/bench_search_quality.py --seeds 100-119 --pending 1 --out-dir docs/img
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from morphnas.searcher import Observation, StrategyExhausted, make_strategy
from morphnas.searcher.objectives import OBJECTIVES, make_objective

STRATEGIES = ["bayesian", "autokeras", "hill-climbing", "evolution", "random-walk", "random"]
OPTIONS = {"evolution": {"population_size": 10, "sample_size": 3}}  # Real et al.'s P, S scaled to the budget


def parse_label(label: str) -> tuple[str, dict[str, Any]]:
    """``name[k=v,...]`` -> (name, options); values parsed as JSON where they are JSON."""
    m = re.fullmatch(r"([\w-]+)(?:\[(.*)\])?", label.strip())
    if not m:
        raise ValueError(f"bad strategy label {label!r}: expected name or name[key=value,...]")
    name, body = m.group(1), m.group(2)
    options = dict(OPTIONS.get(name, {}))
    for item in filter(None, (body or "").split(",")):
        key, _, value = item.partition("=")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value.strip()
    return name, options


def parse_seeds(text: str) -> list[int]:
    """'100-119' or '0,3,5' -> a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return seeds


def run(label: str, objective_name: str, seed: int, budget: int, pending: int) -> tuple[list[float], list[float]]:
    """Best-so-far noise-free value after each observation, and the seconds of each suggest() call."""
    name, options = parse_label(label)
    objective = make_objective(objective_name, seed)
    strategy = make_strategy(name, [objective.start()], seed=seed, **options)
    queue: list[tuple[int, Any]] = []  # suggested, not yet observed (oldest first)
    best, curve, times = -np.inf, [], []
    next_id = 0
    while len(curve) < budget:
        while next_id < budget and len(queue) <= pending:  # suggest while at most `pending` are in flight
            t0 = time.perf_counter()
            try:
                suggestion = strategy.suggest(next_id)
            except StrategyExhausted:
                suggestion = None
            times.append(time.perf_counter() - t0)
            if suggestion is None:  # it waits for a result
                break
            queue.append((next_id, suggestion.architecture))
            next_id += 1
        if not queue:
            break
        trial_id, graph = queue.pop(0)
        strategy.observe(Observation(trial_id, graph, objective(graph)))
        best = max(best, objective.clean(graph))
        curve.append(best)
    curve += [best] * (budget - len(curve))  # an exhausted strategy keeps its best
    return curve, times


def _cell(job: tuple[str, str, int, int, int]) -> tuple[str, str, int, list[float], list[float]]:
    label, objective, seed, budget, pending = job
    curve, times = run(label, objective, seed, budget, pending)
    return label, objective, seed, curve, times


def summarize(curves: dict[str, np.ndarray], times: dict[str, list[float]], labels: list[str], budget: int,
              objective: str) -> list[str]:
    """The markdown table and win/loss lines of one objective."""
    checkpoints = sorted({10, 25, budget} & set(range(1, budget + 1)))
    lines = [f"### {objective}", "",
             "| strategy | " + " | ".join(f"median @{c}" for c in checkpoints) + " | mean rank @end | s / suggestion |",
             "|" + "---|" * (len(checkpoints) + 3)]
    finals = np.stack([curves[n][:, -1] for n in labels], axis=1)
    ranks = np.mean([np.argsort(np.argsort(-row, kind="stable"), kind="stable") + 1 for row in finals], axis=0)
    for k, name in enumerate(labels):
        med = np.median(curves[name], axis=0)
        cells = " | ".join(f"{med[c - 1]:.4f}" for c in checkpoints)
        lines.append(f"| {name} | {cells} | {ranks[k]:.2f} | {np.median(times[name]):.3f} |")
    first = labels[0]
    lines.append("")
    for name in labels[1:]:
        for c in checkpoints:
            a, b = curves[first][:, c - 1], curves[name][:, c - 1]
            lines.append(f"- @{c}: {first} beats {name} on {int(np.sum(a > b))} seeds, loses on {int(np.sum(a < b))}, "
                         f"ties {int(np.sum(a == b))}")
    return lines


def plot(curves: dict[str, np.ndarray], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in labels:
        c = curves[name]
        x = np.arange(1, c.shape[1] + 1)
        ax.plot(x, np.median(c, axis=0), label=name, lw=2 if name == labels[0] else 1.2)
        ax.fill_between(x, np.percentile(c, 25, axis=0), np.percentile(c, 75, axis=0), alpha=0.12)
    ax.set(xlabel="evaluations", ylabel="best-so-far objective (noise-free)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100-119", help="e.g. 100-119 (held out, default) or 0-19 (tuning)")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--pending", type=int, default=1, help="trials pending at each suggestion (1 or 4)")
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES.names())
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES,
                        help="labels; the first is compared with every other one")
    parser.add_argument("--jobs", type=int, default=2, help="processes (seeds run in parallel)")
    parser.add_argument("--out-dir", default="bench-out")
    parser.add_argument("--name", default="search_quality", help="stem of the JSON, markdown and PNG files")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    for label in args.strategies:
        parse_label(label)
    jobs = [(label, obj, seed, args.budget, args.pending)
            for obj in args.objectives for label in args.strategies for seed in seeds]
    results: dict[tuple[str, str], dict[int, list[float]]] = {}
    times: dict[tuple[str, str], list[float]] = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for label, obj, seed, curve, t in pool.map(_cell, jobs):
            results.setdefault((label, obj), {})[seed] = curve
            times.setdefault((label, obj), []).extend(t)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = [f"# Search quality: {len(seeds)} seeds ({args.seeds}), {args.budget} evaluations, "
              f"{args.pending} pending at each suggestion", ""]
    for obj in args.objectives:
        curves = {label: np.array([results[(label, obj)][s] for s in seeds]) for label in args.strategies}
        obj_times = {label: times[(label, obj)] for label in args.strategies}
        report += [*summarize(curves, obj_times, args.strategies, args.budget, obj), ""]
        plot(curves, args.strategies, out / f"{args.name}_{obj}.png",
             f"{obj}: median and IQR over {len(seeds)} seeds, {args.pending} pending")
    report.append(f"({time.perf_counter() - start:.0f} s in all)")
    text = "\n".join(report)
    print(text)
    (out / f"{args.name}.md").write_text(text + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(
        {"seeds": seeds, "budget": args.budget, "pending": args.pending,
         "curves": {f"{label}|{obj}": [results[(label, obj)][s] for s in seeds] for label, obj in results}}))


if __name__ == "__main__":
    main()
