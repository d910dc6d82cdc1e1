"""What a real-training search's best model carries from its lineage: generations, parents, size and skips.

With weight inheritance a child starts from its parent's trained weights and trains ``max_epochs`` more, so a model
``g`` morphisms from the start has had ``g + 1`` rounds of training: its accuracy mixes its architecture with its
lineage's training, which an architecture-only model of the metric cannot see. For each strategy label in the given
suite directories (``morphnas benchmark run --out DIR``) this reads every cell's trials and reports: the median best
validation metric, the best model's generation (morphism steps from a seed model), the share of proposals that were
children of the best model finished when they were suggested, the best model's parameters and skips, and the median
gain of a child over its parent; then, over all cells, the Spearman correlation of the best metric with the
generation. Why: issue 11's eighth round asks whether parent choice, not architecture, is what separates strategies
on 12 trials of real training.

    python benchmarks/lineage_anatomy.py /work/runs/strategy-real-v5 /work/runs/strategy-real-steps
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from morphnas.storage.rundir import RunDir, TrialRecord, best_trial


def cell_lineage(trials: list[TrialRecord]) -> dict[str, float] | None:
    """The lineage anatomy of one search (one cell): None when no trial has a metric."""
    best = best_trial(trials)
    if best is None:
        return None
    by_id = {t.id: t for t in trials}
    generation, node = 0, best
    while node.parent is not None and node.parent in by_id:
        generation, node = generation + 1, by_id[node.parent]
    done = [t for t in trials if t.has_metric and t.finished_at is not None]
    of_best, children, gains = 0, 0, []
    for t in trials:
        if t.parent is None or t.parent not in by_id:
            continue
        parent = by_id[t.parent]
        if t.has_metric and parent.has_metric:
            gains.append(float(t.metric) - float(parent.metric))
        known = [d for d in done if d.finished_at <= t.suggested_at]  # what the strategy had seen
        if known:
            children += 1
            of_best += best_trial(known).id == parent.id
    return {"best": float(best.metric), "generation": float(generation),
            "child_of_best": of_best / children if children else float("nan"),
            "params": float(best.n_params), "skips": float(best.skips),
            "gain": float(np.median(gains)) if gains else float("nan")}


def suite_cells(root: Path) -> list[tuple[str, Path]]:
    """(strategy label, cell directory) of every cell under a suite's output directory."""
    return [(db.parent.parent.parent.name, db.parent) for db in sorted(root.glob("*/*/b*/s*/trials.sqlite"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+", type=Path, help="suite output directories (benchmark run --out)")
    args = parser.parse_args(argv)
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for root in args.suites:
        if not root.is_dir():
            parser.error(f"{root} is not a directory; expected a suite's output directory (benchmark run --out)")
        cells = suite_cells(root)
        if not cells:
            parser.error(f"{root} holds no cell (expected DATASET/STRATEGY/bN/sN/trials.sqlite under it)")
        for label, cell in cells:
            run = RunDir.open(cell)
            try:
                anatomy = cell_lineage(run.trials())
            finally:
                run.close()
            if anatomy is not None:
                rows[label].append(anatomy)
    print("| strategy | cells | median best | generation (mean) | child of the best | params (median) "
          "| skips (mean) | child's gain over parent (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, cells in sorted(rows.items(), key=lambda kv: -np.median([c["best"] for c in kv[1]])):
        col = {k: np.array([c[k] for c in cells]) for k in cells[0]}
        print(f"| {label} | {len(cells)} | {np.median(col['best']):.4f} | {col['generation'].mean():.1f} "
              f"| {np.nanmean(col['child_of_best']):.2f} | {np.median(col['params']):.0f} | {col['skips'].mean():.1f} "
              f"| {np.nanmedian(col['gain']):+.4f} |")
    every = [c for cells in rows.values() for c in cells]
    if len(every) >= 3:
        rho = spearmanr([c["best"] for c in every], [c["generation"] for c in every])
        print(f"\nOver {len(every)} cells: Spearman(best metric, generation) = {rho.statistic:.2f} "
              f"(p = {rho.pvalue:.4f})")


if __name__ == "__main__":
    main()
