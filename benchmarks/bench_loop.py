"""Search-loop overhead: the share of a search's wall-clock not spent inside ``Trainer.fit``.

    python benchmarks/bench_loop.py [--trials 8] [--epochs 2] [--strategy bayesian] [--dataset demo]

Runs a search, then splits its wall-clock into training (sum of the trials' fit times) and everything else:
building each child (reading the parent's weights, replaying ops), compiling, measuring the inherited start,
saving models, SQLite and TensorBoard writes, and whatever part of the strategy's suggestion the training
did not hide. Also reports the strategy's own time per suggestion (hidden behind training by the pipeline).
An existing run directory can be analysed instead with --run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import morphnas
from morphnas.storage import RunDir


def analyse(path: Path) -> dict[str, float]:
    run = RunDir.open(path)
    trials = [t for t in run.trials() if t.finished]
    run.close()
    elapsed = max(t.extra.get("elapsed", 0.0) for t in trials)
    fit = sum(t.train_seconds for t in trials)
    trial = sum(t.extra.get("seconds", 0.0) for t in trials)
    seconds = [t.extra.get("info", {}).get("seconds") for t in trials]
    suggest = [s["total"] for s in seconds if isinstance(s, dict) and "total" in s]
    return {"trials": len(trials), "elapsed_s": elapsed, "fit_s": fit, "trial_s": trial,
            "overhead_share": 1 - fit / elapsed, "outside_trials_share": 1 - trial / elapsed,
            "suggest_median_s": statistics.median(suggest) if suggest else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--strategy", default="bayesian")
    ap.add_argument("--generator", default="cnn", help="initial architectures (the recorded figures: cnn)")
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--run", help="analyse this existing run directory instead of running a search")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.run:
        path = Path(args.run)
    else:
        path = Path(tempfile.mkdtemp(prefix="bench-loop-")) / "run"
        start = time.perf_counter()
        morphnas.search(dataset=args.dataset, data_dir=args.data_dir, strategy=args.strategy,
                        generator=args.generator, max_trials=args.trials, max_epochs=args.epochs, out=str(path),
                        quiet=True)
        print(f"search took {time.perf_counter() - start:.1f} s (process wall-clock)")
    res = analyse(path)
    print(f"{res['trials']} trials, {res['elapsed_s']:.1f} s of search, {res['fit_s']:.1f} s in Trainer.fit: "
          f"overhead {res['overhead_share']:.1%} (outside trial functions: {res['outside_trials_share']:.1%}); "
          f"median suggestion {res['suggest_median_s']:.2f} s, hidden behind training")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
