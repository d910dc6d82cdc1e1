"""Trace one strategy's search of one synthetic objective, proposal by proposal: why a search stalls.

Runs the search exactly as ``bench_search_quality.py`` does (same objective, seed, call order and pending trials)
and prints one line per observed trial: its id, parent, morphisms, the value the strategy saw, the noise-free
value, the best noise-free value so far, and what the strategy's suggestion info says (the trust region's radius,
EI's incumbent, the posterior mean and standard deviation of the pick, its acquisition value), then the
objective's own view of the architecture (stats-target: its summary statistics against the target's; far-optimum:
log2 parameters, depth and skips against the optimum; skip-pattern: each skip's kind and span against the paying
band). Issue 11's sixth round found the dead ends and the flat start with it (docs/benchmarks.md).

    python benchmarks/trace_search.py bayesian stats-target 15
    python benchmarks/trace_search.py 'bayesian[radius=3]' far-optimum 9 --budget 30 --pending 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_quality import run

from morphnas.graph.descriptors import skip_spans
from morphnas.graph.graph import Graph
from morphnas.searcher import Suggestion
from morphnas.searcher.objectives import (
    FarOptimum,
    Objective,
    SkipPattern,
    StatsTarget,
    make_objective,
    summary_stats,
)


def objective_view(objective: Objective, graph: Graph) -> str:
    """What the objective scores, for this architecture (empty for an objective it does not know)."""
    if isinstance(objective, StatsTarget):
        return f"stats {np.round(summary_stats(graph), 2).tolist()}"
    if isinstance(objective, FarOptimum):
        return f"log2 params {np.log2(graph.n_params()):.1f}, depth {graph.depth()}, skips {graph.n_skips()}"
    if isinstance(objective, SkipPattern):
        return f"skips {sorted(skip_spans(graph))}"
    return ""


def objective_header(objective: Objective) -> str:
    """The objective's hidden target, which the strategy never sees."""
    if isinstance(objective, StatsTarget):
        return f"target stats {np.round(objective.target, 2).tolist()} (depth, log2 params, add, concat, " \
               "log2 width, 5x5 convs, batchnorms)"
    if isinstance(objective, FarOptimum):
        return f"optimum (log2 params, depth, skips) {np.round(objective.optimum, 1).tolist()}"
    if isinstance(objective, SkipPattern):
        return f"paying skips: {objective.kind} over {objective.low}-{objective.low + 1} convolutions"
    return ""


def trace(label: str, objective_name: str, seed: int, budget: int = 50, pending: int = 1) -> list[dict[str, Any]]:
    """One row per observed trial, in observation order: ``bench_search_quality.run``'s own search, recorded."""
    if budget < 1 or pending < 0:
        raise ValueError(f"budget must be >= 1 and pending >= 0, got {budget} and {pending}")
    objective = make_objective(objective_name, seed)  # for its view of each architecture, not its noise
    rows: list[dict[str, Any]] = []

    def record(trial_id: int, suggestion: Suggestion, seen: float, clean: float) -> None:
        info = suggestion.info
        rows.append({"trial": trial_id, "parent": suggestion.parent, "ops": [op.name for op in suggestion.ops],
                     "seen": seen, "clean": clean, "best": max(clean, rows[-1]["best"] if rows else clean),
                     **{k: info[k] for k in ("radius", "incumbent", "mean", "std", "acquisition") if k in info},
                     "view": objective_view(objective, suggestion.architecture)})

    run(label, objective_name, seed, budget, pending, record=record)
    return rows


def format_row(row: dict[str, Any]) -> str:
    """One printed line of ``trace``."""
    model = " ".join(f"{k} {row[k]:.4g}" if isinstance(row[k], float) else f"{k} {row[k]}"
                     for k in ("radius", "incumbent", "mean", "std", "acquisition") if k in row)
    ops = ",".join(row["ops"]) or "-"
    return (f"{row['trial']:3d} parent {row['parent']!s:>4s} {ops:34s} seen {row['seen']:.4f} "
            f"clean {row['clean']:.4f} best {row['best']:.4f}  {model}  {row['view']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategy", help="a label as in bench_search_quality.py, e.g. bayesian[radius=3]")
    parser.add_argument("objective")
    parser.add_argument("seed", type=int)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--pending", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        rows = trace(args.strategy, args.objective, args.seed, args.budget, args.pending)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"# {args.strategy} on {args.objective}, seed {args.seed}, {args.pending} pending; "
          f"{objective_header(make_objective(args.objective, args.seed))}")
    for row in rows:
        print(format_row(row))


if __name__ == "__main__":
    main()
