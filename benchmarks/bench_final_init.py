"""Where the final training starts: from scratch, or from the weights the search trained (inherited over morphisms).

    python benchmarks/bench_final_init.py RUN [--trial T] [--epochs 15] [--inits scratch,inherit] [--threads 0] \\
        [--lr-scale 1] [--out bench-out/final-init]

Trains trial ``T``'s architecture (the run's best by default) with the run's final recipe
(``engine.final.final_train_config``) for ``--epochs`` epochs on the search's *training split only*, and records
the validation accuracy after every epoch, for each start:

  scratch  fresh weights (seeded like the final step's), what ``final_init = "scratch"`` trains
  inherit  the trial's own trained weights: its lineage's training through every morphism plus its own epochs

Neither arm trains on the validation split; the test split is not read at all, so comparing the two starts
spends nothing of the run's one test. The validation split favours ``inherit`` a little: its starting weights
were chosen on it (each trial keeps its best epoch; the best trial is the best by validation), so its margin
is an upper bound. Epoch-bounded and seeded: the accuracies do not depend on the machine's
load (the seconds do). Writes ``final_init.json`` into ``--out`` after every arm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_trainer import machine

from morphnas.engine.final import FINAL_SEED_KEY, final_train_config, pick_trial
from morphnas.engine.setup import load_data, stored_config, trial_seeds
from morphnas.fileio import atomic_write
from morphnas.graph.graph import Graph
from morphnas.storage.rundir import RunDir
from morphnas.trainer import EpochRecord, Trainer


def main(argv: list[str] | None = None) -> int:
    """Run both starts and print one line per epoch; see the module doc."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--trial", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--inits", default="scratch,inherit")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="multiply the recipe's peak learning rate")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--out", default="bench-out/final-init")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunDir.open(args.run)
    config = stored_config(run)
    data = load_data(config, run)
    if data is None:
        raise SystemExit(f"{args.run} is a run on a synthetic objective: nothing to train")
    record = pick_trial(run, args.trial)
    _, val = data.split_validation(config.val_fraction, config.seed)  # the split the trainer validates on
    cfg = replace(final_train_config(config), max_epochs=args.epochs, patience=None, time_limit=None)
    cfg = replace(cfg, lr=(cfg.lr if cfg.lr is not None else replace(cfg, lr_scaling="none").base_lr) * args.lr_scale)
    init_seed, train_seed = trial_seeds(config.seed, FINAL_SEED_KEY)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"run": str(args.run), "trial": record.id, "search_val_accuracy": record.metric,
                                  "epochs": args.epochs, "lr": cfg.lr, "machine": machine(), "arms": {}}
    for init in args.inits.split(","):
        if init == "scratch":
            graph = Graph.from_dict(record.extra["architecture"]).without_weights().init_weights(init_seed)
        elif init == "inherit":
            graph = run.load_model(record.id)
        else:
            raise SystemExit(f"unknown start {init!r}: expected scratch or inherit")
        trainer = Trainer.from_dataset(data, cfg, val_fraction=config.val_fraction, seed=config.seed,
                                       device=config.device)  # the search's split and normalisation
        module = graph.to_module()
        start = trainer.evaluate(module, val).accuracy
        print(f"{init}: trial {record.id}, validation accuracy before training {start:.4f}", flush=True)
        epochs: list[dict[str, float]] = []

        def on_epoch(rec: EpochRecord, _m: object, name: str = init, log: list = epochs) -> None:
            log.append({"epoch": rec.epoch, "val_accuracy": rec.val_accuracy, "train_accuracy": rec.train_accuracy,
                        "seconds": rec.seconds})
            print(f"{name}: epoch {rec.epoch}/{args.epochs} val {rec.val_accuracy:.4f} "
                  f"train {rec.train_accuracy:.4f} ({rec.seconds:.1f} s)", flush=True)

        began = time.time()
        result = trainer.fit(module, seed=train_seed, callback=on_epoch)
        results["arms"][init] = {"val_before": start, "epochs": epochs,  # type: ignore[index]
                                 "last_val_accuracy": epochs[-1]["val_accuracy"] if epochs else None,
                                 "best_val_accuracy": result.best_metric, "seconds": time.time() - began}
        atomic_write(out / "final_init.json", json.dumps(results, indent=1))
    run.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
