"""Tests of morphnas.trainer.trainer: learning on real data, early stopping, faults, determinism, AMP path."""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from morphnas.trainer import (
    Augmentation,
    EpochRecord,
    ImageSplit,
    TrainConfig,
    Trainer,
    cpu_has_bf16_matrix_units,
    evaluate,
    from_arrays,
    load_dataset,
    resolve_amp,
    select_device,
)
from morphnas.trainer.trainer import _lr_factors


def tiny_cnn(seed: int = 0, dropout: float = 0.0, n_classes: int = 10) -> nn.Module:
    """A small BN CNN for 1×28×28 inputs, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(32, n_classes),
        )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread while these tests run: tiny nets on a shared 2-core CPU are several times faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo")


@pytest.fixture(scope="module")
def small(demo) -> tuple[ImageSplit, ImageSplit]:
    """600 training and 200 validation images of the demo set (stratified)."""
    train, val = demo.split_validation(0.1, seed=0)
    return train.subset(np.arange(0, 2700, 4)[:600]), val.subset(np.arange(200))


def small_trainer(small, **cfg) -> Trainer:
    defaults = {"max_epochs": 2, "batch_size": 64, "lr": 0.1}
    return Trainer(*small, TrainConfig(**(defaults | cfg)), device="cpu", flip_default=True)


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_cnn_two_epochs_on_demo_beats_chance_clearly(demo) -> None:
    trainer = Trainer.from_dataset(demo, TrainConfig(max_epochs=2, batch_size=64, lr=0.1), device="cpu")
    assert len(trainer._y) == 2700 and len(trainer._vy) == 300  # the test split is not in the trainer
    module = tiny_cnn()
    result = trainer.fit(module, seed=0)
    assert result.status == "ok" and result.epochs_run == 2 and result.stopped_by == "max_epochs"
    assert result.best_metric is not None and result.best_metric > 0.4  # chance: 0.1
    assert result.history[-1].train_loss < result.history[0].train_loss < math.log(10)
    test = trainer.evaluate(module, demo.test)
    assert test.accuracy > 0.4
    assert result.to_dict()["history"][0]["epoch"] == 1 and json.dumps(result.to_dict())


def test_same_seed_same_metrics_and_global_rng_untouched(small) -> None:
    trainer = small_trainer(small)
    before = torch.get_rng_state()
    runs = [trainer.fit(tiny_cnn(dropout=0.3), seed=5) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), before)
    metrics = [[(h.train_loss, h.train_accuracy, h.val_loss, h.val_accuracy) for h in r.history] for r in runs]
    assert metrics[0] == metrics[1]
    module = tiny_cnn(dropout=0.3)
    trainer.fit(module, seed=5)
    assert all("forward" not in m.__dict__ for m in module.modules())  # seeded dropout is undone after fit
    other = trainer.fit(tiny_cnn(dropout=0.3), seed=6)
    assert [h.train_loss for h in other.history] != [m[0] for m in metrics[0]]


def test_fit_in_a_thread_leaves_the_drivers_global_rng_alone(small) -> None:
    trainer = small_trainer(small, max_epochs=2)
    gen_state = torch.get_rng_state()
    expected = torch.rand(1000)
    torch.set_rng_state(gen_state)
    mid_fit, drawn_event = threading.Event(), threading.Event()

    def pause_after_epoch_1(record: EpochRecord, module: nn.Module) -> None:
        if record.epoch == 1:
            mid_fit.set()
            drawn_event.wait(30)

    box: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("r", trainer.fit(tiny_cnn(dropout=0.5), seed=1, callback=pause_after_epoch_1))
    )
    worker.start()
    assert mid_fit.wait(60)
    drawn = torch.rand(1000)  # the driver uses the global RNG while the trial is half-way through
    drawn_event.set()
    worker.join()
    assert torch.equal(drawn, expected) and box["r"].status == "ok"
    alone = trainer.fit(tiny_cnn(dropout=0.5), seed=1)
    assert [h.train_loss for h in alone.history] == [h.train_loss for h in box["r"].history]


def test_early_stopping_stops_and_restores_best_weights(small) -> None:
    trainer = small_trainer(small, max_epochs=6, patience=2, min_delta=1.0)  # no epoch can beat epoch 1 by 1.0
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(record: EpochRecord, module: nn.Module) -> None:
        snapshots[record.epoch] = copy.deepcopy(module.state_dict())

    module = tiny_cnn()
    result = trainer.fit(module, seed=0, callback=snapshot)
    assert result.status == "ok" and result.stopped_by == "early_stopping"
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert result.best_metric == result.history[0].val_accuracy and result.best_loss == result.history[0].val_loss
    assert states_equal(module.state_dict(), snapshots[1])
    assert not states_equal(module.state_dict(), snapshots[3])


def test_best_epoch_weights_reproduce_best_metric(small) -> None:
    trainer = small_trainer(small, max_epochs=3, patience=None)
    module = tiny_cnn()
    result = trainer.fit(module, seed=1)
    best = result.history[result.best_epoch - 1]
    assert best.val_accuracy == max(h.val_accuracy for h in result.history)
    again = trainer.evaluate(module, small[1])
    assert again.accuracy == pytest.approx(result.best_metric) and again.loss == pytest.approx(result.best_loss)
    assert trainer.validate(module) == pytest.approx((result.best_loss, result.best_metric))


class NanAfter(nn.Module):
    """Tiny CNN whose logits become NaN from forward call `after` on (0 = always)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net, self.after, self.calls = tiny_cnn(), after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.training and self.calls > self.after else out


