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
excluded) and ``seconds_per_epoch`` (training and validation). FLOPs are known before training, for any
candidate; throughput is what this machine actually did, with its memory-bound layers and its load.
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
from morphnas.trainer.trainer import EpochRecord, Trainer


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
    try:
        macs: int | None = graph.macs()
    except NotImplementedError:
        macs = None
    return {"macs": macs, "flops": None if macs is None else 2 * macs}


def run_trial(spec: TrialSpec, trainer: Trainer, progress: ProgressFn | None = None,
              worker: str = "") -> TrialOutcome:
    """Run one trial; every failure (bad replay, NaN, out of memory...) becomes a failed outcome, never raises."""
    start = time.perf_counter()
    outcome = TrialOutcome(spec.trial_id, TrialStatus.FAILED, started_at=time.time(), worker=worker)
    try:
        graph = build_child(spec)
        outcome.n_params = graph.n_params()
        outcome.extra.update(cost_extra(graph))
        module = graph.to_module()
        if spec.parent is not None and spec.inherit:
            loss, acc = trainer.validate(module)  # where the child starts: its parent's accuracy, morphed
            outcome.initial_metric = acc if math.isfinite(loss) else None

        def on_epoch(record: EpochRecord, _module: object) -> None:
            if progress is not None:
                progress(spec.trial_id, record)

        on_batch = getattr(progress, "on_batch", None)  # within-epoch progress: thread executor only
        result = trainer.fit(module, seed=spec.train_seed, callback=on_epoch,
                             on_batch=functools.partial(on_batch, spec.trial_id) if on_batch else None)
        outcome.status = TrialStatus.OK if result.ok else TrialStatus.FAILED
        outcome.reason = result.reason
        outcome.metric, outcome.loss, outcome.best_epoch = result.best_metric, result.best_loss, result.best_epoch
        outcome.epochs, outcome.stopped_by = result.epochs_run, result.stopped_by
        outcome.history = [dataclasses.asdict(r) for r in result.history]
        outcome.train_seconds = result.total_seconds
        if result.history:
            outcome.extra["train_images_per_second"] = result.train_images_per_second
            outcome.extra["seconds_per_epoch"] = sum(r.seconds for r in result.history) / len(result.history)
        if result.compile_seconds or result.compile_error:
            outcome.extra["compile_seconds"] = result.compile_seconds
            outcome.extra["compile_error"] = result.compile_error
        if result.ok:
            outcome.model = graph.with_weights_from(module).to_bytes()
    except Exception:
        outcome.status, outcome.reason = TrialStatus.FAILED, traceback.format_exc()
    outcome.seconds = time.perf_counter() - start
    return outcome
