"""One time budget for the whole job: the trainer's deadline and stop flag, the budget's rules, a search that
ends with final.json inside its budget (its last trial cut at the deadline), resume that neither loses nor
repeats the final step, and ``morphnas train``. Tiny networks on the demo data."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import morphnas
from morphnas.cli import main
from morphnas.engine import budget
from morphnas.engine.budget import EpochCost, JobClock, epoch_cost, final_reserve, margin_seconds, plan_epochs
from morphnas.engine.config import SearchConfig
from morphnas.engine.setup import load_data, make_trainer
from morphnas.graph import Graph
from morphnas.storage import RunDir
from morphnas.trainer import TrainConfig, Trainer, load_dataset, precision_name, resolve_amp
from morphnas.trainer import trainer as trainer_module

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "batch_size": 64,
        "quiet": True, "seed": 3, "max_params": 30_000, "max_width": 64}


@pytest.fixture(scope="module")
def small():
    """600 training and 200 validation images of the demo set."""
    train, val = load_dataset("demo").split_validation(0.1, seed=0)
    return train.subset(np.arange(0, 2700, 4)[:600]), val.subset(np.arange(200))


def tiny_cnn() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def trainer(small, **cfg) -> Trainer:
    return Trainer(*small, TrainConfig(**({"max_epochs": 4, "batch_size": 64, "lr": 0.1} | cfg)), device="cpu")


class FakeClock:
    """Stands in for the trainer's ``time`` module: both clocks advance by ``rate`` seconds per optimizer step."""

    def __init__(self, rate: float = 1.0) -> None:
        self.now, self.rate = 0.0, rate

    def time(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def step(self, *_args: object) -> None:
        self.now += self.rate


# ------------------------------------------------------------------------------------------------ the trainer
def test_deadline_cuts_within_the_step_and_restores_the_best_epoch(small, monkeypatch) -> None:
    clock = FakeClock(rate=0.1)  # two quick epochs (0.9 s each), then a slow one (1 s a step) cut at the deadline
    monkeypatch.setattr(trainer_module, "time", clock)
    t = trainer(small)
    steps = 600 // 64  # 9 optimizer steps per epoch
    states: dict[int, dict[str, torch.Tensor]] = {}

    def keep(record, module):
        states[record.epoch] = {k: v.clone() for k, v in module.state_dict().items()}
        if record.epoch == 2:
            clock.rate = 1.0

    module = tiny_cnn()
    result = t.fit(module, seed=0, callback=keep, on_batch=clock.step, deadline=1.8 + 3.5)
    assert (result.status, result.stopped_by) == ("cut", "deadline") and result.has_metric and not result.ok
    assert result.epochs_run == 2 and clock.now == pytest.approx(1.8 + 4)  # the first step past the deadline
    assert result.epochs_trained == pytest.approx((2 * steps + 4) / steps)
    best = max(result.history, key=lambda r: (r.val_accuracy, -r.epoch))
    assert result.best_epoch == best.epoch and result.best_metric == best.val_accuracy
    assert all(torch.equal(v, states[best.epoch][k]) for k, v in module.state_dict().items())


def test_an_epoch_that_cannot_end_before_the_deadline_is_not_started(small, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    steps = 600 // 64
    # epoch 1 takes 9 s and ends at 9: an epoch 2 would end at 18, past the deadline, so it does not start
    result = trainer(small).fit(tiny_cnn(), seed=0, on_batch=clock.step, deadline=steps + 8)
    assert result.status == "cut" and result.epochs_run == 1 and result.epochs_trained == pytest.approx(1.0)


def test_no_epoch_finished_at_the_deadline_validates_the_partial_epoch(small) -> None:
    t = trainer(small)
    module = tiny_cnn()
    result = t.fit(module, seed=0, deadline=time.time() - 1)  # already past: one step, then cut
    assert (result.status, result.stopped_by, result.best_epoch) == ("cut", "deadline", 1)
    (record,) = result.history
    assert record.fraction == pytest.approx(1 / (600 // 64)) and result.epochs_trained == pytest.approx(record.fraction)
    assert result.best_metric == record.val_accuracy == t.validate(module)[1]  # the module holds those weights


def test_stop_flag_is_told_apart_from_the_deadline(small) -> None:
    calls = []
    result = trainer(small).fit(tiny_cnn(), seed=0, on_batch=lambda *a: calls.append(a), stop=lambda: len(calls) >= 12)
    assert (result.status, result.stopped_by, result.epochs_run, len(calls)) == ("cut", "stopped", 1, 12)
    assert result.history[0].fraction == 1.0  # epoch 1 finished (9 steps); epoch 2 cut after 3 is not validated


def test_time_limit_keeps_its_rule(small) -> None:
    result = trainer(small, time_limit=1e-4).fit(tiny_cnn(), seed=0)
    assert result.status == "timeout" and result.best_metric is None


# ------------------------------------------------------------------------------------------------ the rules
def test_budget_rules() -> None:
    history = [{"train_seconds": 2.0, "seconds": 2.5}, {"train_seconds": 0.5, "seconds": 1.0, "fraction": 0.25}]
    cost = epoch_cost(history, train_images=900, val_images=100)
    assert (cost.train, cost.val) == pytest.approx((2.0, 0.5))
    full = cost.scaled(1000)
    assert (full.train, full.val, full.epoch) == pytest.approx((2.0 * 1000 / 900, 0.5, 2.0 * 1000 / 900 + 0.5))
    assert full.eval_seconds(300) == pytest.approx(1.5)
    unit = EpochCost(1.0, 0.0, 10, 10)
    assert final_reserve(1000, final_time=None, final_epochs=0, cost=None, test_images=0) == 250  # unmeasured
    assert final_reserve(1000, final_time=None, final_epochs=0, cost=unit, test_images=0) == 100  # at least 10 %
    assert final_reserve(1000, final_time=None, final_epochs=500, cost=unit, test_images=0) == 400  # at most 40 %
    assert final_reserve(1000, final_time=None, final_epochs=200, cost=unit, test_images=0) == pytest.approx(
        200 + budget.FINAL_FIXED_SECONDS)
    assert final_reserve(1000, final_time=77, final_epochs=0, cost=unit, test_images=0) == 77
    assert [plan_epochs(s, 2.0, 5) for s in (0.5, 4.1, 100)] == [1, 2, 5]
    clock = JobClock(100, elapsed_before=30, session_start=1000.0)
    assert clock.end() == 1070.0 and JobClock(None).end() is None
    assert margin_seconds(3600) == pytest.approx(46)


def test_cost_cap_follows_the_time_left_and_the_final_share() -> None:
    measured = [(1_000_000, 2.0), (2_000_000, 4.0), (4_000_000, 8.0)]  # 2e-6 s per MAC
    cap = partial(budget.cost_cap_macs, measured, workers=1, trial_epochs=2, final_epoch_seconds=None)
    assert budget.cost_cap_macs([], search_seconds_left=600, workers=1, trial_epochs=2,
                                final_epoch_seconds=None) is None  # nothing measured yet
    caps = [cap(search_seconds_left=s) for s in (600, 300, 60)]
    assert caps[0] == 50_000_000 and caps[0] > caps[1] > caps[2]  # 600 s / (3 trials x 2 epochs) = 100 s an epoch
    assert cap(search_seconds_left=0) == 1_250_000  # never below 1.25 x the cheapest trained network
    assert budget.cost_cap_macs(measured, search_seconds_left=600, workers=4, trial_epochs=2,
                                final_epoch_seconds=None) == 4 * caps[0]  # four workers share the time left
    assert budget.cost_cap_macs(measured, search_seconds_left=600, workers=1, trial_epochs=2,
                                final_epoch_seconds=20.0) == 10_000_000  # the final step could not retrain more
    # the best's cheap children stay proposable when the time left would not pay for them...
    late = partial(cap, search_seconds_left=60)  # 10 s an epoch: 5e6 MACs at the median rate
    assert late(best=(40_000_000, 100.0)) == cap(search_seconds_left=0, best=(40_000_000, 100.0)) == 50_000_000
    # ... as far as the final step could retrain one, at the best's own rate (2.5e-6 s per MAC, not the median's 2e-6)
    assert late(final_epoch_seconds=110.0, best=(40_000_000, 100.0)) == 44_000_000
    assert late(final_epoch_seconds=110.0, best=(40_000_000, 60.0)) == 50_000_000
    # a best too large to retrain for the target epochs lifts the cap only to what could be, below its own cost,
    # so none of its children fit: the floor is bounded by the final step (the median rate would allow 25e6)
    assert late(final_epoch_seconds=50.0, best=(40_000_000, 100.0)) == 20_000_000
    for unmeasured in ((40_000_000, float("nan")), (40_000_000, 0.0), (0, 80.0)):
        assert late(best=unmeasured) == late() == 5_000_000  # an unmeasured best changes nothing
    # 40 % of an hour for the 20 target epochs on train+validation, as a trial's epoch on 90 % of it
    assert budget.FINAL_TARGET_EPOCHS == 20
    assert budget.final_epoch_limit(3600, final_time=None, final_epochs=0, train_images=900,
                                    val_images=100) == pytest.approx(72 * 0.9)
    assert budget.final_epoch_limit(3600, final_time=None, final_epochs=10, train_images=900,
                                    val_images=100) == pytest.approx(144 * 0.9)  # final_epochs, when set, wins
    assert budget.final_epoch_limit(3600, final_time=0, final_epochs=0, train_images=9, val_images=1) is None


def test_a_time_budget_alone_is_the_budget() -> None:
    assert SearchConfig().max_trials == 5
    assert SearchConfig(time_budget=60).max_trials is None and SearchConfig(time_budget=60).wants_final
    assert not SearchConfig(time_budget=60, final_time=0).wants_final
    for bad, match in [({"final_time": 5}, "set time_budget too"),
                       ({"time_budget": 10, "final_time": 10}, "must be less than time_budget"),
                       ({"time_budget": 10, "final_time": 0, "final_epochs": 2}, "turns the final step off"),
                       ({"mode": "train"}, "needs a length"),
                       ({"mode": "train", "max_trials": 3, "final_epochs": 1}, "runs no search")]:
        with pytest.raises(ValueError, match=match):
            SearchConfig(**bad)


# ------------------------------------------------------------------------------------------------ a search
BUDGET = 18.0


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    """A search whose first trial cannot finish (100 epochs, no early stopping) within an 18 s job budget
    (single fidelity: ASHA's first rung would train it one epoch)."""
    out = tmp_path_factory.mktemp("budget") / "run"
    start = time.time()
    run = morphnas.search(out=str(out), time_budget=BUDGET, max_epochs=100, patience=None, fidelity="single",
                          **TINY)
    return run, time.time() - start


def test_search_and_final_fit_in_the_budget(budgeted) -> None:
    run, seconds = budgeted
    final = json.loads((run.path / "final.json").read_text())
    assert seconds <= BUDGET + margin_seconds(BUDGET), f"the job took {seconds:.1f} s of a {BUDGET} s budget"
    assert final["seconds_before_deadline"] > -margin_seconds(BUDGET)
    # on a loaded machine not one final epoch may fit: then the best trial's own model is tested (documented)
    assert (final["epochs_run"] >= 1 if final.get("retrained", True) else final["epochs_run"] == 0)
    assert 0 < final["test_accuracy"] <= 1
    assert final["trial"] == run.best.id
    rep = morphnas.Run(run.path).report(plot=False)
    assert rep["job_seconds"] <= BUDGET + margin_seconds(BUDGET)


def test_a_trial_cut_at_the_deadline_keeps_its_best_epoch_and_weights(budgeted) -> None:
    run, _ = budgeted
    cut = run.trials[0]
    assert cut.status == "cut" and cut.extra["stopped_by"] == "deadline"
    assert 1 <= cut.epochs < 100 and cut.extra["epochs_trained"] >= cut.epochs
    assert cut.extra["precision"] == precision_name(resolve_amp("auto", torch.device("cpu")))  # the default's
    best = max(cut.history, key=lambda h: (h["val_accuracy"], -h["epoch"]))
    assert cut.best_epoch == best["epoch"] and cut.metric == best["val_accuracy"]
    assert run.best.id == 0  # the run's best may be a cut trial
    config = SearchConfig.from_dict({k: v for k, v in run.config.items() if k in SearchConfig.__dataclass_fields__})
    data = load_data(config)
    _loss, accuracy = make_trainer(config, data).validate(run.model(0).to_module())
    assert accuracy == pytest.approx(cut.metric, abs=1e-9)


def test_every_proposal_respects_the_cost_cap_of_its_moment(tmp_path, monkeypatch) -> None:
    from morphnas.engine import loop

    given: list[tuple[object, object]] = []  # (the best trial's cost, what the cap was told) at each cap
    bests: list[tuple[int, float] | None] = []
    cost_cap = loop.Search.cost_cap

    def noting_the_best(self):
        best = self.best()
        bests.append(None if best is None else (best.extra["macs"], best.seconds_per_epoch))
        return cost_cap(self)

    def recording(measured, **kwargs):
        given.append((bests[-1], kwargs["best"]))
        return budget.cost_cap_macs(measured, **kwargs)

    monkeypatch.setattr(loop.Search, "cost_cap", noting_the_best)
    monkeypatch.setattr(loop, "cost_cap_macs", recording)
    run = morphnas.search(out=str(tmp_path / "run"), time_budget=20.0, max_epochs=1, final_time=2.0, **TINY)
    capped = [t for t in run.trials if "cost_cap_macs" in t.extra["info"]]
    assert capped, "no proposal was made under a cost cap"
    # the cap is told the cost of the best trial of its moment (whose cheap children stay proposable)
    assert given and all(told == best for best, told in given) and any(best for best, _ in given)
    assert all(Graph.from_dict(t.extra["architecture"]).macs() <= t.extra["info"]["cost_cap_macs"] for t in capped)
    assert not [t for t in run.trials if t.status == "failed"]  # replaying a capped proposal never refuses it


def test_a_cap_no_proposal_fits_ends_the_search_and_says_why(tmp_path, monkeypatch, capsys) -> None:
    """When the cost cap leaves the strategy nothing to propose (the cap only shrinks as time runs out), the
    search ends, says that the cap is why, and the final step still trains and tests the best model."""
    from morphnas.engine import loop

    monkeypatch.setattr(loop.Search, "cost_cap", lambda self: 1)  # no child of anything costs 1 MAC per image
    run = morphnas.search(out=str(tmp_path / "run"), time_budget=30.0, max_epochs=1, final_time=3.0,
                          **(TINY | {"quiet": False}))
    out = capsys.readouterr().out
    assert [t.id for t in run.trials] == [0]  # the initial network only: nothing else fitted under the cap
    assert "search stopped" in out and "no proposal under the cost cap of 1e-06 M multiply-accumulates" in out
    assert "already suggested" not in out  # the strategy's own reason (an exhausted space) is not the cause
    assert json.loads((run.path / "final.json").read_text())["trial"] == 0


def test_resume_neither_repeats_nor_loses_the_final_step(budgeted, tmp_path) -> None:
    run, _ = budgeted
    final = run.path / "final.json"
    before = final.read_bytes()
    n_trials = [(t.id, t.status) for t in run.trials]
    morphnas.resume(run.path)  # the budget is spent and the final is done: nothing happens
    assert final.read_bytes() == before and [(t.id, t.status) for t in run.trials] == n_trials

    # killed during its final training: resume does it; with the budget spent, not one epoch fits, so the final
    # model is the best trial's own, tested once
    lost = tmp_path / "lost"
    import shutil

    shutil.copytree(run.path, lost)
    (lost / "final.json").unlink()
    shutil.rmtree(lost / "models" / "final")
    # killed at the budget's end: the first run's final may have finished a little early (its epochs faster than
    # the trial's measured ones), and then the resumed run would rightly retrain in the seconds still left
    RunDir.open(lost).update_job_state(elapsed=BUDGET)
    redone = morphnas.resume(lost)
    report = json.loads((lost / "final.json").read_text())
    assert report["trial"] == run.best.id and (report["retrained"], report["epochs"]) == (False, 0)
    assert report["precision"] == run.best.extra["precision"]  # the tested model is the trial's, as it trained
    assert [(t.id, t.status) for t in redone.trials] == n_trials
    images = load_dataset("demo").test.x[:100]
    assert torch.equal(redone.classifier(final=True)(images), redone.classifier(run.best.id)(images))


# ------------------------------------------------------------------------------------------------ morphnas train
def test_train_a_generator_for_epochs_then_an_architecture_file_within_a_budget(tmp_path, capsys) -> None:
    first = tmp_path / "cnn"
    assert main(["train", "--generator", "cnn", "--generator-args", "filters=8,dense_units=16", "--epochs", "1",
                 "--batch-size", "64", "--amp", "bf16", "--out", str(first), "-q"]) == 0
    assert json.loads((first / "config.json").read_text())["amp"] == "bf16"
    final = json.loads((first / "final.json").read_text())
    assert final["epochs"] == final["epochs_run"] == 1 and final["trial"] is None
    assert final["precision"] == "bfloat16"
    assert final["architecture"] == "cnn(filters=8, dense_units=16)"
    assert final["init"] == "scratch" and json.loads((first / "config.json").read_text())["final_init"] == "scratch"
    from morphnas.engine.final import final_evaluation

    with pytest.raises(ValueError, match="no searched weights to start from"):
        final_evaluation(first, epochs=1, init="inherit")
    capsys.readouterr()
    assert main(["report", str(first), "--no-plot"]) == 0
    assert "`morphnas train`" in capsys.readouterr().out
    from morphnas.engine.export import export

    files = export(first, tmp_path / "exported", final=True, formats=["pt2"])["files"]
    assert Path(files["pt2"]).is_file()
    data = load_dataset("demo")
    predicted = morphnas.Run(first).classifier()(data.test.x).argmax(1)
    # trained under bf16 autocast, tested in float32: the exported model gives exactly the reported accuracy
    assert (predicted == data.test.y).float().mean().item() == pytest.approx(final["test_accuracy"])

    second = tmp_path / "file"
    start = time.time()
    assert main(["train", "--architecture", str(first / "models" / "final" / "architecture.json"),
                 "--time-budget", "12s", "--batch-size", "64", "--out", str(second), "-q"]) == 0
    took = time.time() - start
    report = json.loads((second / "final.json").read_text())
    assert took <= 12 + margin_seconds(12) + 5, f"{took:.1f} s"  # + 5 s: the CLI's start in this process
    assert report["epochs"] >= 1 and report["plan"]["probed"]
    assert report["seconds_before_deadline"] > -margin_seconds(12)


@pytest.mark.parametrize("args, message", [
    (["--generator", "vgg", "--epochs", "1"], "unknown generator 'vgg'"),
    (["--architecture", "{missing}", "--epochs", "1"], "does not exist"),
    (["--architecture", "{corrupt}", "--epochs", "1"], "not valid JSON"),
    (["--generator", "cnn", "--time-budget", "0"], "a duration must be positive"),
    (["--generator", "cnn", "--epochs", "0"], "--epochs must be at least 1"),
    (["--generator", "cnn"], "--epochs N or --time-budget"),
    (["--generator", "cnn", "--architecture", "{corrupt}", "--epochs", "1"], "not both"),
])
def test_train_refuses_bad_input_in_one_line(tmp_path, capsys, args, message) -> None:
    (tmp_path / "corrupt.json").write_text("{not json")
    args = [a.format(missing=tmp_path / "none.json", corrupt=tmp_path / "corrupt.json") for a in args]
    out = tmp_path / "out"
    try:
        code = main(["train", *args, "--out", str(out), "-q"])
    except SystemExit as exc:  # argparse's own checks (a duration) exit from the parser
        code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert not out.exists()



def test_image_classifier_with_a_time_budget_gets_its_final_model_within_it(tmp_path) -> None:
    data = load_dataset("demo")
    x, y = data.train.x[:1000].numpy(), data.train.y[:1000].numpy()
    start = time.time()
    clf = morphnas.ImageClassifier(time_budget=12, max_epochs=2, directory=tmp_path / "clf", batch_size=64,
                                   generator="cnn", generator_args={"filters": 8, "dense_units": 16}, max_params=30_000)
    clf.fit(x, y)  # no test split: the final step trains the final model and tests nothing
    assert time.time() - start <= 12 + margin_seconds(12)
    run = RunDir.open(tmp_path / "clf")
    try:
        assert run.has_final_model() and run.final_report() is None
        assert run.job_state()["final_trial"] == run.best_trial().id
    finally:
        run.close()
    assert clf.predict(x[:50]).shape == (50,)
