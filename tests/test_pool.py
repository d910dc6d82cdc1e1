"""Worker pools (local processes and Ray actors): trials run at once, a killed worker loses only its trial,
a trial function's exception comes back as itself, progress reaches the driver. Toy trials, no training."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from morphnas.engine.pool import ProcessPool, RayPool, RemoteTraceback, WorkerLost, WorkerPool


@dataclass(frozen=True)
class Spec:
    trial_id: int
    seconds: float = 1.0
    fail: bool = False


@dataclass
class Outcome:
    trial_id: int
    start: float
    end: float
    pid: int
    trainer_pid: int
    trainer_trials: int  # how many trials this worker's trainer has run, this one included
    worker: str = ""


def make_trainer() -> dict[str, int]:
    """A stand-in trainer: built once per worker, it counts the trials it runs."""
    return {"pid": os.getpid(), "trials": 0}


def toy_trial(spec: Spec, trainer: dict[str, int], progress: Any) -> Outcome:
    """Reports its pid, sleeps ``spec.seconds`` (or raises), reports again, returns its time interval."""
    start = time.time()
    trainer["trials"] += 1
    if progress is not None:
        progress(spec.trial_id, {"epoch": 0, "pid": os.getpid()})
    if spec.fail:
        raise ValueError(f"trial {spec.trial_id} failed on purpose")
    time.sleep(spec.seconds)
    if progress is not None:
        progress(spec.trial_id, {"epoch": 1, "pid": os.getpid()})
    return Outcome(spec.trial_id, start, time.time(), os.getpid(), trainer["pid"], trainer["trials"])


class Recorder:
    """The driver's progress callback: keeps every record it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[int, dict[str, Any]]] = []

    def __call__(self, trial_id: int, record: dict[str, Any]) -> None:
        with self.lock:
            self.records.append((trial_id, record))

    def of(self, trial_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [r for t, r in self.records if t == trial_id]

    def pid_of(self, trial_id: int, timeout: float = 30) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            records = self.of(trial_id)
            if records:
                return records[0]["pid"]
            time.sleep(0.05)
        raise AssertionError(f"no progress from trial {trial_id} in {timeout} s")


@pytest.fixture(scope="module", params=["process", "ray"])
def pool(request: pytest.FixtureRequest) -> Iterator[tuple[WorkerPool, Recorder]]:
    recorder = Recorder()
    if request.param == "process":
        with ProcessPool(2, make_trainer, toy_trial, progress=recorder) as process_pool:
            process_pool.wait_ready(timeout=120)  # so that both workers can take a trial at once
            yield process_pool, recorder
        return
    import ray

    # actors unpickle this module and morphnas by name: give them the driver's import path
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        ray_pool = RayPool(2, make_trainer, toy_trial, num_cpus_per_trial=1, progress=recorder)
        assert ray_pool.num_gpus_per_trial == 0  # no GPU in this cluster
        with ray_pool:
            ray_pool.wait_ready(timeout=120)
            yield ray_pool, recorder
    finally:
        ray.shutdown()


def test_trials_run_at_once(pool: tuple[WorkerPool, Recorder]) -> None:
    executor, _ = pool
    assert executor.n_workers == 2
    a, b = executor.submit(Spec(1)), executor.submit(Spec(2))
    first, second = a.result(timeout=60), b.result(timeout=60)
    assert (first.trial_id, second.trial_id) == (1, 2)
    assert first.start < second.end and second.start < first.end, "the two trials did not overlap"
    assert first.worker != second.worker and first.pid != second.pid
    assert {first.worker, second.worker} <= {f"{executor.prefix}-1", f"{executor.prefix}-2"}
    assert first.trainer_pid == first.pid  # the trainer was built in the worker


def test_trainer_is_built_once_per_worker(pool: tuple[WorkerPool, Recorder]) -> None:
    executor, _ = pool
    outcomes = [f.result(timeout=60) for f in [executor.submit(Spec(i, seconds=0.1)) for i in (10, 11, 12)]]
    by_worker: dict[str, list[int]] = {}
    for outcome in outcomes:
        by_worker.setdefault(outcome.worker, []).append(outcome.trainer_trials)
    for counts in by_worker.values():
        assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert max(o.trainer_trials for o in outcomes) >= 2  # a worker reused its trainer


def test_exception_in_trial_comes_back_as_itself(pool: tuple[WorkerPool, Recorder]) -> None:
    executor, _ = pool
    future = executor.submit(Spec(20, fail=True))
    with pytest.raises(ValueError, match="trial 20 failed on purpose") as info:
        future.result(timeout=60)
    assert not isinstance(info.value, WorkerLost)
    assert isinstance(info.value.__cause__, RemoteTraceback) and "toy_trial" in str(info.value.__cause__)
    assert executor.submit(Spec(21, seconds=0.1)).result(timeout=60).trial_id == 21  # the worker lives on


def test_progress_reaches_the_driver_before_the_outcome(pool: tuple[WorkerPool, Recorder]) -> None:
    executor, recorder = pool
    outcome = executor.submit(Spec(30, seconds=0.2)).result(timeout=60)
    assert [r["epoch"] for r in recorder.of(30)] == [0, 1]
    assert recorder.of(30)[0]["pid"] == outcome.pid


def test_killed_worker_loses_only_its_trial(pool: tuple[WorkerPool, Recorder]) -> None:
    executor, recorder = pool
    doomed, survivor = executor.submit(Spec(40, seconds=30)), executor.submit(Spec(41, seconds=2))
    os.kill(recorder.pid_of(40), signal.SIGKILL)
    with pytest.raises(WorkerLost) as info:
        doomed.result(timeout=60)
    assert info.value.trial_id == 40 and info.value.worker.startswith(executor.prefix)
    survived = survivor.result(timeout=60)
    assert survived.trial_id == 41
    # the lost worker is replaced: two new trials still run at once, one of them on the new worker
    executor.wait_ready(timeout=120)
    assert set(executor.workers()) == {survived.worker, f"{executor.prefix}-3"}
    after = [executor.submit(Spec(i, seconds=1)) for i in (42, 43)]
    first, second = (f.result(timeout=60) for f in after)
    assert first.start < second.end and second.start < first.end
    assert info.value.worker not in {first.worker, second.worker}
    assert f"{executor.prefix}-3" in {first.worker, second.worker}


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ImportError, match=r"pip install 'morphnas\[ray\]'"):
        RayPool(1, make_trainer, toy_trial)
