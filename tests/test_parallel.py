"""Several trials at once: real workers (local processes, a local Ray cluster), tiny CNNs on the demo data.

Workers are killed and slowed by a test plugin (the engine imports it in every worker, as it would a user's):
it reads what to do from a JSON file named in $MORPHNAS_TEST_CONTROL at each trial, so one Ray cluster and
one plugin serve every test.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from run_helpers import cli, finished_trials

import morphnas
from morphnas.graph import generators
from morphnas.searcher.strategies import Observation, make_strategy
from morphnas.status import TrialStatus
from morphnas.storage import RunDir

ray = pytest.importorskip("ray")

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "max_epochs": 1,
        "batch_size": 64, "quiet": True, "seed": 5, "max_params": 30_000, "max_width": 64}

PLUGIN = '''
"""Test plugin: kills or slows worker processes as the JSON file named in $MORPHNAS_TEST_CONTROL says."""
import json, os, signal, time
from pathlib import Path

import morphnas.engine.trial as trial_module

_build_child = trial_module.build_child
_slow = None


def _control():
    path = os.environ.get("MORPHNAS_TEST_CONTROL")
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def build_child(spec):
    global _slow
    c = _control()
    if spec.trial_id in c.get("kill", []):
        tally = Path(c["dir"]) / f"killed-{spec.trial_id}"
        n = int(tally.read_text()) if tally.exists() else 0
        if n < c.get("times", 1):
            tally.write_text(str(n + 1))
            os.kill(os.getpid(), signal.SIGKILL)
    if c.get("slow") and _slow is None:  # the first worker to get here is the slow one, for good
        try:
            os.close(os.open(Path(c["dir"]) / f"slow-{c['slow']}", os.O_CREAT | os.O_EXCL))
            _slow = True
        except FileExistsError:
            _slow = False
    if _slow and c.get("slow"):
        time.sleep(1.5)
    return _build_child(spec)


trial_module.build_child = build_child
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A local Ray cluster (2 CPUs), the chaos plugin, and the control file it reads."""
    root = tmp_path_factory.mktemp("parallel")
    plugin = root / "chaos.py"
    plugin.write_text(PLUGIN)
    control = root / "control.json"
    control.write_text("{}")
    saved = os.environ.get("MORPHNAS_TEST_CONTROL")
    os.environ["MORPHNAS_TEST_CONTROL"] = str(control)  # before ray.init: the cluster's workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    try:
        yield {"root": root, "plugin": str(plugin), "control": control}
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("MORPHNAS_TEST_CONTROL", None)
        else:
            os.environ["MORPHNAS_TEST_CONTROL"] = saved


def _steer(lab, tmp_path, **what) -> None:
    lab["control"].write_text(json.dumps({"dir": str(tmp_path), **what}))


def _table(path: Path) -> list[tuple]:
    """What must not depend on timing: ids, parents, ops, architectures, statuses, metrics, epochs."""
    run = RunDir.open(path)
    try:
        return [(t.id, t.parent, t.ops, t.inherit, t.arch_hash, str(t.status), t.metric, t.epochs)
                for t in run.trials()]
    finally:
        run.close()


def _overlapping(trials) -> bool:
    spans = sorted((t.started_at, t.started_at + t.extra["seconds"]) for t in trials)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_two_ray_workers_train_at_once_and_lose_nothing(lab, tmp_path):
    _steer(lab, tmp_path)
    run = morphnas.search(out=str(tmp_path / "run"), strategy="random", max_trials=6, executor="ray",
                          workers=2, plugins=[lab["plugin"]], **TINY)
    trials = run.trials
    assert [t.id for t in trials] == list(range(6)) and all(t.status == TrialStatus.OK for t in trials)
    assert len({t.extra["worker"] for t in trials}) == 2, "both workers should have trained"
    assert _overlapping(trials), "no two trials trained at the same time"
    assert all(RunDir.open(run.path).load_model(t.id).weights is not None for t in trials)


def test_a_ray_worker_killed_mid_trial_is_retried_and_the_search_completes(lab, tmp_path):
    _steer(lab, tmp_path, kill=[2], times=1)
    run = morphnas.search(out=str(tmp_path / "run"), strategy="random", max_trials=5, executor="ray",
                          workers=2, plugins=[lab["plugin"]], **TINY)
    trials = {t.id: t for t in run.trials}
    assert (tmp_path / "killed-2").read_text() == "1", "the worker was not killed"
    assert sorted(trials) == list(range(5)) and all(t.finished for t in trials.values())
    assert trials[2].extra["lost"] == 1 and trials[2].status == TrialStatus.OK, "retried once, then trained"