def test_nan_loss_fails_with_reason(small) -> None:
    result = small_trainer(small).fit(NanAfter(0), seed=0)
    assert result.status == "failed" and "non-finite training loss" in result.reason
    assert result.best_metric is None and result.epochs_run == 0 and result.stopped_by == "error"


def test_nan_in_later_epoch_keeps_best_epoch_weights(small) -> None:
    module = NanAfter(after=12)  # 600 // 64 = 9 steps per epoch: epoch 2 goes NaN
    result = small_trainer(small, max_epochs=3).fit(module, seed=0)
    assert result.status == "failed" and "epoch 2" in result.reason and result.best_epoch == 1
    assert all(torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point())


class Boom(nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.lin, self.error = nn.Linear(784, 10), error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def test_exception_is_captured_with_traceback(small) -> None:
    result = small_trainer(small).fit(Boom(KeyError("no such layer")), seed=0)
    assert result.status == "failed" and "Traceback" in result.reason and "no such layer" in result.reason


def test_out_of_memory_is_reported_as_oom(small) -> None:
    result = small_trainer(small).fit(Boom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")), seed=0)
    assert (result.status, result.reason) == ("failed", "oom")
    cpu_oom = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 GB")
    assert small_trainer(small).fit(Boom(cpu_oom), seed=0).reason == "oom"


def test_wrong_number_of_logits_is_a_clear_failure(small) -> None:
    result = small_trainer(small).fit(tiny_cnn(n_classes=7), seed=0)
    assert result.status == "failed" and "N×10 logits" in result.reason


def test_callback_can_stop_and_its_errors_are_captured(small) -> None:
    trainer = small_trainer(small, max_epochs=4)
    stopped = trainer.fit(tiny_cnn(), seed=0, callback=lambda rec, m: rec.epoch == 1)
    assert stopped.status == "ok" and stopped.stopped_by == "callback" and stopped.epochs_run == 1

    def broken(rec: EpochRecord, m: nn.Module) -> None:
        raise RuntimeError("logger crashed")

    failed = trainer.fit(tiny_cnn(), seed=0, callback=broken)
    assert failed.status == "failed" and "logger crashed" in failed.reason and failed.best_epoch == 1


def test_time_limit(small) -> None:
    result = small_trainer(small, time_limit=1e-4).fit(tiny_cnn(), seed=0)
    assert result.status == "timeout" and result.best_metric is None and "time limit" in result.reason


@pytest.mark.parametrize(
    "cfg",
    [
        {"amp": "bf16"},
        {"amp": "fp16"},  # exercises the GradScaler path (on CPU here; on CUDA in real runs)
        {"optimizer": "adam", "lr": 3e-3, "schedule": "constant", "channels_last": True},
        {"optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle", "cutout": 8, "label_smoothing": 0.1},
    ],
)
def test_precisions_optimizers_and_schedules_train(small, cfg: dict) -> None:
    result = small_trainer(small, max_epochs=1, **cfg).fit(tiny_cnn(), seed=0)
    assert result.status == "ok", result.reason
    assert result.best_metric > 0.15 and math.isfinite(result.history[0].train_loss)


def test_bf16_training_is_validated_and_tested_in_float32(small) -> None:
    """Autocast speeds up the training steps only: the recorded metrics are those of the float32 model a user
    exports, whatever the training precision."""
    trainer = small_trainer(small, max_epochs=1, amp="bf16")
    assert trainer.amp_dtype == torch.bfloat16
    module = tiny_cnn()
    result = trainer.fit(module, seed=0)  # the best (only) epoch's weights stay in `module`
    assert result.status == "ok", result.reason
    assert result.precision == "bfloat16"
    reference = evaluate(module, small[1], trainer.normalizer, device="cpu", amp="off")
    assert result.history[-1].val_accuracy == reference.accuracy == result.best_metric
    assert trainer.evaluate(module, small[1]).accuracy == reference.accuracy
    assert trainer.validate(module) == pytest.approx((reference.loss, reference.accuracy), rel=1e-6)


def test_epoch_data_is_augmented_raw_and_batches_are_channels_last(small) -> None:
    trainer = small_trainer(small, channels_last=True, cutout=4)
    perm = torch.arange(64)
    xs, ys = trainer._epoch_data(perm, torch.Generator().manual_seed(0))
    assert xs.dtype == torch.uint8 and xs.shape == (64, 1, 28, 28) and torch.equal(ys, small[0].y[:64])
    assert not torch.equal(xs, small[0].x[:64])  # crop, flip and cutout changed the images
    x = trainer._batch(xs[:8])
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    plain = small_trainer(small, crop_padding=0, flip=False)
    assert torch.equal(plain._epoch_data(perm, torch.Generator())[0], small[0].x[:64])


def test_resolve_amp_and_select_device(monkeypatch) -> None:
    cpu = torch.device("cpu")

    def cpu_with(amx_bf16: bool, init: object, amx_tile: bool | None = None) -> None:
        tile = amx_bf16 if amx_tile is None else amx_tile
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": amx_bf16, "amx_tile": tile},
                            raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: tile, raising=False)
        if init is None:
            monkeypatch.delattr(torch.cpu, "_init_amx", raising=False)
        else:
            monkeypatch.setattr(torch.cpu, "_init_amx", init, raising=False)
        cpu_has_bf16_matrix_units.cache_clear()  # the probe is cached per process: a new "CPU" needs a new probe

    def broken() -> bool:
        raise RuntimeError("no cpuinfo")

    # "auto" on a CPU: bf16 exactly where the CPU has AMX-BF16 and the kernel grants the tile state
    cpu_with(True, lambda: True)
    assert resolve_amp("auto", cpu) == torch.bfloat16 and resolve_amp("off", cpu) is None
    assert resolve_amp("cuda", cpu) is None  # the legacy "auto": autocast on CUDA only
    cpu_with(False, lambda: True)
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    cpu_with(True, lambda: False)  # the kernel refused the AMX state
    assert resolve_amp("auto", cpu) is None
    cpu_with(False, lambda: True, amx_tile=True)  # AMX tiles for int8 only: no bf16 matrix units
    assert resolve_amp("auto", cpu) is None
    cpu_with(True, None)  # no way to ask the kernel for the tile state
    assert resolve_amp("auto", cpu) is None
    cpu_with(True, lambda: True)
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # an older torch: AMX tiles are the evidence
    cpu_has_bf16_matrix_units.cache_clear()
    assert resolve_amp("auto", cpu) == torch.bfloat16
    # "cuda" (the old "auto", kept by older run directories): autocast on CUDA only, bf16 where supported
    gpu = torch.device("cuda")
    for bf16_ok, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda ok=bf16_ok: ok)
        assert resolve_amp("cuda", gpu) == dtype == resolve_amp("auto", gpu)
    cpu_with(True, broken)
    assert resolve_amp("auto", cpu) is None  # a probe that fails means float32, never a failed run
    monkeypatch.undo()
    cpu_has_bf16_matrix_units.cache_clear()
    assert resolve_amp("auto", torch.device("mps")) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16 and resolve_amp("fp16", cpu) == torch.float16
    assert select_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert select_device() == cpu or select_device().type == "mps"
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


