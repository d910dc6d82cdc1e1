"""Where trials run: the executor named in the config, as a ``WorkerPool`` of N workers.

- ``thread`` (default with one worker): one background thread of the driver sharing its Trainer, so a
  one-worker search needs no process start and no data copy (PyTorch releases the GIL in its kernels);
- ``process``: N local worker processes (``pool.ProcessPool``), each building its Trainer once;
- ``ray``: N Ray actors on a local or remote cluster (``pool.RayPool``), with CPUs and GPUs per trial;
- with ``config.objective`` set, whatever the executor: ``ObjectivePool``, which scores each trial's
  architecture with the synthetic objective in the driver (microseconds, no data, no weights, no model).

The search state (strategy, run database, TensorBoard) never leaves the driver; a trial gets a ``TrialSpec``
(the parent's model as bytes) and returns a ``TrialOutcome`` (the trained model as bytes): no worker is given
a path to the run directory. A worker lost mid-trial surfaces as ``pool.WorkerLost`` on the trial's future.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor

from morphnas.engine.config import SearchConfig
from morphnas.engine.pool import ProcessPool, ProgressFn, RayPool, WorkerPool
from morphnas.engine.setup import make_run_objective, make_trainer
from morphnas.engine.trial import TrialOutcome, TrialSpec, run_trial
from morphnas.graph.graph import Graph
from morphnas.searcher.objectives import Objective
from morphnas.status import TrialStatus
from morphnas.trainer.datasets import ImageDataset
from morphnas.trainer.trainer import Trainer


class ThreadPool(WorkerPool):
    """One trial at a time in a background thread of the driver, on the driver's Trainer."""

    def __init__(self, trainer: Trainer, progress: ProgressFn | None = None) -> None:
        self.trainer = trainer
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="morphnas-trial")
        self._stop = threading.Event()  # a thread cannot be killed: the trial's trainer reads this after each step

    @property
    def n_workers(self) -> int:
        return 1

    def submit(self, spec: TrialSpec) -> Future[TrialOutcome]:
        return self._pool.submit(run_trial, spec, self.trainer, self.progress, "thread", stop=self._stop.is_set)

    def cut(self) -> None:
        """Stop the running trial after its current optimizer step (its outcome is ``pending``: not kept)."""
        self._stop.set()

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def workers(self) -> dict[str, bool]:
        return {"thread": True}

    def wait_ready(self, timeout: float | None = None) -> None:
        return


class ObjectivePool(WorkerPool):
    """Trials scored by a synthetic objective, in the driver, at submission (the future is already done).

    The outcome's metric is the objective's noisy value (what the strategy observes), drawn from a noise stream
    keyed by the trial id so a resumed search observes the same values; the noise-free value goes into
    ``extra["clean"]`` for the benchmark report. It trains nothing and returns no model (``model=None``,
    ``epochs=0``): a run on an objective has no weights, and the loop knows it (``Search.has_models``).
    """

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    @property
    def n_workers(self) -> int:
        return 1

    def submit(self, spec: TrialSpec) -> Future[TrialOutcome]:
        start = time.perf_counter()
        outcome = TrialOutcome(spec.trial_id, TrialStatus.FAILED, started_at=time.time(), worker="objective")
        try:
            graph = Graph.from_dict(spec.architecture)
            outcome.n_params = graph.n_params()
            outcome.metric = self.objective.noisy(graph, spec.trial_id)
            outcome.extra = {"clean": float(self.objective.clean(graph))}
            outcome.status = TrialStatus.OK
        except Exception:
            outcome.reason = traceback.format_exc()
        outcome.seconds = time.perf_counter() - start
        future: Future[TrialOutcome] = Future()
        future.set_result(outcome)
        return future

    def shutdown(self, wait: bool = True) -> None:
        return

    def workers(self) -> dict[str, bool]:
        return {"objective": True}


def threads_per_worker(config: SearchConfig) -> int:
    """Intra-op threads of each worker: as configured, else this machine's cores shared among the workers."""
    if config.threads_per_trial is not None:
        return config.threads_per_trial
    if config.executor == "thread":
        return 0  # leave PyTorch's default: the single trial has the machine
    return max(1, (os.cpu_count() or 1) // config.workers)


def make_pool(config: SearchConfig, data: ImageDataset | None, progress: ProgressFn | None = None) -> WorkerPool:
    """The configured executor with ``config.workers`` workers, each with its own Trainer on ``data``; for a
    search on a synthetic objective, an ``ObjectivePool``."""
    if config.objective is not None:
        return ObjectivePool(make_run_objective(config))
    if data is None:
        raise ValueError("a search that trains needs its dataset")
    config = config.with_threads(threads_per_worker(config))
    if config.executor == "thread":
        return ThreadPool(make_trainer(config, data), _locked(progress))
    factory = functools.partial(make_trainer, config, data)  # pickled once per worker, with the data
    if config.executor == "process":
        return ProcessPool(config.workers, factory, run_trial, progress=progress)
    return RayPool(config.workers, factory, run_trial, address=config.ray_address,
                   num_cpus_per_trial=config.cpus_per_trial, num_gpus_per_trial=config.gpus_per_trial,
                   progress=progress)


def _locked(progress: ProgressFn | None) -> ProgressFn | None:
    if progress is None:
        return None
    lock = threading.Lock()

    def call(trial_id: int, record: object) -> None:
        with lock:
            progress(trial_id, record)

    call.on_batch = getattr(progress, "on_batch", None)  # type: ignore[attr-defined]  # per-batch hook, unlocked
    return call
