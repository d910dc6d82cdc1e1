"""Worker pools that run N trials at once: local spawned processes (``ProcessPool``) or Ray actors (``RayPool``).

A pool runs an injected trial function ``trial_fn(spec, trainer, progress) -> outcome`` on one of its workers;
each worker builds its ``Trainer`` once with ``make_trainer()`` (so a dataset is loaded once per worker, not per
trial) and runs one trial at a time. The driver submits specs and gets futures; nothing but the spec, the
outcome and progress records crosses between them (no filesystem path), so workers need no shared disk.

Decisions:

- **N single workers, not one ``ProcessPoolExecutor``.** A ``ProcessPoolExecutor`` whose worker is killed
  breaks as a whole (every pending future fails). Here each slot is its own process with its own pipe (or its
  own Ray actor), so losing one costs only the trial it was running; the slot gets a fresh worker and the
  others keep going.
- **Two kinds of failure.** Whatever ``trial_fn`` returns is the future's result (morphnas's ``run_trial``
  turns failures into outcomes); if ``trial_fn`` raises, the future raises that same exception (with the
  remote traceback as its ``__cause__``). If the worker itself is lost mid-trial, the future raises
  ``WorkerLost``, which the driver may retry once elsewhere.
- **How loss is detected.** Processes: the process's sentinel becomes ready or its pipe reaches EOF before the
  trial's result arrived (SIGKILL, OOM killer, segfault). Ray: ``ray.get`` of the trial raises a
  ``RayActorError`` (``ActorDiedError``...), ``WorkerCrashedError``, ``NodeDiedError`` or ``ObjectLostError``.
- **Progress.** A worker's ``progress(trial_id, record)`` travels back to the driver (over the worker's pipe,
  or through a small Ray actor the driver polls) and the driver's callback is called from the pool's thread.
  Every progress record of a trial reaches the callback before its future resolves.
- **Ctrl-C.** A terminal sends SIGINT to the whole process group, workers included. Workers must not die of
  it on their own: the driver decides (wait for the running trials, or cut them). So a worker process starts
  with SIGINT blocked (the driver blocks it around ``Process.start``; the mask is inherited) and ignores it
  before unblocking, with no window in which a Ctrl-C during its start-up could kill it. Ray actors ignore it
  too, where Ray lets them (their main thread).
- **Worker ids.** An outcome that is a dataclass with a ``worker`` field (or a dict) gets the id of the worker
  that ran it ("process-1", "ray-2"...); a replacement worker gets a new id.

Ray is optional (``pip install 'morphnas[ray]'``) and imported only when a ``RayPool`` is made.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, Any], None]
TrialFn = Callable[[Any, Any, "ProgressFn | None"], Any]
MakeTrainer = Callable[[], Any]

# a slot whose worker dies this many times in a row before it is ready marks the pool broken (no endless respawn)
MAX_STARTUP_DEATHS = 3


class WorkerLost(Exception):
    """The worker running trial ``trial_id`` died (killed, out of memory, node lost); the trial did not finish."""

    def __init__(self, trial_id: int | None, worker: str, detail: str) -> None:
        super().__init__(trial_id, worker, detail)
        self.trial_id, self.worker, self.detail = trial_id, worker, detail

    def __str__(self) -> str:
        return f"trial {self.trial_id}: worker {self.worker} lost ({self.detail})"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as that exception's ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class WorkerPool(ABC):
    """Runs trials on ``n_workers`` workers at once; ``submit`` queues a spec and returns a future of its outcome."""

    @property
    @abstractmethod
    def n_workers(self) -> int:
        """How many trials can run at once."""

    @abstractmethod
    def submit(self, spec: Any) -> Future[Any]:
        """Queue ``spec`` (anything with a ``trial_id``); the future raises ``WorkerLost`` if its worker dies."""

    @abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers: after the queued and running trials if ``wait``, else at once (running ones lost)."""

    @abstractmethod
    def workers(self) -> dict[str, bool]:
        """The live workers by id, each with whether it has built its trainer yet."""

    def cut(self) -> None:
        """Ask the running trials to stop now (the driver then keeps no result of theirs). A pool whose trials
        can be stopped from outside does so here (the thread executor's stop flag); process and Ray workers are
        stopped by ``shutdown(wait=False)``, which kills them, so by default this does nothing."""
        return

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every live worker has built its trainer (``TimeoutError`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not all(self.workers().values()):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout} s: {self.workers()}")
            time.sleep(0.05)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=exc[0] is None)


def stamp_worker(outcome: Any, worker: str) -> Any:
    """``outcome`` with its ``worker`` set, if it is a dataclass with that field or a dict; else unchanged."""
    if dataclasses.is_dataclass(outcome) and not isinstance(outcome, type):
        if any(f.name == "worker" for f in dataclasses.fields(outcome)):
            return dataclasses.replace(outcome, worker=worker)
    elif isinstance(outcome, dict):
        return {**outcome, "worker": worker}
    return outcome


@dataclass
class _Job:
    spec: Any
    future: Future[Any]

    @property
    def trial_id(self) -> int | None:
        return getattr(self.spec, "trial_id", None)


@dataclass
class _Slot:
    name: str
    handle: Any  # a process (with its pipe in ``conn``) or a Ray actor
    conn: Connection | None = None
    job: _Job | None = None
    ref: Any = None  # the Ray object ref of the running trial
    ready: bool = False  # whether the worker got as far as building its trainer
    startup_deaths: int = 0  # how many workers of this slot in a row died before they were ready
    probe: Any = None  # Ray: the ref of a call that returns once the actor is built


class _QueuedPool(WorkerPool):
    """The queue, futures and shutdown shared by both backends; a subclass's ``_serve`` thread runs the slots."""

    prefix = "worker"

    def __init__(self, n: int, progress: ProgressFn | None) -> None:
        if n < 1:
            raise ValueError(f"a pool needs at least one worker, not {n}")
        self._n = n
        self._progress = progress
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._backlog: list[_Job] = []  # jobs taken from the queue by the pool thread, not yet on a worker
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._wait_on_close = True
        self._broken: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def n_workers(self) -> int:
        return self._n

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._serve_safely, name=f"morphnas-{self.prefix}-pool", daemon=True)
        self._thread.start()

    def _next_name(self) -> str:
        return f"{self.prefix}-{next(self._ids)}"

    def submit(self, spec: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("submit after shutdown")
            if self._broken is not None:
                future.set_exception(WorkerLost(getattr(spec, "trial_id", None), self.prefix, self._broken))
                return future
            self._queue.put(_Job(spec, future))
        self._wake()
        return future

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing, self._wait_on_close = True, wait
        self._wake()
        if self._thread is not None:
            self._thread.join()

    # -------------------------------------------------------------- for the pool thread
    def _take_job(self) -> _Job | None:
        """The next queued job that was not cancelled, marked running; None if there is none."""
        while True:
            if self._backlog:
                job = self._backlog.pop(0)
            else:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    return None
            if job.future.set_running_or_notify_cancel():
                return job

    def _has_queued(self) -> bool:
        if not self._backlog:
            try:
                self._backlog.append(self._queue.get_nowait())
            except queue.Empty:
                return False
        return True

    def _fail_queued(self, make_error: Callable[[_Job], BaseException]) -> None:
        while (job := self._take_job()) is not None:
            job.future.set_exception(make_error(job))

    def _report(self, trial_id: int, record: Any) -> None:
        if self._progress is None:
            return
        try:
            self._progress(trial_id, record)
        except Exception:  # a broken progress printer must not stop the pool
            log.exception("progress callback failed for trial %s", trial_id)

    def _settle(self, slot: _Slot, kind: str, payload: Any, tb: str = "") -> None:
        """Resolve the slot's running job: ``kind`` is "result", "error" or "lost"."""
        job, slot.job, slot.ref = slot.job, None, None
        if job is None:
            return
        if kind == "result":
            job.future.set_result(stamp_worker(payload, slot.name))
            return
        if kind == "error" and tb:
            payload.__cause__ = RemoteTraceback(tb)
        if kind == "lost":
            payload = WorkerLost(job.trial_id, slot.name, payload)
        job.future.set_exception(payload)

    def _note_death(self, slot: _Slot) -> int | None:
        """Count a worker's death: the slot's start-up deaths in a row, or None if that marks the pool broken."""
        deaths = 0 if slot.ready else slot.startup_deaths + 1
        if deaths >= MAX_STARTUP_DEATHS:
            with self._lock:
                self._broken = f"workers keep dying before they are ready ({deaths} times in a row)"
            log.error("%s pool: %s", self.prefix, self._broken)
            return None
        return deaths

    def _serve_safely(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # a bug in the pool thread: fail every future rather than hang the driver
            log.exception("%s pool thread failed", self.prefix)
            with self._lock:
                self._broken = f"pool thread failed: {exc!r}"
            self._fail_all(f"pool thread failed: {exc!r}")

    def _fail_all(self, detail: str) -> None:
        for slot in self._slots():
            if slot.job is not None:
                self._settle(slot, "lost", detail)
        self._fail_queued(lambda job: WorkerLost(job.trial_id, self.prefix, detail))

    def _done(self) -> bool:
        """Whether the pool thread may stop: closing, and (if waiting) nothing queued or running."""
        if not self._closing:
            return False
        if not self._wait_on_close or self._broken is not None:
            self._fail_all("pool shut down")
            return True
        return not self._has_queued() and all(slot.job is None for slot in self._slots())

    @abstractmethod
    def _slots(self) -> list[_Slot]:
        """The current slots."""

    @abstractmethod
    def _serve(self) -> None:
        """The pool thread: hand out jobs, collect results and progress, replace lost workers, then stop them."""

    @abstractmethod
    def _wake(self) -> None:
        """Wake the pool thread (a job was queued or shutdown asked)."""


# ====================================================================== local processes
def _ignore_sigint() -> None:
    """Ignore SIGINT in this (worker) process, then unblock it (the driver started the worker with it blocked)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (a Ray actor run in a thread): leave it as it is
        return
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start_without_sigint(process: Any) -> None:
    """Start ``process`` with SIGINT blocked (inherited by the child), so that a Ctrl-C during its start-up,
    before it can ignore SIGINT, does not kill it."""
    if not hasattr(signal, "pthread_sigmask"):
        process.start()
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _process_worker(conn: Connection, make_trainer: MakeTrainer, trial_fn: TrialFn, forward: bool) -> None:
    """A worker process: build the trainer, then run the specs that arrive on ``conn`` until told to stop."""
    _ignore_sigint()
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            conn.send(message)

    def send_error(exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc))
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
        send(("error", exc, tb))

    trainer, init_error = None, None
    try:
        trainer = make_trainer()
    except Exception as exc:  # every trial on this worker then raises it (respawning would fail the same way)
        init_error = exc
    send(("ready",))
    progress = (lambda trial_id, record: send(("progress", trial_id, record))) if forward else None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        try:
            if init_error is not None:
                raise init_error
            outcome = trial_fn(message[1], trainer, progress)
        except Exception as exc:
            send_error(exc)
            continue
        try:
            send(("result", outcome))
        except Exception as exc:  # the outcome could not be pickled
            send_error(exc)


class ProcessPool(_QueuedPool):
    """N local worker processes (spawned), each building its trainer once with ``make_trainer()``.

    ``make_trainer``, ``trial_fn``, the specs and outcomes must be picklable (module-level functions or
    ``functools.partial``); ``progress`` stays in the driver and is called from the pool's thread.
    """

    prefix = "process"

    def __init__(self, n: int, make_trainer: MakeTrainer, trial_fn: TrialFn,
                 progress: ProgressFn | None = None) -> None:
        super().__init__(n, progress)
        self._context = multiprocessing.get_context("spawn")
        self._make_trainer, self._trial_fn = make_trainer, trial_fn
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._workers = [self._spawn() for _ in range(n)]
        self._start_thread()

    def _slots(self) -> list[_Slot]:
        return self._workers

    def workers(self) -> dict[str, bool]:
        return {slot.name: slot.ready for slot in list(self._workers) if slot.conn is not None}

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:  # the pool thread has closed the pipe: it is gone already
            pass

    def _spawn(self, startup_deaths: int = 0) -> _Slot:
        driver_end, worker_end = self._context.Pipe(duplex=True)
        name = self._next_name()
        process = self._context.Process(
            target=_process_worker, name=f"morphnas-{name}", daemon=True,
            args=(worker_end, self._make_trainer, self._trial_fn, self._progress is not None))
        _start_without_sigint(process)
        worker_end.close()
        return _Slot(name, process, conn=driver_end, startup_deaths=startup_deaths)

    def _dispatch(self) -> None:
        for slot in self._workers:
            if slot.job is None and slot.conn is not None and slot.ready:  # a busy worker would block the send
                job = self._take_job()
                if job is None:
                    return
                slot.job = job
                try:
                    slot.conn.send(("run", job.spec))
                except (OSError, EOFError):  # the worker is already dead: the sentinel reports it next
                    pass
                except Exception as exc:  # the spec cannot be pickled
                    self._settle(slot, "error", exc)

    def _read(self, slot: _Slot) -> bool:
        """Handle every message waiting on the slot's pipe; False if the pipe is closed (the worker is gone)."""
        assert slot.conn is not None
        try:
            while slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "progress":
                    self._report(message[1], message[2])
                elif message[0] == "ready":
                    slot.ready = True
                elif message[0] == "result":
                    self._settle(slot, "result", message[1])
                elif message[0] == "error":
                    self._settle(slot, "error", message[1], message[2])
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, index: int) -> None:
        slot = self._workers[index]
        process = slot.handle
        process.join(timeout=1)
        if process.is_alive():  # its pipe broke but it lives on: it is no use any more
            process.kill()
            process.join()
        detail = f"process {process.pid} exited with code {process.exitcode}"
        self._settle(slot, "lost", detail)
        if slot.conn is not None:
            slot.conn.close()
        deaths = None if self._closing else self._note_death(slot)
        if deaths is None:
            self._workers[index] = dataclasses.replace(slot, conn=None)
            return
        log.warning("worker %s lost (%s); starting a new one", slot.name, detail)
        self._workers[index] = self._spawn(deaths)

    def _serve(self) -> None:
        try:
            while True:
                self._dispatch()
                if self._done():
                    break
                live = [s for s in self._workers if s.conn is not None]
                ready = wait([self._wake_r, *(s.conn for s in live), *(s.handle.sentinel for s in live)])
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for index, slot in enumerate(self._workers):
                    if slot.conn is None:
                        continue
                    if slot.conn in ready or slot.handle.sentinel in ready:
                        open_ = self._read(slot)
                        if not open_ or not slot.handle.is_alive():
                            self._replace(index)
                if self._broken is not None and all(s.conn is None for s in self._workers):
                    self._fail_queued(lambda job: WorkerLost(job.trial_id, self.prefix, self._broken or ""))
        finally:
            self._stop_workers()

    def _stop_workers(self) -> None:
        for slot in self._workers:
            if slot.conn is not None:
                try:
                    slot.conn.send(("stop",))
                except (OSError, EOFError):
                    pass
        for slot in self._workers:
            process = slot.handle
            process.join(timeout=5 if self._wait_on_close else 0)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            if slot.conn is not None:
                slot.conn.close()
        self._wake_r.close()
        self._wake_w.close()


# ====================================================================== Ray
def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayPool needs Ray: pip install 'morphnas[ray]'") from exc
    return ray


class _TrialActor:
    """A Ray worker: builds its trainer once, then runs one trial at a time (wrapped by ``ray.remote``)."""

    def __init__(self, make_trainer: MakeTrainer, trial_fn: TrialFn, box: Any) -> None:
        _ignore_sigint()  # the driver decides what a Ctrl-C does (see the module docstring)
        self._trial_fn, self._box = trial_fn, box
        self._trainer, self._init_error = None, None
        try:
            self._trainer = make_trainer()
        except Exception as exc:  # every trial on this actor then raises it (a new actor would fail the same way)
            self._init_error = exc

    def run(self, spec: Any) -> Any:
        """Run ``spec``; its progress records are in the box before this returns."""
        import ray

        if self._init_error is not None:
            raise self._init_error
        sent: list[Any] = []
        progress = None
        if self._box is not None:
            def progress(trial_id: int, record: Any) -> None:
                sent.append(self._box.put.remote(trial_id, record))
        try:
            return self._trial_fn(spec, self._trainer, progress)
        finally:
            if sent:
                ray.wait(sent, num_returns=len(sent), timeout=30)

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()


class _ProgressBox:
    """Progress records from the actors, collected until the driver's pool thread takes them."""

    def __init__(self) -> None:
        self._records: list[tuple[int, Any]] = []

    def put(self, trial_id: int, record: Any) -> None:
        self._records.append((trial_id, record))

    def take(self) -> list[tuple[int, Any]]:
        records, self._records = self._records, []
        return records


class RayPool(_QueuedPool):
    """N Ray actors on a local or remote cluster, each building its trainer once.

    ``address`` (else ``$RAY_ADDRESS``) names a cluster; without one a local cluster starts, with no dashboard
    (Ray binds it to the machine's address, never loopback alone, and guards it with its token authentication).
    Ray is initialised only if it is not already (and then shut down with the pool). ``num_gpus_per_trial``
    may be fractional; by default a trial gets one GPU if the cluster has any, else none.
    """

    prefix = "ray"
    poll_seconds = 0.2

    def __init__(self, n: int, make_trainer: MakeTrainer, trial_fn: TrialFn, address: str | None = None,
                 num_cpus_per_trial: float = 1, num_gpus_per_trial: float | None = None,
                 progress: ProgressFn | None = None) -> None:
        super().__init__(n, progress)
        ray = self._ray = _import_ray()
        self._owns_ray = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            ray.init(address=address, include_dashboard=False)
            self._owns_ray = True
        if num_gpus_per_trial is None:
            num_gpus_per_trial = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        self.num_cpus_per_trial, self.num_gpus_per_trial = num_cpus_per_trial, num_gpus_per_trial
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                             ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
        self._make_trainer, self._trial_fn = make_trainer, trial_fn
        self._box = ray.remote(_ProgressBox).options(num_cpus=0).remote() if progress is not None else None
        self._actor_class = ray.remote(_TrialActor).options(
            num_cpus=num_cpus_per_trial, num_gpus=num_gpus_per_trial, max_restarts=0, max_task_retries=0)
        self._event = threading.Event()
        self._actors = [self._start_actor() for _ in range(n)]
        self._start_thread()

    def _slots(self) -> list[_Slot]:
        return self._actors

    def workers(self) -> dict[str, bool]:
        return {slot.name: slot.ready for slot in list(self._actors) if slot.handle is not None}

    def _check_built(self) -> None:
        """Mark the actors whose trainer is built (their probe call has returned)."""
        probes = {slot.probe: slot for slot in self._actors if not slot.ready and slot.handle is not None}
        if probes:
            built, _ = self._ray.wait(list(probes), num_returns=len(probes), timeout=0)
            for ref in built:
                probes[ref].ready = True

    def _wake(self) -> None:
        self._event.set()

    def _start_actor(self, startup_deaths: int = 0) -> _Slot:
        name = self._next_name()
        actor = self._actor_class.remote(self._make_trainer, self._trial_fn, self._box)
        return _Slot(name, actor, startup_deaths=startup_deaths, probe=actor.pid.remote())

    def _dispatch(self) -> None:
        for slot in self._actors:
            if slot.job is None and slot.handle is not None:
                job = self._take_job()
                if job is None:
                    return
                slot.job, slot.ref = job, slot.handle.run.remote(job.spec)

    def _pump_progress(self) -> None:
        if self._box is None:
            return
        try:
            records = self._ray.get(self._box.take.remote(), timeout=30)
        except Exception:
            log.exception("could not collect progress from the Ray workers")
            return
        for trial_id, record in records:
            self._report(trial_id, record)

    def _collect(self, index: int) -> None:
        """Resolve the finished trial of slot ``index``; replace the actor if it was lost."""
        ray, slot = self._ray, self._actors[index]
        try:
            outcome = ray.get(slot.ref)
        except self._lost_errors as exc:
            self._settle(slot, "lost", f"{type(exc).__name__}: {exc}")
            self._replace(index)
            return
        except ray.exceptions.RayTaskError as exc:  # trial_fn raised: pass on its own exception
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            self._settle(slot, "error", cause, str(exc))
            return
        except Exception as exc:
            self._settle(slot, "error", exc)
            return
        self._settle(slot, "result", outcome)

    def _replace(self, index: int) -> None:
        slot = self._actors[index]
        try:
            self._ray.kill(slot.handle, no_restart=True)
        except Exception:  # already gone
            pass
        deaths = None if self._closing else self._note_death(slot)
        if deaths is None:
            self._actors[index] = dataclasses.replace(slot, handle=None)
            return
        log.warning("worker %s lost; starting a new actor", slot.name)
        self._actors[index] = self._start_actor(deaths)

    def _serve(self) -> None:
        ray = self._ray
        try:
            while True:
                self._dispatch()
                if self._done():
                    break
                running = {slot.ref: i for i, slot in enumerate(self._actors) if slot.ref is not None}
                if running:
                    finished, _ = ray.wait(list(running), num_returns=len(running), timeout=self.poll_seconds)
                else:
                    self._event.wait(self.poll_seconds)
                    finished = []
                self._event.clear()
                self._check_built()
                if running:
                    self._pump_progress()  # before the outcomes, so a trial's progress precedes its result
                for ref in finished:
                    self._collect(running[ref])
                if self._broken is not None and all(s.handle is None for s in self._actors):
                    self._fail_queued(lambda job: WorkerLost(job.trial_id, self.prefix, self._broken or ""))
        finally:
            self._stop_actors()

    def _stop_actors(self) -> None:
        ray = self._ray
        for handle in [slot.handle for slot in self._actors if slot.handle is not None] + [self._box]:
            if handle is not None:
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:
                    pass
        if self._owns_ray:
            ray.shutdown()
