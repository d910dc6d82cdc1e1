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

Output: per objective, the median best-so-far at 10, 25 and 50 evaluations, the mean rank at the end, seconds
per suggestion; for the first strategy against each other one at each checkpoint, wins, losses, the mean paired
difference and an exact Wilcoxon signed-rank p-value (``morphnas.engine.stats``), and whether issue 11's
criterion holds (median at or above the other's at every checkpoint, more seeds won than lost at the end); JSON
of every curve and one PNG per objective (median and interquartile band).

``--load A.json B.json`` runs nothing: it pools the curves of earlier runs (same budget and pending, disjoint
seeds, e.g. two held-out sets) and reports them the same way. Why: at the ceiling of an objective, 20 seeds
decide a median by differences below the noise, and a pooled set, with the paired test beside the medians,
says whether a gap is one.

A strategy label is a registered name with options: ``bayesian``, ``autokeras``, ``bayesian[acquisition=ei]``,
``bayesian[control=random-scores]`` (values are JSON, else strings).

    python benchmarks/bench_search_quality.py --seeds 100-119 --pending 1 --out-dir docs/img
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from morphnas.engine.stats import wilcoxon_paired
from morphnas.searcher import Observation, StrategyExhausted, Suggestion, make_strategy
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


def run(label: str, objective_name: str, seed: int, budget: int, pending: int,
        record: Callable[[int, Suggestion, float, float], None] | None = None) -> tuple[list[float], list[float]]:
    """Best-so-far noise-free value after each observation, and the seconds of each suggest() call.

    ``record(trial_id, suggestion, seen, clean)``, if given, is called for each observed trial, in observation
    order, with the noisy value the strategy saw and the noise-free one (``trace_search.py`` prints them)."""
    name, options = parse_label(label)
    objective = make_objective(objective_name, seed)
    strategy = make_strategy(name, [objective.start()], seed=seed, **options)
    queue: list[tuple[int, Suggestion]] = []  # suggested, not yet observed (oldest first)
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
            queue.append((next_id, suggestion))
            next_id += 1
        if not queue:
            break
        trial_id, suggestion = queue.pop(0)
        graph = suggestion.architecture
        seen, clean = objective(graph), objective.clean(graph)
        strategy.observe(Observation(trial_id, graph, seen))
        if record is not None:
            record(trial_id, suggestion, seen, clean)
        best = max(best, clean)
        curve.append(best)
    curve += [best] * (budget - len(curve))  # an exhausted strategy keeps its best
    return curve, times


def _cell(job: tuple[str, str, int, int, int]) -> tuple[str, str, int, list[float], list[float]]:
    label, objective, seed, budget, pending = job
    curve, times = run(label, objective, seed, budget, pending)
    return label, objective, seed, curve, times


def checkpoints_of(budget: int) -> list[int]:
    """The evaluations the report reads: 10, 25 and the budget (those within it)."""
    return sorted({10, 25, budget} & set(range(1, budget + 1)))


def criterion(first: np.ndarray, other: np.ndarray, checkpoints: list[int]) -> list[str]:
    """Why ``first`` does not meet issue 11's criterion against ``other`` (curves, one row per seed): its median
    below the other's at a checkpoint, or no more seeds won than lost at the last one. Empty when it is met."""
    why = [f"median @{c} {np.median(first[:, c - 1]):.4f} < {np.median(other[:, c - 1]):.4f}"
           for c in checkpoints if np.median(first[:, c - 1]) < np.median(other[:, c - 1])]
    end = checkpoints[-1] - 1
    won, lost = int(np.sum(first[:, end] > other[:, end])), int(np.sum(first[:, end] < other[:, end]))
    if won <= lost:
        why.append(f"seeds @{end + 1} {won} won, {lost} lost")
    return why


def summarize(curves: dict[str, np.ndarray], times: dict[str, list[float]] | None, labels: list[str],
              budget: int, objective: str) -> list[str]:
    """The markdown table, paired comparisons and criterion lines of one objective (``times`` None: not timed)."""
    checkpoints = checkpoints_of(budget)
    lines = [f"### {objective}", "",
             "| strategy | " + " | ".join(f"median @{c}" for c in checkpoints) + " | mean rank @end | s / suggestion |",
             "|" + "---|" * (len(checkpoints) + 3)]
    finals = np.stack([curves[n][:, -1] for n in labels], axis=1)
    ranks = np.mean([np.argsort(np.argsort(-row, kind="stable"), kind="stable") + 1 for row in finals], axis=0)
    for k, name in enumerate(labels):
        med = np.median(curves[name], axis=0)
        cells = " | ".join(f"{med[c - 1]:.4f}" for c in checkpoints)
        seconds = f"{np.median(times[name]):.3f}" if times else "–"
        lines.append(f"| {name} | {cells} | {ranks[k]:.2f} | {seconds} |")
    first = labels[0]
    lines.append("")
    for name in labels[1:]:
        for c in checkpoints:
            a, b = curves[first][:, c - 1], curves[name][:, c - 1]
            test = wilcoxon_paired(a, b)
            p = f"p = {test.p:.3f}" if test.p is not None else "p n/a (too few differing seeds)"
            lines.append(f"- @{c}: {first} beats {name} on {test.wins} seeds, loses on {test.losses}, ties "
                         f"{test.ties}; mean difference {float(np.mean(a - b)):+.4f}, Wilcoxon {p}")
        why = criterion(curves[first], curves[name], checkpoints)
        lines.append(f"- criterion against {name}: " + ("met" if not why else "not met: " + "; ".join(why)))
    return lines


def load_runs(paths: list[str]) -> tuple[list[int], int, int, dict[str, np.ndarray]]:
    """Pool the curves of earlier runs' JSON files: (seeds, budget, pending, curves by ``label|objective``).

    The runs must share budget and pending, and no seed may appear twice; a label|objective is kept only where
    every file has it. ValueError saying which file differs otherwise."""
    if not paths:
        raise ValueError("--load needs at least one JSON file written by this benchmark")
    seeds: list[int] = []
    budget = pending = None
    pooled: dict[str, list[np.ndarray]] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            run_seeds, run_budget, run_pending = [int(s) for s in data["seeds"]], int(data["budget"]), \
                int(data["pending"])
            run_curves = {k: np.asarray(v, dtype=np.float64) for k, v in data["curves"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a search-quality JSON ({exc})") from exc
        if budget is None:
            budget, pending = run_budget, run_pending
        elif (run_budget, run_pending) != (budget, pending):
            raise ValueError(f"{path}: budget {run_budget}, pending {run_pending}; the first file has budget "
                             f"{budget}, pending {pending} (only runs of one setting can be pooled)")
        twice = sorted(set(seeds) & set(run_seeds))
        if twice:
            raise ValueError(f"{path}: seeds {twice} are already in an earlier file (pool disjoint seed sets)")
        for key, curve in run_curves.items():
            if curve.shape != (len(run_seeds), run_budget):
                raise ValueError(f"{path}: {key} has shape {curve.shape}, expected ({len(run_seeds)}, {run_budget})")
        if seeds:
            pooled = {k: [*v, run_curves[k]] for k, v in pooled.items() if k in run_curves}
        else:
            pooled = {k: [v] for k, v in run_curves.items()}
        seeds += run_seeds
    if not pooled:
        raise ValueError("no strategy|objective is in every file")
    return seeds, int(budget), int(pending), {k: np.concatenate(v) for k, v in pooled.items()}


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
    parser.add_argument("--objectives", nargs="+", default=None, help="default: every registered objective "
                        "(with --load: every objective in the files)")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="labels; the first is compared with every other one (with --load: default the "
                             "files' labels, in order)")
    parser.add_argument("--jobs", type=int, default=2, help="processes (seeds run in parallel)")
    parser.add_argument("--load", nargs="+", metavar="JSON", help="run nothing: pool and report these runs")
    parser.add_argument("--out-dir", default="bench-out")
    parser.add_argument("--name", default="search_quality", help="stem of the JSON, markdown and PNG files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    times: dict[tuple[str, str], list[float]] | None = None
    if args.load:
        try:
            seeds, budget, pending, pooled = load_runs(args.load)
        except ValueError as exc:
            parser.error(str(exc))
        keys = [k.split("|", 1) for k in pooled]
        labels = args.strategies or list(dict.fromkeys(label for label, _ in keys))
        objectives = args.objectives or list(dict.fromkeys(obj for _, obj in keys))
        missing = [f"{label}|{obj}" for obj in objectives for label in labels if f"{label}|{obj}" not in pooled]
        if missing:
            parser.error(f"not in every loaded file: {', '.join(missing)}")
        results = {(label, obj): dict(zip(seeds, pooled[f"{label}|{obj}"].tolist(), strict=True))
                   for obj in objectives for label in labels}
        seed_text = ", ".join(Path(p).stem for p in args.load) + " pooled"
    else:
        seeds, budget, pending = parse_seeds(args.seeds), args.budget, args.pending
        labels, objectives = args.strategies or STRATEGIES, args.objectives or OBJECTIVES.names()
        for label in labels:
            parse_label(label)
        jobs = [(label, obj, seed, budget, pending) for obj in objectives for label in labels for seed in seeds]
        results, times = {}, {}
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for label, obj, seed, curve, t in pool.map(_cell, jobs):
                results.setdefault((label, obj), {})[seed] = curve
                times.setdefault((label, obj), []).extend(t)
        seed_text = args.seeds
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = [f"# Search quality: {len(seeds)} seeds ({seed_text}), {budget} evaluations, "
              f"{pending} pending at each suggestion", ""]
    for obj in objectives:
        curves = {label: np.array([results[(label, obj)][s] for s in seeds]) for label in labels}
        obj_times = {label: times[(label, obj)] for label in labels} if times is not None else None
        report += [*summarize(curves, obj_times, labels, budget, obj), ""]
        plot(curves, labels, out / f"{args.name}_{obj}.png",
             f"{obj}: median and IQR over {len(seeds)} seeds, {pending} pending")
    report.append(f"({time.perf_counter() - start:.0f} s in all)")
    text = "\n".join(report)
    print(text)
    (out / f"{args.name}.md").write_text(text + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(
        {"seeds": seeds, "budget": budget, "pending": pending,
         "curves": {f"{label}|{obj}": [results[(label, obj)][s] for s in seeds] for label, obj in results}}))


if __name__ == "__main__":
    main()
