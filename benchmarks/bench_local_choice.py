"""How well does the GP choose among the best model's children? Expected gain of an acquisition's pick vs a
random pick, on the synthetic objectives, from states a hill-climbing search reached.

For each objective and seed, hill climbing runs for ``--checkpoints`` evaluations (its observations are also
fed to a ``bayesian`` strategy); at each checkpoint the GP is fitted, a pool of children of the best model is
drawn (``--radius`` morphisms at most, ``--pool`` of them, ``--draws`` pools), and each acquisition picks one.
The figure is the mean positive gain of the pick's noise-free value over the best so far (what a best-so-far
curve gains from one evaluation), x1000; ``random`` is the mean over the pool (a hill-climbing step's
expectation). Above ``random``: the model chooses better than chance among the moves a local search has.

    python benchmarks/bench_local_choice.py --seeds 0-19 --radius 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_search_quality import parse_seeds

from morphnas.searcher import Observation, make_strategy
from morphnas.searcher.acquisition import make_acquisition
from morphnas.searcher.objectives import OBJECTIVES, make_objective

ACQUISITIONS = {"ei": ("ei", {}), "ucb(1)": ("ucb", {"beta": 1.0}), "ucb(2.576)": ("ucb", {"beta": 2.576}),
                "thompson": ("thompson", {}), "pi": ("pi", {}), "mean": ("ucb", {"beta": 0.0})}


def gains(objective_name: str, seed: int, checkpoints: list[int], radius: int, pool_size: int,
          draws: int) -> dict[str, dict[int, list[float]]]:
    """Per acquisition (and ``random``), per checkpoint: the positive gains of the picks (one per pool drawn)."""
    objective = make_objective(objective_name, seed)
    climber = make_strategy("hill-climbing", [objective.start()], seed=seed)
    model = make_strategy("bayesian", [objective.start()], seed=seed, top_k=1, radius=radius, max_radius=radius,
                          pool_size=pool_size)
    out: dict[str, dict[int, list[float]]] = {name: {} for name in [*ACQUISITIONS, "random"]}
    t = 0
    for n in checkpoints:
        while t < n:
            s = climber.suggest(t)
            o = Observation(t, s.architecture, objective(s.architecture))
            climber.observe(o)
            model.observe(o)
            t += 1
        best = max(objective.clean(o.architecture) for o in model.trained)
        gp, incumbent, _ = model.fit_gp()
        for d in range(draws):
            rng = np.random.default_rng([seed, n, d])
            pool = model.candidate_pool(rng)
            true = np.array([objective.clean(g) for _, _, g in pool])
            indices = model.cache.set_scratch([g for _, _, g in pool])
            try:
                post = gp.posterior(indices, full_cov=True)
                for name, (acq, options) in ACQUISITIONS.items():
                    values = make_acquisition(acq, **options)(post, incumbent, rng)
                    out[name].setdefault(n, []).append(max(0.0, float(true[int(np.argmax(values))]) - best))
            finally:
                model.cache.clear_scratch()
            out["random"].setdefault(n, []).append(float(np.mean(np.maximum(0.0, true - best))))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-19", help="tuning seeds by default (this is a diagnostic)")
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES.names())
    parser.add_argument("--checkpoints", default="10,20,30,40", help="evaluations of hill climbing before each pick")
    parser.add_argument("--radius", type=int, default=1, help="morphisms per child, at most")
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--draws", type=int, default=2, help="pools drawn per checkpoint")
    parser.add_argument("--json", default="", help="write every gain here")
    args = parser.parse_args(argv)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    report: dict[str, dict[str, dict[int, list[float]]]] = {}
    for obj in args.objectives:
        merged: dict[str, dict[int, list[float]]] = {}
        for seed in parse_seeds(args.seeds):
            for name, per in gains(obj, seed, checkpoints, args.radius, args.pool, args.draws).items():
                for n, values in per.items():
                    merged.setdefault(name, {}).setdefault(n, []).extend(values)
        report[obj] = merged
        print(f"\n{obj}: mean positive gain of one pick x1000 (children of the best, radius {args.radius}), "
              f"after {', '.join(map(str, checkpoints))} evaluations, and over all")
        for name, per in merged.items():
            cells = " ".join(f"{1000 * np.mean(per[n]):7.2f}" for n in checkpoints)
            print(f"  {name:11s} {cells} | {1000 * np.mean([np.mean(per[n]) for n in checkpoints]):7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