def test_lr_schedules() -> None:
    cos = _lr_factors("cosine", 100)
    assert cos[0] == 1.0 and cos[-1] < 1e-3 and all(a >= b for a, b in itertools.pairwise(cos))
    one = _lr_factors("onecycle", 100)
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(one[30], abs=0.01) and one[-1] < 0.01
    assert set(_lr_factors("constant", 10)) == {1.0}


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)
    assert TrainConfig().base_lr == 0.05 and TrainConfig(optimizer="adam").base_lr == 1e-3


def test_evaluate_reports_predictions_and_confusion(small, demo) -> None:
    trainer = small_trainer(small, max_epochs=1)
    module = tiny_cnn()
    trainer.fit(module, seed=0)
    module.train()
    res = evaluate(module, demo.test, trainer.normalizer, batch_size=128, n_classes=10)
    assert module.training  # evaluate restores the mode it found
    assert res.predictions.shape == (500,) and res.accuracy == pytest.approx(np.mean(res.predictions == res.targets))
    cm = res.confusion_matrix()
    assert cm.sum() == 500 and (cm.sum(axis=1) == 50).all()
    assert np.allclose(res.per_class_accuracy(), np.diag(cm) / 50)
    # channels-last (the default, as in the trainer) is a memory layout only: the same predictions and loss
    same = tiny_cnn()
    same.load_state_dict(module.state_dict())
    contiguous = evaluate(same, demo.test, trainer.normalizer, batch_size=128, n_classes=10, channels_last=False)
    def conv_weight(m):
        return next(p for p in m.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)  # layouts differ

    assert conv_weight(module).is_contiguous(memory_format=torch.channels_last)  # the default went channels-last
    assert not conv_weight(same).is_contiguous(memory_format=torch.channels_last)  # channels_last=False did not
    assert np.array_equal(contiguous.predictions, res.predictions)
    assert contiguous.loss == pytest.approx(res.loss, rel=1e-4) and contiguous.accuracy == res.accuracy


def test_normalizer_uses_training_statistics_only(demo) -> None:
    trainer = Trainer.from_dataset(demo, TrainConfig(), device="cpu")
    x = trainer._x.double()
    assert torch.allclose(trainer.normalizer.mean.double(), x.mean(dim=(0, 2, 3)), rtol=1e-5)
    assert not trainer.augmentation.flip and trainer.augmentation.crop_padding == 2  # the demo's recipe
    arrays = from_arrays(demo.train.x[:100], demo.train.y[:100], name="mine")  # no recipe: no flip, H // 8
    assert Trainer.from_dataset(arrays, device="cpu").augmentation == Augmentation(3, False, 0)
    cfg = TrainConfig(flip=True, crop_padding=0, cutout=6)
    assert Trainer.from_dataset(arrays, cfg, device="cpu").augmentation == Augmentation(0, True, 6)
