"""One trial, start to finish: build the child (replay ops on the parent's trained weights, or initialise
from scratch), measure where it starts, train it, save it into the run directory, report the outcome.

Only small, picklable things cross into a trial (ids, ops as dicts, an architecture as JSON), and the heavy
ones (weights) travel through the run directory, so the same function runs in a thread of the driver or in
a worker process.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import Limits, replay
from morphnas.storage.rundir import RunDir
from morphnas.storage.tensorboard import TrialLogger
from morphnas.trainer.trainer import EpochRecord, Trainer


@dataclass(frozen=True)
class TrialSpec:
    """What to train: from trial ``parent`` by ``ops`` (with its weights if ``inherit``), or ``architecture``
    (JSON) from scratch; the seeds make the trial reproducible."""

    trial_id: int
    run_dir: str
    parent: int | None
    ops: tuple[dict[str, Any], ...]
    architecture: dict[str, Any]
    inherit: bool
    init_seed: int
    train_seed: int
    limits: dict[str, int] = field(default_factory=dict)
    description: str = ""


@dataclass
class TrialOutcome:
    """What a trial produced (the trained model itself is in ``models/<id>/`` when status is ok)."""

    trial_id: int
    status: str
    reason: str = ""
    metric: float | None = None
    loss: float | None = None
    initial_metric: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    stopped_by: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    seconds: float = 0.0
    n_params: int = 0
    n_layers: int = 0
    depth: int = 0
    width: int = 0
    skips: int = 0
    arch_hash: str = ""
    summary: str = ""


ProgressFn = Callable[[int, EpochRecord], None]


def build_child(spec: TrialSpec, run: RunDir) -> Graph:
    """The weighted graph a trial trains: the parent's trained weights morphed by ``ops``, or a fresh init."""
    if spec.parent is not None and spec.inherit:
        child = replay(run.load_model(spec.parent), spec.ops, limits=Limits(**spec.limits) if spec.limits else None)
        expected = Graph.from_dict(spec.architecture).canonical_hash()
        if child.canonical_hash() != expected:
            raise RuntimeError(f"replaying {len(spec.ops)} ops on trial {spec.parent} did not give the suggested "
                               "architecture")
        return child
    return Graph.from_dict(spec.architecture).init_weights(spec.init_seed)


def run_trial(spec: TrialSpec, trainer: Trainer, progress: ProgressFn | None = None,
              log_tensorboard: bool = True) -> TrialOutcome:
    """Run one trial; every failure (bad replay, NaN, out of memory...) becomes a failed outcome, never raises."""
    start = time.perf_counter()
    outcome = TrialOutcome(spec.trial_id, "failed")
    run = RunDir.open(spec.run_dir)
    logger = TrialLogger(run.tb_dir, spec.trial_id) if log_tensorboard else None
    try:
        graph = build_child(spec, run)
        outcome.n_params, outcome.n_layers = graph.n_params(), graph.n_layers()
        outcome.depth, outcome.width, outcome.skips = graph.depth(), graph.max_width(), graph.n_skips()
        outcome.arch_hash, outcome.summary = graph.canonical_hash(), graph.summary()
        module = graph.to_module()
        if spec.parent is not None and spec.inherit:
            loss, acc = trainer.validate(module)  # where the child starts: its parent's accuracy, morphed
            outcome.initial_metric = acc if math.isfinite(loss) else None

        def on_epoch(record: EpochRecord, _module: object) -> None:
            if logger is not None:
                logger.epoch(record.epoch, record.train_loss, record.train_accuracy,
                             record.val_loss, record.val_accuracy)
            if progress is not None:
                progress(spec.trial_id, record)

        result = trainer.fit(module, seed=spec.train_seed, callback=on_epoch)
        outcome.status = "ok" if result.ok else "failed"
        outcome.reason = result.reason
        outcome.metric, outcome.loss, outcome.best_epoch = result.best_metric, result.best_loss, result.best_epoch
        outcome.epochs, outcome.stopped_by = result.epochs_run, result.stopped_by
        outcome.history = [dataclasses.asdict(r) for r in result.history]
        outcome.train_seconds = result.total_seconds
        if result.ok:
            run.save_model(spec.trial_id, graph.with_weights_from(module))
    except Exception:
        outcome.status, outcome.reason = "failed", traceback.format_exc()
    finally:
        if logger is not None:
            logger.close()
        run.close()
    outcome.seconds = time.perf_counter() - start
    return outcome
