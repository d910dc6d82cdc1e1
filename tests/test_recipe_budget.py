"""The final recipe's options under the budget's deadline and stop flag (issue 12's two halves together): a cut
with weight EMA validates and keeps the average, the deadline's projection leaves compiling out, a trial cut
inside its first epoch prices a whole epoch, and the final step takes a recipe (the one-line switch works)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from morphnas.cli import main
from morphnas.engine import final as final_module
from morphnas.engine.setup import train_config
from morphnas.engine.trial import seconds_per_epoch
from morphnas.trainer import TrainConfig, Trainer, load_dataset
from morphnas.trainer import trainer as trainer_module
from morphnas.trainer.recipe import final_recipe_fields
from morphnas.trainer.trainer import EpochRecord, TrainResult


@pytest.fixture(scope="module")
def small():
    """400 training and 200 validation images of the demo set: 8 steps of 50 per epoch."""
    train, val = load_dataset("demo").split_validation(0.1, seed=0)
    return train.subset(np.arange(400)), val.subset(np.arange(200))


def tiny_cnn() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def trainer(small, **cfg) -> Trainer:
    return Trainer(*small, TrainConfig(**({"max_epochs": 4, "batch_size": 50, "lr": 0.1} | cfg)), device="cpu")


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_cut_partial_epoch_with_ema_validates_keeps_and_returns_the_average(small) -> None:
    def stopper():
        calls: list[object] = []
        return (lambda *a: calls.append(a)), (lambda: len(calls) >= 3)

    count, stop = stopper()
    raw_module = tiny_cnn()
    raw = trainer(small).fit(raw_module, seed=0, on_batch=count, stop=stop)
    count, stop = stopper()
    t = trainer(small, ema_decay=0.9)
    module = tiny_cnn()
    result = t.fit(module, seed=0, on_batch=count, stop=stop)
    assert (result.status, result.stopped_by, result.best_epoch) == ("cut", "stopped", 1)
    (record,) = result.history
    assert record.fraction == pytest.approx(3 / 8) and record.train_images == 150
    assert record.train_loss == raw.history[0].train_loss  # the same steps were trained ...
    assert record.val_loss != raw.history[0].val_loss  # ... but the average was validated
    assert not states_equal(module.state_dict(), raw_module.state_dict())  # ... and is what the module holds
    assert t.validate(module) == pytest.approx((result.best_loss, result.best_metric))
    assert result.train_images_per_second is not None and result.epochs_trained == pytest.approx(3 / 8)


def test_a_cut_after_finished_epochs_with_ema_returns_the_best_epochs_average(small) -> None:
    kept: dict[int, dict[str, torch.Tensor]] = {}
    calls: list[object] = []

    def keep(record, module):
        kept[record.epoch] = {k: v.clone() for k, v in module.state_dict().items()}

    t = trainer(small, ema_decay=0.9)
    module = tiny_cnn()
    result = t.fit(module, seed=0, callback=keep, on_batch=lambda *a: calls.append(a), stop=lambda: len(calls) >= 20)
    assert (result.status, result.epochs_run) == ("cut", 2) and all(r.fraction == 1.0 for r in result.history)
    assert states_equal(module.state_dict(), kept[result.best_epoch])  # the callback was given the average
    assert t.validate(module) == pytest.approx((result.best_loss, result.best_metric))


class _CompilesSlowly:
    """Stands in for a compiled module: its first call takes `seconds` on the fake clock (the compiling)."""

    def __init__(self, module: nn.Module, clock, seconds: float) -> None:
        self.module, self.clock, self.seconds = module, clock, seconds

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.seconds
        self.seconds = 0.0
        return self.module(x)


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


def test_the_deadline_projection_leaves_the_compile_time_out(small, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(Trainer, "_compiled", lambda self, module, best: _CompilesSlowly(module, clock, 20.0))
    # epoch 1: 20 s of compiling + 8 steps of 1 s, ending at 28; epochs take 8 s: epoch 2 ends at 36 < 41, an
    # epoch 3 would end at 44 > 41. Counting the compile in the mean epoch, epoch 2 would not have started.
    result = trainer(small, compile=True).fit(tiny_cnn(), seed=0, on_batch=clock.step, deadline=41)
    assert result.compile_seconds == pytest.approx(20.0) and result.compile_error == ""
    assert (result.status, result.stopped_by, result.epochs_run) == ("cut", "deadline", 2)
    assert clock.now == pytest.approx(36.0)


def _record(epoch: int, train_seconds: float, seconds: float, fraction: float = 1.0) -> EpochRecord:
    return EpochRecord(epoch, 1.0, 0.5, 1.0, 0.5, 0.1, train_seconds, seconds, seconds, 100, fraction)


def test_seconds_per_epoch_of_a_trial_cut_inside_its_first_epoch_is_scaled_to_a_whole_epoch() -> None:
    full = TrainResult("cut", "", "deadline", 0.5, 1.0, 1, 3,
                       history=[_record(1, 4.0, 5.0), _record(2, 6.0, 7.0)])
    assert seconds_per_epoch(full) == pytest.approx(6.0)  # finished epochs: their mean, as before
    # a quarter of an epoch: 3 s of training, 1 s of it compiling, then 1 s of validation
    partial = TrainResult("cut", "", "deadline", 0.5, 1.0, 1, 1, history=[_record(1, 3.0, 4.0, 0.25)],
                          compile_seconds=1.0)
    assert seconds_per_epoch(partial) == pytest.approx(2.0 / 0.25 + 1.0 + 1.0)


def test_the_final_step_takes_the_recipe_in_one_line(tmp_path, monkeypatch) -> None:
    used: list[TrainConfig] = []
    fit = Trainer.fit

    def spy(self, module, **options):
        used.append(self.config)
        return fit(self, module, **options)

    monkeypatch.setattr(Trainer, "fit", spy)
    monkeypatch.setattr(final_module, "final_train_config",  # the switch the docstring names
                        lambda config: replace(train_config(config), **final_recipe_fields(config.dataset)))
    out = tmp_path / "recipe"
    assert main(["train", "--generator", "cnn", "--generator-args", "filters=8,dense_units=16", "--epochs", "1",
                 "--batch-size", "64", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "final.json").read_text())
    assert report["epochs"] == report["epochs_run"] == 1
    (cfg,) = used
    assert cfg.ema_decay == 0.999 and cfg.label_smoothing == 0.1 and cfg.patience is None
    assert cfg.warmup_epochs == 0.5 and cfg.max_epochs == 1  # the recipe's 1 warm-up epoch halved to fit
    assert cfg.batch_size == 64  # the run's own settings stay


def test_the_final_starts_from_the_searched_weights_or_from_scratch_as_asked(tmp_path, monkeypatch) -> None:
    """``final_init = "inherit"`` (the default) trains on from the trial's own trained weights (the search's final
    step and ``morphnas final``), ``"scratch"`` from fresh ones; the trial's model is left as it was; the report
    says which; a run written before the setting existed keeps scratch."""
    import morphnas
    from morphnas.engine.config import SearchConfig
    from morphnas.engine.final import final_evaluation
    from morphnas.engine.setup import stored_config
    from morphnas.storage import RunDir

    starts: list[dict[str, torch.Tensor]] = []
    fit = Trainer.fit

    def spy(self, module, **options):
        starts.append({k: v.clone() for k, v in module.state_dict().items()})
        return fit(self, module, **options)

    def weights(rd: RunDir, trial: int) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in rd.load_model(trial).to_module().state_dict().items()}

    monkeypatch.setattr(Trainer, "fit", spy)
    run = morphnas.search(out=str(tmp_path / "run"), dataset="demo", max_trials=2, max_epochs=1, final_epochs=1,
                          seed=3, generator="cnn", generator_args={"filters": 8, "dense_units": 16}, batch_size=64,
                          quiet=True)
    rd = RunDir.open(run.path)
    try:
        assert stored_config(rd).final_init == "inherit"
        best, child = rd.best_trial(), rd.trial(1)
        assert child.parent == 0  # a morphed child, its weights inherited from trial 0 and trained on
        model_files = sorted(rd.model_dir(child.id).iterdir())
        on_disk = [f.read_bytes() for f in model_files]
        best_weights, child_weights = weights(rd, best.id), weights(rd, child.id)
    finally:
        rd.close()
    assert json.loads((run.path / "final.json").read_text())["init"] == "inherit"
    assert states_equal(starts[-1], best_weights)  # the search's own final step started from them

    inherited = final_evaluation(run.path, epochs=1, trial=child.id, quiet=True)
    assert inherited["init"] == "inherit" and states_equal(starts[-1], child_weights)
    assert main(["final", str(run.path), "--epochs", "1", "--trial", str(child.id), "--init", "scratch", "-q"]) == 0
    assert not states_equal(starts[-1], child_weights)
    assert json.loads((run.path / "final.json").read_text())["init"] == "scratch"
    assert [f.read_bytes() for f in model_files] == on_disk  # training on from them left the trial's files as they were

    config = json.loads((run.path / "config.json").read_text())
    del config["final_init"]  # a run directory from before the setting: its final trained from scratch
    del config["amp"]  # and from before CPU autocast: it resumes as it ran, autocast on CUDA only (LEGACY_AMP)
    (run.path / "config.json").write_text(json.dumps(config))
    rd = RunDir.open(run.path)
    try:
        assert stored_config(rd).final_init == "scratch" and stored_config(rd).amp == "cuda"
    finally:
        rd.close()
    with pytest.raises(ValueError, match="final_init must be one of inherit, scratch, got 'warm'"):
        SearchConfig(final_init="warm").validate()
    with pytest.raises(ValueError, match="init must be one of inherit, scratch"):
        final_evaluation(run.path, epochs=1, init="warm")


def test_resume_can_choose_where_a_final_step_not_yet_run_starts(tmp_path) -> None:
    """``morphnas resume --final-init scratch`` on a search whose final step has not run (here: its final.json and
    final model removed, as after a crash before it): the final starts from fresh weights and says so."""
    import morphnas

    run = morphnas.search(out=str(tmp_path / "run"), dataset="demo", max_trials=1, max_epochs=1, final_epochs=1,
                          seed=3, generator="cnn", generator_args={"filters": 8, "dense_units": 16}, batch_size=64,
                          quiet=True)
    assert json.loads((run.path / "final.json").read_text())["init"] == "inherit"
    (run.path / "final.json").unlink()  # as after a crash before the final step wrote anything
    shutil.rmtree(run.path / "models" / "final")
    assert main(["resume", str(run.path), "--final-init", "scratch", "-q"]) == 0
    assert json.loads((run.path / "final.json").read_text())["init"] == "scratch"
    assert json.loads((run.path / "config.json").read_text())["final_init"] == "scratch"
