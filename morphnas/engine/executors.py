"""Where trials run: in a background thread of the driver, or in a local worker process.

Both run ``run_trial`` one trial at a time while the driver chooses the next architecture. The search state
(strategy, run database, TensorBoard trajectory) never leaves the driver; a trial gets only a ``TrialSpec``
(the parent's model as bytes) and returns a ``TrialOutcome`` (the trained model as bytes). A worker process
builds its own ``Trainer`` once, from the data it was handed when it started (once per worker, not per trial).
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

from morphnas.engine.trial import ProgressFn, TrialOutcome, TrialSpec, run_trial
from morphnas.trainer.trainer import Trainer


class Executor(ABC):
    """Runs trials away from the driver; ``submit`` returns at once with a future of the outcome."""

    @abstractmethod
    def submit(self, spec: TrialSpec) -> Future[TrialOutcome]:
        """Start ``spec``; the future's result is its outcome (failures included, never an exception)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Release the worker (waiting for a running trial)."""


class ThreadExecutor(Executor):
    """Trials in one background thread sharing the driver's Trainer (PyTorch releases the GIL in its ops)."""

    def __init__(self, trainer: Trainer, progress: ProgressFn | None = None) -> None:
        self.trainer = trainer
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="morphnas-trial")

    def submit(self, spec: TrialSpec) -> Future[TrialOutcome]:
        return self._pool.submit(run_trial, spec, self.trainer, self.progress, "thread")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


_WORKER_TRAINER: Trainer | None = None
_WORKER_PROGRESS: ProgressFn | None = None


def _init_worker(make_trainer: Callable[[], Trainer], progress: ProgressFn | None) -> None:
    global _WORKER_TRAINER, _WORKER_PROGRESS
    _WORKER_TRAINER = make_trainer()
    _WORKER_PROGRESS = progress


def _run_in_worker(spec: TrialSpec) -> TrialOutcome:
    assert _WORKER_TRAINER is not None, "worker not initialised"
    return run_trial(spec, _WORKER_TRAINER, _WORKER_PROGRESS, f"process-{multiprocessing.current_process().pid}")


class ProcessExecutor(Executor):
    """Trials in one local worker process (spawned), which builds its Trainer with ``make_trainer()``.

    ``make_trainer`` and ``progress`` must be picklable (module-level functions or ``functools.partial``).
    """

    def __init__(self, make_trainer: Callable[[], Trainer], progress: ProgressFn | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_worker,
                                         initargs=(make_trainer, progress))

    def submit(self, spec: TrialSpec) -> Future[TrialOutcome]:
        return self._pool.submit(_run_in_worker, spec)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
