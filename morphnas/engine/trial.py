"""One trial, start to finish, as a pure function: build the child (replay ops on the parent's trained
weights, or initialise from scratch), measure where it starts, train it, and return the outcome with the
trained model as bytes.

A trial never touches the run directory: its ``TrialSpec`` carries the parent's model as bytes and its
``TrialOutcome`` carries the trained child back, so the same function runs in a thread of the driver, a local
worker process or a Ray actor on another machine, with no shared filesystem. Only the driver writes the run
directory (models, trial rows, TensorBoard).

Every outcome also says what its candidate cost, in ``extra`` (stored as is in the trial row, where
``TrialRecord.flops`` and ``TrialRecord.train_images_per_second`` read them): ``macs`` and ``flops`` per image of
one forward pass, computed from the architecture (``Graph.macs``; None for a layer kind that does not define its
cost), and, once an epoch has trained, the measured ``train_images_per_second`` (training only, compiling
excluded) and ``seconds_per_epoch`` (training and validation; for a trial cut inside its first epoch, from the
validated partial epoch with its training time scaled to a whole epoch). FLOPs are known before training, for
any candidate; throughput is what this machine actually did, with its memory-bound layers and its load.

A trial may be cut: ``TrialSpec.deadline`` (absolute wall-clock, ``time.time()``, so it means the same in a
worker process or on a Ray node with a synchronised clock) reaches into the trainer, which stops after the
optimizer step that passes it; the outcome is then ``cut``, with the best finished epoch's weights (or the
partial epoch's, validated, if none finished) and its fractional epochs in ``extra["epochs_trained"]``. A
``stop()`` flag (the driver's second Ctrl-C, thread executor) ends the trial the same way, but its outcome is
``pending``: it was not the trial's doing, so the driver keeps no result and ``resume`` runs it again.

Multi-fidelity (``engine/fidelity.py``): ``TrialSpec.epochs`` is how long this trial trains (its rung's epochs,
or the extra epochs of a promotion; None: the trainer's ``max_epochs``), and a promotion (``continues`` set) is
a trial with no ops whose parent is the trial it continues: it starts from that trial's trained weights, with
a fresh learning-rate schedule over its extra epochs (a warm restart, as every inheriting child gets), and its
starting point counts as epoch 0 (``Trainer.fit(start=...)``), so a promotion never ends below its source.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import Limits, replay
from morphnas.status import TrialStatus
from morphnas.trainer.trainer import EpochRecord, Trainer, TrainResult


@dataclass(frozen=True)
class TrialSpec:
    """What to train: ``ops`` replayed on the parent model (``parent_model``, bytes from ``Graph.to_bytes``) if
    ``inherit``, else ``architecture`` (JSON) from scratch; the seeds make the trial reproducible."""

    trial_id: int
    parent: int | None
    ops: tuple[dict[str, Any], ...]
    architecture: dict[str, Any]
    inherit: bool
    init_seed: int
    train_seed: int
    parent_model: bytes | None = None
    limits: dict[str, int] = field(default_factory=dict)
    description: str = ""
    deadline: float | None = None  # absolute wall-clock (time.time()) at which training is cut
    epochs: int | None = None  # epochs this trial trains (None: the trainer's max_epochs)
    continues: int | None = None  # a promotion: the trial (also ``parent``) whose trained model it trains further
    rung: int = 0  # multi-fidelity rung (0: first, or the only one)


@dataclass
class TrialOutcome:
    """What a trial produced: its status and metrics and, when it has a metric, the trained model as bytes."""

    trial_id: int
    status: TrialStatus
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
    started_at: float = 0.0  # wall-clock (time.time()) on the worker
    n_params: int = 0
    model: bytes | None = None  # None for a trial that trains nothing (an objective's)
    worker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # further values kept in the trial row (objective: clean)

    def __post_init__(self) -> None:
        self.status = TrialStatus.parse(self.status)


ProgressFn = Callable[[int, EpochRecord], None]


def build_child(spec: TrialSpec) -> Graph:
    """The weighted graph a trial trains: the parent's trained weights morphed by ``ops``, or a fresh init."""
    if spec.parent is not None and spec.inherit:
        if spec.parent_model is None:
            raise ValueError(f"trial {spec.trial_id} inherits from trial {spec.parent} but carries no parent model")
        parent = Graph.from_bytes(spec.parent_model)
        child = replay(parent, spec.ops, limits=Limits(**spec.limits) if spec.limits else None)
        expected = Graph.from_dict(spec.architecture).canonical_hash()
        if child.canonical_hash() != expected:
            raise RuntimeError(f"replaying {len(spec.ops)} ops on trial {spec.parent} did not give the suggested "
                               "architecture")
        return child
    return Graph.from_dict(spec.architecture).init_weights(spec.init_seed)


