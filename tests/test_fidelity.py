"""Multi-fidelity search (successive halving, ASHA-style promotion): rungs, promotion decisions, continuing from
a trial's own weights, strategies that see fidelities, the best-model rule across rungs, and exact resume."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import time

import pytest
import torch
from run_helpers import cli, finished_trials
from searcher_helpers import BASES, toy_metric
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

import morphnas
from morphnas.cli import main
from morphnas.engine.config import SearchConfig
from morphnas.engine.fidelity import Rungs, next_promotion, promotable
from morphnas.engine.loop import Search, create_search, open_search
from morphnas.engine.results import format_report, report
from morphnas.engine.setup import make_trainer
from morphnas.engine.trial import TrialSpec, run_trial
from morphnas.graph import generators
from morphnas.searcher.strategies import Observation, make_strategy
from morphnas.status import TrialStatus
from morphnas.storage import RunDir
from morphnas.storage.rundir import TrialRecord, best_trial
from morphnas.trainer.datasets import load_demo
from morphnas.trainer.trainer import TrainConfig, Trainer

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "batch_size": 64,
        "quiet": True, "seed": 3, "max_params": 30_000, "max_width": 64}
OBJECTIVE = {"objective": "stats-target", "quiet": True, "seed": 4, "fidelity": "asha", "min_epochs": 1,
             "eta": 2, "max_epochs": 4}


def _row(tid: int, metric: float | None, rung: int = 0, status: str = "ok", continues: int | None = None):
    return TrialRecord(id=tid, status=TrialStatus(status), metric=metric, rung=rung, continues=continues,
                       parent=continues)


def _table(path) -> list[tuple]:
    """What a trial-bounded run must reproduce exactly: ids, lineage, fidelity, status, metric, epochs."""
    run = RunDir.open(path)
    try:
        return [(t.id, t.parent, t.ops, t.inherit, t.arch_hash, str(t.status), t.metric, t.epochs, t.rung,
                 t.fidelity, t.continues) for t in run.trials()]
    finally:
        run.close()


# ---------------------------------------------------------------------------------------------- rungs
def test_rungs_follow_eta_up_to_max_epochs_and_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert Rungs(1, 3, 9).epochs == (1, 3, 9)
    assert [Rungs(1, 3, 9).train_epochs(k) for k in range(3)] == [1, 2, 6]
    assert Rungs(1, 3, 15).epochs == (1, 3, 15)
    assert Rungs(2, 2, 9).epochs == (2, 4, 9)  # 8 is within sqrt(2) of 9: no rung of one more epoch
    assert Rungs(1, 3, 3).top == 1
    assert Rungs.from_config(SearchConfig()).epochs == (1, 3)  # ASHA by default: rungs of 1 and 3 epochs
    assert SearchConfig(max_epochs=1).fidelity == "single"  # one rung: single fidelity, not an error
    assert Rungs.from_config(SearchConfig(fidelity="single")) is None
    assert Rungs.from_config(SearchConfig(fidelity="asha", max_epochs=9)).epochs == (1, 3, 9)
    for options, message in [({"fidelity": "fast"}, "unknown fidelity 'fast'"),
                             ({"fidelity": "asha", "max_epochs": 1}, "1 <= min_epochs < max_epochs"),
                             ({"fidelity": "asha", "eta": 1}, "eta (the reduction factor")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            SearchConfig(**options)
    assert main(["search", "--fidelity", "asha", "--max-epochs", "2", "--min-epochs", "2",
                 "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "min_epochs < max_epochs" in err and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------- promotions
def test_the_top_fraction_of_each_rung_is_promoted_best_first_highest_rung_first_each_once():
    rungs = Rungs(1, 3, 9)
    metrics = [0.50, 0.80, 0.20, 0.70, 0.90, 0.10, 0.60, 0.30, 0.40]
    trials = [_row(i, m) for i, m in enumerate(metrics)]
    trials += [_row(9, None, status="failed"), _row(10, 0.99, status="cut"), _row(11, None, status="pending")]
    # 9 trials completed rung 0 (failed, cut and pending ones do not count): the top 3 go, best first
    assert [(t.id, r) for t, r in promotable(trials, rungs)] == [(4, 1), (1, 1), (3, 1)]
    made = []
    while (found := next_promotion(trials, rungs)) is not None:
        source, rung = found
        made.append(source.id)
        trials.append(_row(100 + len(made), None, rung=rung, status="pending", continues=source.id))
    assert made == [4, 1, 3], "each of the top third once, in order"
    # their results arrive: rung 1 has 3 members, so its best is promoted before anything else
    trials = [t for t in trials if t.id < 100] + [_row(101, 0.91, 1, continues=4), _row(102, 0.95, 1, continues=1),
                                                  _row(103, 0.75, 1, continues=3)]
    trials += [_row(12, 0.15)]  # a tenth rung-0 trial: still 10 // 3 = 3 of rung 0, all promoted
    assert [(t.id, r) for t, r in promotable(trials, rungs)] == [(102, 2)]
    trials.append(_row(104, None, 2, status="pending", continues=102))
    assert next_promotion(trials, rungs) is None
    trials += [_row(13, 0.05), _row(14, 0.01)]  # 12 in rung 0: a fourth is promoted, the best not yet taken
    assert next_promotion(trials, rungs)[0].id == 6
    # the top rung is never promoted
    assert next_promotion([_row(0, 0.9, 2), _row(1, 0.8, 2), _row(2, 0.7, 2)], rungs) is None


def test_an_asha_simulation_promotes_only_from_the_top_and_never_twice():
    """A scheduler driven by a synthetic objective, one 'worker': each decision is a pure function of the rows."""
    rungs = Rungs(1, 2, 8)
    trials: list[TrialRecord] = []
    for tid in range(60):
        found = next_promotion(trials, rungs)
        if found is None:
            trials.append(_row(tid, math.sin(tid * 1.7) * 0.3 + 0.5))
            continue
        source, rung = found
        members = sorted((t for t in trials if t.rung == source.rung and t.status == TrialStatus.OK),
                         key=lambda t: (-t.metric, t.id))
        assert source in members[: len(members) // rungs.eta]
        trials.append(_row(tid, source.metric + 0.05 * rung, rung, continues=source.id))
    sources = [t.continues for t in trials if t.continues is not None]
    assert len(sources) == len(set(sources)) > 10
    assert {t.rung for t in trials} == {0, 1, 2, 3}


def test_a_loop_on_an_objective_records_promotions_as_continuing_trials(tmp_path):
    search = create_search(SearchConfig(**OBJECTIVE, strategy="hill-climbing", max_trials=16,
                                        out=str(tmp_path / "run")))
    search.run()
    search.close()
    run = RunDir.open(tmp_path / "run")
    trials = {t.id: t for t in run.trials()}
    assert [t.id for t in trials.values()] == list(range(16))
    promotions = [t for t in trials.values() if t.continues is not None]
    assert len(promotions) >= 4 and {t.rung for t in promotions} >= {1, 2}
    for t in promotions:
        source = trials[t.continues]
        assert t.parent == source.id and t.ops == [] and t.inherit and t.arch_hash == source.arch_hash
        assert t.rung == source.rung + 1 and t.fidelity == Rungs(1, 2, 4).epochs[t.rung]
    assert len({t.continues for t in promotions}) == len(promotions), "a trial was promoted twice"
    assert all(t.fidelity == 1.0 for t in trials.values() if t.continues is None)
    state = run.latest_state()
    assert {o["trial_id"]: o.get("rung", 0) for o in state["observations"]} == {i: t.rung for i, t in trials.items()}
    rep = report(tmp_path / "run", plot=False)
    assert rep["best"]["rung"] == max(t.rung for t in trials.values())
    text = format_report(rep)
    assert "multi-fidelity (asha): rung 0 (1 epochs)" in text and "rung epochs cont." in text
    run.close()


@pytest.mark.parametrize(("sync", "workers"), [(False, 1), (True, 1), (True, 3), (False, 3)],
                         ids=["async", "sync", "sync-3-workers", "async-3-workers"])
def test_a_crash_after_any_write_then_resume_gives_the_uninterrupted_table(tmp_path, monkeypatch, sync, workers):
    """Every transaction is a possible kill point: crash right after the n-th, resume, compare. Async with
    several workers records the order of arrival, which a resume changes (re-run trials arrive after a free
    worker has been given something else), so there the check is that nothing is lost, repeated or changed."""
    monkeypatch.setattr(Search, "_picture", lambda self, record: None)  # drawings are not what this tests
    options = {**OBJECTIVE, "strategy": "hill-climbing", "max_trials": 10, "sync": sync, "workers": workers}
    put = RunDir.put_trial
    total = {"n": 0}

    def counting(self, trial, state=None):
        put(self, trial, state)
        total["n"] += 1

    monkeypatch.setattr(RunDir, "put_trial", counting)
    create_search(SearchConfig(**options, out=str(tmp_path / "whole"))).run()
    monkeypatch.setattr(RunDir, "put_trial", put)
    whole = _table(tmp_path / "whole")
    assert sum(t[10] is not None for t in whole) >= 3

    class Crash(BaseException):
        pass

    step = 1 if not sync and workers == 1 else (2 if sync else 3)  # every write in the default mode
    writes, points = 0, range(1, total["n"], step)
    for k in points:
        counter = {"n": 0}

        def crashing(self, trial, state=None, counter=counter, k=k):
            put(self, trial, state)
            counter["n"] += 1
            if counter["n"] == k:
                raise Crash

        monkeypatch.setattr(RunDir, "put_trial", crashing)
        out = tmp_path / f"crash-{k}"
        search = create_search(SearchConfig(**options, out=str(out)))
        try:
            search.run()
        except Crash:
            writes += 1
        finally:
            search.run_dir.close()
        monkeypatch.setattr(RunDir, "put_trial", put)
        before = [t for t in _table(out) if t[5] != "pending"]
        resumed = open_search(out)
        resumed.run()
        resumed.run_dir.close()
        after = _table(out)
        if sync or workers == 1:
            assert after == whole, f"resume after write {k} differs"
            continue
        assert [t[0] for t in after] == list(range(10)) and all(t[5] == "ok" for t in after)
        assert [t for t in after if t[0] in {b[0] for b in before}] == before, f"write {k}: a finished trial changed"
        sources = [t[10] for t in after if t[10] is not None]
        assert len(sources) == len(set(sources)), f"write {k}: a trial was promoted twice"
    assert writes == len(points), "the crash points were not reached"


# ---------------------------------------------------------------------------------------------- real training
@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mf") / "run"
    return morphnas.search(out=str(out), max_trials=6, fidelity="asha", min_epochs=1, eta=2, max_epochs=3,
                           strategy="hill-climbing", **TINY)


def test_a_promotion_continues_from_its_own_weights_and_trains_the_extra_epochs(mf_run):
    trials = {t.id: t for t in mf_run.trials}
    promotions = [t for t in trials.values() if t.continues is not None]
    assert promotions, "no trial was promoted"
    for t in promotions:
        source = trials[t.continues]
        assert t.extra["initial_metric"] == pytest.approx(source.metric, abs=1e-6)  # starts where its source ended
        assert t.epochs == Rungs(1, 2, 3).train_epochs(t.rung) == len(t.history)
        assert t.metric >= source.metric  # its start counts as epoch 0: never worse than its source
        assert t.fidelity == Rungs(1, 2, 3).epochs[t.rung]
    assert all(t.epochs == 1 for t in trials.values() if t.rung == 0)
    run = RunDir.open(mf_run.path)
    assert best_trial(run.trials()).id == run.best()["trial"] == max(
        (t for t in trials.values() if t.has_metric), key=lambda t: (t.rung, t.metric, -t.id)).id
    run.close()


def test_tensorboard_hparams_and_the_report_show_the_fidelity(mf_run):
    mux = EventMultiplexer().AddRunsFromDirectory(str(mf_run.path / "tb"))
    mux.Reload()
    content = mux.PluginRunToTagToContent("hparams")
    promoted = next(t for t in mf_run.trials if t.continues is not None)
    data = plugin_data_pb2.HParamsPluginData.FromString(
        content[f"trial-{promoted.id:04d}"]["_hparams_/session_start_info"])
    values = {k: v.number_value for k, v in data.session_start_info.hparams.items()}
    assert values["fidelity"] == promoted.fidelity and values["rung"] == promoted.rung
    assert values["continues"] == promoted.continues
    rep = report(mf_run.path, plot=False)
    row = next(r for r in rep["leaderboard"] if r["trial"] == promoted.id)
    assert (row["rung"], row["fidelity"], row["continues"]) == (promoted.rung, promoted.fidelity, promoted.continues)
    assert f"promoted to rung {promoted.rung}" in format_report(rep)


def test_fit_from_a_start_keeps_it_unless_an_epoch_beats_it():
    data = load_demo()
    trainer = Trainer.from_dataset(data, TrainConfig(max_epochs=3, batch_size=64), seed=0)
    module = generators.cnn(data.input_shape, data.n_classes, n_blocks=1, filters=4, dense_units=8,
                            seed=0).to_module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    loss, _ = trainer.validate(module)
    result = trainer.fit(module, seed=1, epochs=1, start=(loss, 1.01))  # no epoch can beat 101 %
    assert result.status == "ok" and result.best_epoch == 0 and result.best_metric == 1.01
    assert result.epochs_run == 1  # `epochs` overrides max_epochs
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


# ---------------------------------------------------------------------------------------------- strategies
NAMES = ["bayesian", "autokeras", "random", "random-walk", "hill-climbing", "evolution", "bfs"]
FAST = {"bayesian": {"fit_steps": 5, "pool_size": 12},
        "autokeras": {"fit_steps": 5, "annealing": {"t_min": 0.3, "n_children": 3, "n_attempts": 6}},
        "evolution": {"population_size": 4, "sample_size": 2}}


def _drive(strategy, start: int, n: int, promote: dict[int, int]) -> list[tuple]:
    """Suggest and observe ``n`` trials from ``start``; after trial ``k`` in ``promote``, observe a promotion of
    trial ``promote[k]`` (id ``1000 + k``, one rung up, a better metric), as the loop would."""
    trail = []
    for tid in range(start, start + n):
        s = strategy.suggest(tid)
        trail.append((s.architecture.canonical_hash(), s.parent, s.ops))
        strategy.observe(Observation(tid, s.architecture, toy_metric(s.architecture), "ok", 0, 1.0))
        if tid in promote:
            source = strategy.observations[promote[tid]]
            strategy.observe(Observation(1000 + tid, source.architecture, source.metric + 0.01, "ok",
                                         source.rung + 1, 3.0 * (source.rung + 1), continues=source.trial_id))
    return trail


@pytest.mark.parametrize("name", NAMES)
def test_strategy_state_round_trips_with_fidelities(name):
    def make():
        return make_strategy(name, [BASES["cnn"](), BASES["resnet"]()], seed=5, **FAST.get(name, {}))

    a = make()
    _drive(a, 0, 5, {2: 1, 4: 0})
    state = json.loads(json.dumps(a.state_dict()))
    entry = next(o for o in state["observations"] if o["trial_id"] == 1002)
    assert entry["rung"] == 1 and entry["continues"] == 1 and entry["architecture"] == {"as": 1}
    b = make()
    b.load_state_dict(state)
    assert {t: (o.rung, o.fidelity, o.continues) for t, o in b.observations.items()} == {
        t: (o.rung, o.fidelity, o.continues) for t, o in a.observations.items()}
    assert _drive(b, 5, 3, {}) == _drive(a, 5, 3, {})
    for s in (a, b):
        if s.best() is not None:
            assert s.best().trial_id in (1002, 1004)  # the promoted (rung 1) models rank first
        assert 1 not in {o.trial_id for o in s.trained_models}  # superseded by its promotion 1002


def test_states_saved_before_fidelities_load_as_rung_zero():
    a = make_strategy("bayesian", [BASES["cnn"]()], seed=2, **FAST["bayesian"])
    _drive(a, 0, 4, {})
    state = json.loads(json.dumps(a.state_dict()))
    for entry in state["observations"]:  # what a state written before fidelities existed looks like
        entry.pop("fidelity")
        assert "rung" not in entry and "continues" not in entry
    b = make_strategy("bayesian", [BASES["cnn"]()], seed=2, **FAST["bayesian"])
    b.load_state_dict(state)
    assert all(o.rung == 0 and o.fidelity is None and o.continues is None for o in b.observations.values())
    assert _drive(b, 4, 2, {}) == _drive(a, 4, 2, {})
    assert Observation.from_dict({"trial_id": 1, "architecture": BASES["cnn"]().to_dict(), "metric": 0.5}).rung == 0


def test_the_gp_models_only_first_rung_metrics_and_parents_come_from_the_highest_rung():
    s = make_strategy("bayesian", [BASES["cnn"]()], seed=0, top_k=1, **FAST["bayesian"])
    _drive(s, 0, 4, {})
    region = (s.radius, s.successes, s.failures)
    source = s.observations[0]
    s.observe(Observation(1003, source.architecture, source.metric + 0.5, "ok", 1, 3.0, continues=0))
    assert (s.radius, s.successes, s.failures) == region, "a promotion is not the trust region's move"
    assert [o.trial_id for o in s.modelled()] == [0, 1, 2, 3]  # the promotion 1003 is another fidelity
    suggestion = s.suggest(4)
    assert suggestion.parent == 1003, "the best parent is the longest-trained model"
    with pytest.raises(ValueError, match="continues trial 77"):
        s.observe(Observation(50, BASES["cnn"](), 0.5, continues=77))


def test_evolution_and_bfs_replace_a_model_by_its_promotion():
    evo = make_strategy("evolution", [BASES["cnn"]()], seed=0, population_size=3, sample_size=2)
    _drive(evo, 0, 3, {1: 0})
    assert list(evo.population) == [1001, 1, 2]  # in place: same individual, same age
    bfs = make_strategy("bfs", [BASES["cnn"]()], seed=0, n_children=2)
    bfs.observe(Observation(0, bfs.suggest(0).architecture, 0.5, "ok", 0, 1.0))
    bfs.observe(Observation(9, bfs.observations[0].architecture, 0.6, "ok", 1, 3.0, continues=0))
    assert bfs.suggest(1).parent == 9


def test_best_trial_ranks_the_highest_rung_first():
    trials = [_row(0, 0.90), _row(1, 0.70), _row(2, 0.75, rung=1, continues=1), _row(3, 0.95, status="cut")]
    assert best_trial(trials).id == 2
    assert best_trial([_row(0, 0.5), _row(1, 0.5)]).id == 0  # one fidelity: the highest metric, earliest on ties
    assert best_trial([_row(0, None, status="failed")]) is None


def test_a_promotion_cut_at_the_deadline_keeps_its_source_model(mf_run):
    """The deadline reaches into a promotion like any trial: cut, with the model it started from and its metric."""
    source = next(t for t in mf_run.trials if t.has_metric and t.continues is None)
    config = SearchConfig(**TINY, max_epochs=3, fidelity="asha", eta=2)
    run = RunDir.open(mf_run.path)
    spec = TrialSpec(99, source.id, (), source.extra["architecture"], True, 1, 2, run.model_bytes(source.id),
                     deadline=time.time(), epochs=2, continues=source.id, rung=source.rung + 1)
    run.close()
    outcome = run_trial(spec, make_trainer(config, load_demo()))
    assert outcome.status == TrialStatus.CUT and outcome.stopped_by == "deadline"
    assert outcome.metric == pytest.approx(source.metric, abs=1e-6) and outcome.best_epoch == 0
    assert outcome.model is not None


def test_kill_minus_nine_then_resume_equals_an_uninterrupted_multi_fidelity_search(tmp_path):
    config = tmp_path / "search.toml"
    config.write_text('[search]\ndataset = "demo"\nmax_trials = 6\nmax_epochs = 3\nfidelity = "asha"\neta = 2\n'
                      'batch_size = 64\nseed = 7\nmax_params = 30000\nmax_width = 64\n'
                      "generator = \"cnn\"\ngenerator_args = { filters = 8, dense_units = 16 }\n")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    ref = cli("search", "--config", str(config), "--out", str(whole), "--quiet", threads=1)
    victim = cli("search", "--config", str(config), "--out", str(killed), "--quiet", threads=1)
    deadline = time.time() + 240
    while finished_trials(killed) < 3 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, f"the search ended before it could be killed:\n{victim.stdout.read()}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = [t for t in _table(killed) if t[5] in ("ok", "failed")]
    assert 3 <= len(before) < 6
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    resumed = cli("resume", str(killed), "--quiet", threads=1)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    after = _table(killed)
    assert [t for t in after if t[0] in {b[0] for b in before}] == before, "finished trials were changed"
    assert after == _table(whole), "the resumed search made other choices than the uninterrupted one"
    assert any(t[10] is not None for t in after), "no promotion in the run"


def test_a_run_written_before_fidelities_opens_as_rung_zero(tmp_path):
    run = RunDir.create(tmp_path / "old", {"strategy": "bayesian"})
    run.put_trial(TrialRecord(id=0, status=TrialStatus.OK, metric=0.5, extra={"architecture": {}}))
    run.close()
    with sqlite3.connect(tmp_path / "old" / "trials.sqlite") as db:  # the schema before this change
        for column in ("rung", "fidelity", "continues"):
            db.execute(f"ALTER TABLE trials DROP COLUMN {column}")
    db.close()
    run = RunDir.open(tmp_path / "old")
    (trial,) = run.trials()
    assert (trial.rung, trial.fidelity, trial.continues, trial.metric) == (0, None, None, 0.5)
    run.put_trial(TrialRecord(id=1, status=TrialStatus.OK, metric=0.4, rung=1, fidelity=3.0, continues=0))
    assert run.best_trial().id == 1
    run.close()
