"""What decides skip-pattern at the end of a search: the best architecture's paying skips, costly skips and size.

skip-pattern's value is ``0.55 + 0.11·min(good, 3) − 0.02·min(bad, 5) + 0.05·size`` (``SkipPattern``): near its
0.93 ceiling, medians are decided by a costly skip (0.02) or by the size term, whose loss is below the objective's
noise. For each strategy label this replays ``bench_search_quality.run`` on each seed and decomposes the best
(noise-free) architecture found: the share of seeds with all three paying skips, the share carrying a costly skip,
the size term and how far the parameters overshoot the hidden size (log2). Why: the sixth round blamed radius 3's
late skip-pattern loss on costly skips an early chain locks in; this measures which term it is.

    python benchmarks/skip_pattern_anatomy.py --pending 4 bayesian 'bayesian[radius=3]' hill-climbing
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_quality import parse_seeds, run

from morphnas.searcher.objectives import SkipPattern, make_objective


def best_anatomy(job: tuple[str, int, int, int]) -> dict[str, float]:
    """Search skip-pattern with one label and seed; the anatomy and value of the best architecture found."""
    label, seed, budget, pending = job
    best: list = [-np.inf, None]

    def keep(_trial: int, suggestion, _seen: float, clean: float) -> None:
        if clean > best[0]:
            best[0], best[1] = clean, suggestion.architecture

    run(label, "skip-pattern", seed, budget, pending, record=keep)
    objective = make_objective("skip-pattern", seed)
    assert isinstance(objective, SkipPattern)
    return {"label": label, "seed": seed, "value": best[0], **objective.terms(best[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", nargs="+", help="strategy labels, as bench_search_quality.py takes them")
    parser.add_argument("--seeds", default="100-119,200-219", help="default: the 40 held-out seeds")
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--pending", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    jobs = [(label, seed, args.budget, args.pending) for label in args.labels for seed in parse_seeds(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(best_anatomy, jobs))
    print(f"skip-pattern, {len(jobs) // len(args.labels)} seeds, {args.budget} evaluations, {args.pending} pending\n")
    print("| strategy | median value | all 3 paying skips | a costly skip | costly skips, mean | size term, median "
          "| log2 params over the hidden size, median |")
    print("|---|---|---|---|---|---|---|")
    for label in args.labels:
        mine = [r for r in rows if r["label"] == label]
        col = {k: np.array([r[k] for r in mine]) for k in ("value", "good", "bad", "size", "over")}
        print(f"| {label} | {np.median(col['value']):.4f} | {np.mean(col['good'] >= 3):.0%} | "
              f"{np.mean(col['bad'] > 0):.0%} | {col['bad'].mean():.2f} | {np.median(col['size']):.4f} | "
              f"{np.median(col['over']):+.2f} |")


if __name__ == "__main__":
    main()