def cost_extra(graph: Graph) -> dict[str, int | None]:
    """``macs`` and ``flops`` per image of ``graph``'s forward pass, None where a layer kind cannot say its cost."""
    macs = graph.known_macs()
    return {"macs": macs, "flops": None if macs is None else 2 * macs}


def seconds_per_epoch(result: TrainResult) -> float:
    """Seconds of one epoch, training and validation, over the finished epochs of ``result.history``.

    A cut run whose only record is a validated partial epoch (``fraction`` < 1) has its training time, less the
    one-off compile, scaled to a whole epoch: unscaled, a candidate cut early would look many times cheaper."""
    full = [r for r in result.history if r.fraction >= 1.0]
    if full:
        return sum(r.seconds for r in full) / len(full)
    r = result.history[-1]
    train = (r.train_seconds - result.compile_seconds) / r.fraction + result.compile_seconds
    return train + (r.seconds - r.train_seconds)


def run_trial(spec: TrialSpec, trainer: Trainer, progress: ProgressFn | None = None,
              worker: str = "", stop: Callable[[], bool] | None = None) -> TrialOutcome:
    """Run one trial; every failure (bad replay, NaN, out of memory...) becomes a failed outcome, never raises.

    Training is cut at ``spec.deadline`` (status ``cut``) or when ``stop()`` turns True (status ``pending``:
    the driver discards it and the trial re-runs on resume)."""
    start = time.perf_counter()
    outcome = TrialOutcome(spec.trial_id, TrialStatus.FAILED, started_at=time.time(), worker=worker)
    try:
        graph = build_child(spec)
        outcome.n_params = graph.n_params()
        outcome.extra.update(cost_extra(graph))
        module = graph.to_module()
        begin = None  # a promotion's own start: (validation loss, accuracy)
        if spec.parent is not None and spec.inherit:
            loss, acc = trainer.validate(module)  # where the child starts: its parent's accuracy, morphed
            outcome.initial_metric = acc if math.isfinite(loss) else None
            if spec.continues is not None and math.isfinite(loss):
                begin = (loss, acc)  # a promotion keeps its start unless an epoch beats it

        def on_epoch(record: EpochRecord, _module: object) -> None:
            if progress is not None:
                progress(spec.trial_id, record)

        on_batch = getattr(progress, "on_batch", None)  # within-epoch progress: thread executor only
        result = trainer.fit(module, seed=spec.train_seed, callback=on_epoch,
                             on_batch=functools.partial(on_batch, spec.trial_id) if on_batch else None,
                             deadline=spec.deadline, stop=stop, epochs=spec.epochs, start=begin)
        outcome.status = _status(result.status, result.stopped_by)
        outcome.reason = result.reason
        outcome.metric, outcome.loss, outcome.best_epoch = result.best_metric, result.best_loss, result.best_epoch
        outcome.epochs, outcome.stopped_by = result.epochs_run, result.stopped_by
        outcome.history = [dataclasses.asdict(r) for r in result.history]
        outcome.train_seconds = result.total_seconds
        if result.history:
            outcome.extra["train_images_per_second"] = result.train_images_per_second
            outcome.extra["seconds_per_epoch"] = seconds_per_epoch(result)
        if result.compile_seconds or result.compile_error:
            outcome.extra["compile_seconds"] = result.compile_seconds
            outcome.extra["compile_error"] = result.compile_error
        outcome.extra["epochs_trained"] = round(result.epochs_trained, 4)
        outcome.extra["precision"] = result.precision  # its speed and accuracy depend on it (bf16 on AMX CPUs)
        if outcome.status.has_metric:  # a trial cut at the deadline keeps its model (its best epoch's weights)
            outcome.model = graph.with_weights_from(module).to_bytes()
    except Exception:
        outcome.status, outcome.reason = TrialStatus.FAILED, traceback.format_exc()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _status(status: str, stopped_by: str) -> TrialStatus:
    """The trial status of a ``TrainResult``: cut at the deadline is ``cut``; stopped by the driver, ``pending``."""
    if status == "ok":
        return TrialStatus.OK
    if status == "cut":
        return TrialStatus.CUT if stopped_by == "deadline" else TrialStatus.PENDING
    return TrialStatus.FAILED
