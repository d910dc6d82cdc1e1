"""Searches end to end on the real demo data: trials recorded, weights inherited, report/export, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

import morphnas
from morphnas.engine.config import SearchConfig
from morphnas.engine.export import load_torchscript
from morphnas.engine.loop import create_search, load_data, open_search
from morphnas.engine.trial import TrialOutcome
from morphnas.graph import Graph
from morphnas.storage import RunDir, RunDirError
from morphnas.storage.tensorboard import BEST_BY_SECOND, BEST_BY_TRIAL, EPOCH_TAGS, HPARAM_METRIC
from morphnas.trainer.datasets import load_demo

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "max_epochs": 1,
        "batch_size": 64, "quiet": True, "seed": 3, "max_params": 30_000, "max_width": 64}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    run = morphnas.search(out=str(out), max_trials=4, max_epochs=2, **{k: v for k, v in TINY.items()
                                                                       if k != "max_epochs"})
    return run


def test_search_records_every_trial_and_children_inherit_their_parents_accuracy(finished_run):
    trials = finished_run.trials
    assert [t.id for t in trials] == [0, 1, 2, 3]
    assert all(t.finished for t in trials)
    assert all(0.1 < t.metric <= 1.0 for t in trials if t.status == "ok")
    children = [t for t in trials if t.parent is not None and t.inherit and t.status == "ok"]
    assert children, "a bayesian search morphs trained parents"
    by_id = {t.id: t for t in trials}
    for child in children:
        # the child starts where its parent ended (function-preserving morphisms, tiny noise)
        assert child.extra["initial_metric"] == pytest.approx(by_id[child.parent].metric, abs=0.03)
        # and its architecture is the parent's replayed with its ops
        parent_graph = finished_run.model(child.parent)
        replayed = Graph.from_dict(child.extra["architecture"])
        assert child.arch_hash == replayed.canonical_hash() != parent_graph.canonical_hash()
    best = finished_run.best
    assert json.loads((finished_run.path / "best.json").read_text())["trial"] == best.id
    assert best.metric == max(t.metric for t in trials)


def test_report_and_export_give_the_trained_models_predictions(finished_run, tmp_path):
    rep = finished_run.report()
    assert rep["finished"] == 4 and rep["best"]["trial"] == finished_run.best.id
    assert (finished_run.path / "trajectory.png").stat().st_size > 1000
    assert [p["best"] for p in rep["trajectory"]] == sorted(p["best"] for p in rep["trajectory"])

    result = finished_run.export(tmp_path / "export")
    data = load_demo()
    images = data.test.x[:200]
    expected = finished_run.classifier()(images).argmax(1)
    # TorchScript
    scripted = load_torchscript(result["files"]["torchscript"])
    assert torch.equal(scripted(images).argmax(1), expected)
    # standalone model.py + safetensors, imported without morphnas' search code
    import importlib.util

    spec = importlib.util.spec_from_file_location("exported_model", result["files"]["code"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.load()
    with torch.no_grad():
        assert torch.equal(net(images).argmax(1), expected)
        torch.testing.assert_close(net(images), scripted(images), rtol=1e-5, atol=1e-5)
    # and the trained module scored on the validation split what the trial recorded
    assert Graph.load(tmp_path / "export").canonical_hash() == finished_run.best.arch_hash


def test_trials_record_their_cost_and_the_report_shows_accuracy_against_it(finished_run):
    from morphnas.engine.results import format_report

    for t in finished_run.trials:
        graph = Graph.from_dict(t.extra["architecture"])
        assert t.flops == graph.flops() == 2 * t.extra["macs"] > 0  # known from the architecture
        if t.has_metric:
            images = sum(h["train_images"] for h in t.history)
            train_seconds = sum(h["train_seconds"] for h in t.history)
            assert t.train_images_per_second == pytest.approx(images / train_seconds)
            assert t.seconds_per_epoch == pytest.approx(sum(h["seconds"] for h in t.history) / len(t.history))
    rep = finished_run.report()
    row = rep["leaderboard"][0]
    by_id = {t.id: t for t in finished_run.trials}
    assert row["flops"] == by_id[row["trial"]].flops and row["train_images_per_second"] > 0
    text = format_report(rep)
    assert "MFLOPs" in text and "img/s" in text and f"{row['flops'] / 1e6:.1f}" in text
    assert (finished_run.path / "cost.png").stat().st_size > 1000 and rep["cost_plot"].endswith("cost.png")


def test_tensorboard_events_hold_the_curves_trajectory_and_hparams(finished_run):
    mux = EventMultiplexer().AddRunsFromDirectory(str(finished_run.path / "tb"))
    mux.Reload()
    runs = mux.Runs()
    assert {f"trial-{i:04d}" for i in range(4)} <= set(runs)
    best = [e.value for e in mux.Scalars(".", BEST_BY_TRIAL)]
    assert best == pytest.approx([max(t.metric for t in finished_run.trials[: i + 1]) for i in range(4)])
    assert len(mux.Scalars(".", BEST_BY_SECOND)) == 4
    for trial in finished_run.trials:
        run = f"trial-{trial.id:04d}"
        assert set(EPOCH_TAGS) <= set(runs[run]["scalars"])
        val = [e.value for e in mux.Scalars(run, "epoch/val_accuracy")]
        assert max(val) == pytest.approx(trial.metric)
        assert mux.Scalars(run, HPARAM_METRIC)[0].value == pytest.approx(trial.metric)
    hparams = mux.PluginRunToTagToContent("hparams")
    assert {f"trial-{i:04d}" for i in range(4)} <= set(hparams)


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    # an absurd learning rate makes every loss non-finite: each trial fails, none kills the search
    run = morphnas.search(out=str(tmp_path / "nan"), max_trials=2, lr=1e9, strategy="random", **TINY)
    trials = run.trials
    assert len(trials) == 2 and all(t.status == "failed" for t in trials)
    assert all("non-finite" in t.reason for t in trials)
    assert run.best is None

    # a trial that crashes in the middle of a bayesian search: recorded with its traceback, the search goes on
    from morphnas.engine import executors

    real = executors.run_trial

    def crash_trial_1(spec, *args, **kwargs):
        if spec.trial_id == 1:
            spec = type(spec)(**{**spec.__dict__, "ops": ({"op": "wider", "args": {"layer": 999, "n": 1}},)})
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(executors, "run_trial", crash_trial_1)
    run = morphnas.search(out=str(tmp_path / "crash"), max_trials=3, **TINY)
    status = {t.id: t.status for t in run.trials}
    assert status[1] == "failed" and "unknown layer id 999" in run.trials[1].reason
    assert status == {0: "ok", 1: "failed", 2: "ok"}


def test_out_of_memory_teaches_a_size_cap(tmp_path):
    search = create_search(SearchConfig(out=str(tmp_path / "oom"), max_trials=2, **TINY))
    record = search._suggest(0)
    search._observe(record, TrialOutcome(0, "failed", reason="oom", n_params=5000))
    assert search.strategy.limits.max_params == 4999
    assert search.run_dir.trial(0).status == "failed"
    search.close()


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_names_and_impossible_budgets_are_clear_errors(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ValueError, match=r"unknown strategy 'annealing'; valid names: .*bayesian"):
        morphnas.search(out=str(out), strategy="annealing", **TINY)
    with pytest.raises(ValueError, match="unknown kernel 'rbf'; valid names"):
        morphnas.search(out=str(out), kernel="rbf", **TINY)
    with pytest.raises(ValueError, match="max_trials must be a positive integer"):
        SearchConfig(max_trials=0)
    with pytest.raises(ValueError, match="needs a budget"):
        SearchConfig(max_trials=None, time_budget=None)
    with pytest.raises(ValueError, match="time_budget must be a positive"):
        SearchConfig(time_budget=-5)
    with pytest.raises(ValueError, match="unknown configuration keys \\['max_trial'\\]"):
        morphnas.search(max_trial=3)
    with pytest.raises(ValueError, match="unknown generator 'vgg'"):
        morphnas.search(out=str(out), **{**TINY, "generator": "vgg"})
    with pytest.raises(ValueError, match=r"amp must be one of \('auto', 'off', 'bf16', 'fp16', 'cuda'\); got "
                                         r"'half'"):
        morphnas.search(out=str(out), **{**TINY, "amp": "half"})
    assert not out.exists(), "nothing is written for a search that cannot start"
    from morphnas.cli import AMP_CHOICES
    from morphnas.trainer.trainer import AMP_MODES

    assert AMP_CHOICES == AMP_MODES  # the CLI's --amp offers exactly what the trainer accepts


def test_a_dataset_that_does_not_fit_the_task_is_refused(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, size=(40, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"at least 2 classes|single class"):
        morphnas.search(data=morphnas.engine.api.from_arrays(x, np.zeros(40, dtype=np.int64)),
                        out=str(tmp_path / "one"), **TINY)
    with pytest.raises(ValueError, match="labels"):
        morphnas.engine.api.from_arrays(x, np.arange(39))


def test_out_directory_holding_another_run_is_not_overwritten(finished_run):
    before = sorted(p.name for p in finished_run.path.iterdir())
    db = (finished_run.path / "trials.sqlite").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run: continue it with `morphnas resume"):
        morphnas.search(out=str(finished_run.path), max_trials=2, **TINY)
    assert sorted(p.name for p in finished_run.path.iterdir()) == before
    assert (finished_run.path / "trials.sqlite").read_bytes() == db


def test_corrupt_or_foreign_run_directories_are_refused_untouched(tmp_path, finished_run):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(RunDirError, match=r"not a morphnas run directory: missing config\.json, trials\.sqlite"):
        open_search(foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    broken = tmp_path / "broken"
    shutil.copytree(finished_run.path, broken)
    (broken / "trials.sqlite").write_bytes(b"this is not sqlite" * 100)
    for extra in ("trials.sqlite-wal", "trials.sqlite-shm"):
        (broken / extra).unlink(missing_ok=True)
    with pytest.raises(RunDirError, match="not a readable trials database"):
        RunDir.open(broken)
    assert (broken / "trials.sqlite").read_bytes() == b"this is not sqlite" * 100

    damaged = tmp_path / "damaged"
    shutil.copytree(finished_run.path, damaged)
    weights = damaged / "models" / str(finished_run.best.id) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    run = RunDir.open(damaged)
    with pytest.raises(RunDirError, match="does not match its checksum"):
        run.load_model(finished_run.best.id)
    run.close()


def test_image_classifier_fit_predict_evaluate_export(tmp_path):
    data = load_demo()
    x, y = data.train.x[:1000].numpy(), data.train.y[:1000].numpy()
    xt, yt = data.test.x[:200].numpy(), data.test.y[:200].numpy()
    clf = morphnas.ImageClassifier(max_trials=2, max_epochs=1, final_epochs=3, directory=tmp_path / "clf",
                                   generator="cnn", generator_args={"filters": 8, "dense_units": 16}, batch_size=64,
                                   max_params=30_000)
    clf.fit(x[:, 0], y, xt[:, 0], yt)  # N×H×W grayscale arrays are accepted
    pred = clf.predict(xt[:, 0])
    assert pred.shape == (200,) and set(pred) <= set(range(10))
    scores = clf.evaluate(xt[:, 0], yt)
    assert scores["accuracy"] == pytest.approx(float((pred == yt).mean()))
    final = json.loads((tmp_path / "clf" / "final.json").read_text())
    assert final["test_images"] == 200 and set(final["classes"]) == {str(i) for i in range(10)}
    # predict() uses the final model that final.json scored, and it learned (chance is 0.1 ± 0.02 here)
    assert scores["accuracy"] == pytest.approx(final["test_accuracy"])
    assert scores["accuracy"] > 0.15
    files = clf.export(tmp_path / "exported")["files"]
    scripted = load_torchscript(files["torchscript"])
    assert np.array_equal(scripted(torch.from_numpy(xt)).argmax(1).numpy(), pred)
    with pytest.raises(ValueError, match="200 images but y has 199 labels"):
        clf.evaluate(xt[:, 0], yt[:199])


def test_unknown_dataset_is_a_clear_error(tmp_path):
    config = SearchConfig(dataset="imagenet", **{k: v for k, v in TINY.items() if k != "dataset"})
    with pytest.raises(ValueError, match="imagenet"):
        load_data(config)
    with pytest.raises(ValueError, match="imagenet"):
        morphnas.search(out=str(tmp_path / "inet"), dataset="imagenet", **{k: v for k, v in TINY.items()
                                                                         if k != "dataset"})
    assert not (tmp_path / "inet").exists()


def test_trials_run_in_a_worker_process_too(tmp_path):
    run = morphnas.search(out=str(tmp_path / "proc"), max_trials=2, executor="process", **TINY)
    trials = run.trials
    assert [t.status for t in trials] == ["ok", "ok"]
    assert (run.path / "tb" / "trial-0001").is_dir()  # the worker wrote the trial's curves
    if trials[1].inherit:
        assert trials[1].extra["initial_metric"] == pytest.approx(trials[0].metric, abs=0.03)


def test_cli_parses_budgets_and_reports_bad_input(tmp_path, capsys):
    from morphnas.cli import main, parse_duration

    assert [parse_duration(t) for t in ("90", "90s", "30m", "1.5h")] == [90, 90, 1800, 5400]
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")
    assert main(["search", "--strategy", "genetic", "--out", str(tmp_path / "g"), "--quiet"]) == 2
    assert "unknown strategy 'genetic'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a morphnas run directory" in capsys.readouterr().err