def test_a_trial_that_loses_its_worker_twice_fails_and_caps_the_size(lab, tmp_path):
    _steer(lab, tmp_path, kill=[1], times=2)
    run = morphnas.search(out=str(tmp_path / "run"), strategy="random", max_trials=4, executor="process",
                          workers=2, plugins=[lab["plugin"]], **TINY)
    trials = {t.id: t for t in run.trials}
    assert sorted(trials) == list(range(4)), "the search must finish its budget"
    lost = trials[1]
    assert lost.status == TrialStatus.FAILED and lost.extra["lost"] == 2 and lost.reason.startswith("lost")
    state = RunDir.open(run.path).latest_state()
    assert state["limits"]["max_params"] == lost.n_params - 1, "a trial lost twice is treated as too big"


def test_sync_mode_gives_the_same_trial_table_whatever_the_worker_speed(lab, tmp_path):
    options = {**TINY, "strategy": "bayesian", "max_trials": 6, "executor": "ray", "workers": 2, "sync": True,
               "plugins": [lab["plugin"]]}
    _steer(lab, tmp_path)
    plain = morphnas.search(out=str(tmp_path / "plain"), **options)
    _steer(lab, tmp_path, slow="run2")
    slowed = morphnas.search(out=str(tmp_path / "slowed"), **options)
    assert (tmp_path / "slow-run2").exists(), "no worker was slowed"
    assert len(_table(plain.path)) == 6
    assert _table(plain.path) == _table(slowed.path)


def test_bayesian_suggestions_in_flight_together_differ():
    """With 4 pending, the fantasies must spread the proposals: not all one op on one parent."""
    g = generators.cnn((1, 28, 28), 10, filters=8, dense_units=16)
    strategy = make_strategy("bayesian", [g], seed=0)
    rng = np.random.default_rng(0)
    first = strategy.suggest(0)
    strategy.observe(Observation(0, first.architecture, 0.5))
    for tid in range(1, 6):  # a few trained children so the GP has something to model
        s = strategy.suggest(tid)
        strategy.observe(Observation(tid, s.architecture, float(0.5 + 0.1 * rng.random())))
    batch = [strategy.suggest(tid) for tid in range(6, 10)]
    assert all(s is not None for s in batch)
    assert len({s.architecture.canonical_hash() for s in batch}) == 4
    moves = {(s.parent, tuple((op.name, tuple(sorted(op.args.items()))) for op in s.ops)) for s in batch}
    assert len(moves) == 4
    assert len({(s.parent, s.ops[0].name if s.ops else "") for s in batch}) > 1, \
        f"all four are the same op on the same parent: {[(s.parent, s.ops) for s in batch]}"


# --------------------------------------------------------------------------- driver killed (kill -9), resume
CONFIG = """
[search]
dataset = "demo"
strategy = "bayesian"
max_trials = 6
max_epochs = 1
max_params = 30000
max_width = 64
batch_size = 64
seed = 7
executor = "process"
workers = 2
sync = {sync}
generator = "cnn"
generator_args = {{ filters = 8, dense_units = 16 }}
"""


def _kill_after(proc: subprocess.Popen, run: Path, finished: int) -> int:
    deadline = time.time() + 240
    while finished_trials(run) < finished and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the search ended before it could be killed:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return finished_trials(run)


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_driver_killed_then_resumed_loses_and_repeats_nothing(tmp_path, sync):
    config = tmp_path / "search.toml"
    config.write_text(CONFIG.format(sync=str(sync).lower()))
    killed = tmp_path / "killed"
    victim = cli("search", "--config", str(config), "--out", str(killed), "--quiet")
    done = _kill_after(victim, killed, 2)
    before = [t for t in _table(killed) if t[5] in ("ok", "failed")]
    assert 2 <= len(before) < 6
    resumed = cli("resume", str(killed), "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    after = _table(killed)
    assert [t[0] for t in after] == list(range(6)), "a trial was lost or repeated"
    assert all(t[5] in ("ok", "failed") for t in after)
    assert [t for t in after if t[0] in {b[0] for b in before}] == before, "finished trials were changed"
    assert done == len(before)
    if sync:  # the record does not depend on timing: the same table as an uninterrupted run
        whole = tmp_path / "whole"
        ref = cli("search", "--config", str(config), "--out", str(whole), "--quiet")
        assert ref.wait(timeout=300) == 0, ref.stdout.read()
        assert after == _table(whole), "the resumed sync search differs from an uninterrupted one"
