"""The final recipe's options in the trainer: warm-up and cosine to zero, lr scaling, weight EMA (what is validated
is what is kept and returned), torch.compile with its fallback, throughput, and the named recipe."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from morphnas.trainer import ImageSplit, TrainConfig, Trainer, load_dataset
from morphnas.trainer.recipe import FINAL_RECIPES
from morphnas.trainer.trainer import _WeightEMA, lr_factors


def tiny_cnn(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """A small BN CNN for 1×28×28 inputs, initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, 10),
        )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny nets on a shared 2-core CPU are faster so."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def small() -> tuple[ImageSplit, ImageSplit]:
    """400 training and 200 validation images of the demo set."""
    train, val = load_dataset("demo").split_validation(0.1, seed=0)
    return train.subset(np.arange(400)), val.subset(np.arange(200))


def fit(small, module: nn.Module | None = None, seed: int = 0, callback=None, **cfg):
    trainer = Trainer(*small, TrainConfig(**({"max_epochs": 2, "batch_size": 50, "lr": 0.1} | cfg)), device="cpu")
    module = module if module is not None else tiny_cnn()
    return trainer, module, trainer.fit(module, seed=seed, callback=callback)


def curves(result) -> list[tuple[float, ...]]:
    return [(h.train_loss, h.train_accuracy, h.val_loss, h.val_accuracy) for h in result.history]


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ schedule
def test_warmup_then_cosine_starts_low_peaks_at_one_and_ends_at_zero() -> None:
    f = lr_factors("cosine", 100, warmup_steps=10)
    assert len(f) == 100 and f[0] == pytest.approx(1 / 11) and f[0] < 0.1
    assert all(a < b for a, b in itertools.pairwise(f[:11]))  # a linear ramp up to the peak
    assert f[10] == 1.0 == max(f) and f[-1] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))
    plain = lr_factors("cosine", 50)
    assert plain[0] == 1.0 and plain[-1] == 0.0 and plain[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 25 / 49)))
    const = lr_factors("constant", 20, warmup_steps=4)
    assert const[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and set(const[4:]) == {1.0}
    with pytest.raises(ValueError, match="own warm-up"):
        lr_factors("onecycle", 20, warmup_steps=2)
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_factors("cosine", 20, warmup_steps=20)


def test_fit_follows_the_warmup_and_ends_at_lr_zero(small) -> None:
    seen: list[float] = []
    _, _, result = fit(small, max_epochs=3, warmup_epochs=1, callback=lambda rec, m: seen.append(rec.lr))
    assert result.ok and seen == [h.lr for h in result.history]
    # 8 steps per epoch: the warm-up's last step is at 8/9 of the peak (0.1), reached at the first step of epoch 2
    assert seen[0] == pytest.approx(0.1 * 8 / 9) and seen[-1] == 0.0


def test_lr_scaling_from_batch_128() -> None:
    assert TrainConfig(batch_size=256, lr_scaling="linear").base_lr == pytest.approx(0.1)
    assert TrainConfig(batch_size=512, lr_scaling="sqrt", lr=0.1).base_lr == pytest.approx(0.2)
    assert TrainConfig(batch_size=512).base_lr == 0.05  # "none": lr as given


def test_config_rejects_bad_recipe_values() -> None:
    for bad, match in [({"warmup_epochs": 15}, "warmup_epochs"), ({"warmup_epochs": -1}, "warmup_epochs"),
                       ({"warmup_epochs": 1, "schedule": "onecycle"}, "own warm-up"),
                       ({"ema_decay": 1.0}, "ema_decay"), ({"lr_scaling": "cubic"}, "lr_scaling"),
                       ({"compile_backend": ""}, "compile_backend")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


# ------------------------------------------------------------------------------------------ EMA
def test_ema_with_decay_zero_is_the_plain_fit(small) -> None:
    _, plain_module, plain = fit(small, module=tiny_cnn(dropout=0.2))
    _, ema_module, ema = fit(small, module=tiny_cnn(dropout=0.2), ema_decay=0.0)
    assert curves(ema) == curves(plain) and ema.best_epoch == plain.best_epoch
    assert states_equal(ema_module.state_dict(), plain_module.state_dict())


def test_ema_validates_keeps_and_returns_the_average(small) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(rec, module: nn.Module) -> None:
        snapshots[rec.epoch] = {k: v.clone() for k, v in module.state_dict().items()}

    _, raw_module, raw = fit(small, max_epochs=3)
    trainer, module, result = fit(small, max_epochs=3, ema_decay=0.9, callback=snapshot)
    assert result.ok and [h.train_loss for h in result.history] == [h.train_loss for h in raw.history]
    assert [h.val_loss for h in result.history] != [h.val_loss for h in raw.history]  # the average is validated
    assert states_equal(module.state_dict(), snapshots[result.best_epoch])  # ... kept, and returned
    assert not states_equal(module.state_dict(), raw_module.state_dict())
    assert trainer.validate(module) == pytest.approx((result.best_loss, result.best_metric))
    # integer buffers follow the raw module: 8 steps per epoch up to the best epoch
    assert int(module.state_dict()["1.num_batches_tracked"]) == 8 * result.best_epoch
    again = fit(small, max_epochs=3, ema_decay=0.9)[2]  # same seed on CPU: identical
    assert curves(again) == curves(result)


def test_weight_ema_averages_parameters_and_batchnorm_statistics() -> None:
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = _WeightEMA(module, decay=0.5)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(1.0)
            module[1].running_mean.add_(2.0)
            module[1].num_batches_tracked.add_(1)
        ema.update()
    # decay ramps as min(0.5, (1 + t) / (10 + t)) = 0.1, 0.1818.., 0.25 for t = 0, 1, 2
    expected = start["0.weight"]
    for t, d in enumerate((1 / 10, 2 / 11, 3 / 12)):
        expected = d * expected + (1 - d) * (start["0.weight"] + t + 1)
    avg = ema.module.state_dict()
    assert torch.allclose(avg["0.weight"], expected)
    mean = start["1.running_mean"]
    for t, d in enumerate((1 / 10, 2 / 11, 3 / 12)):
        mean = d * mean + (1 - d) * (start["1.running_mean"] + 2 * (t + 1))
    assert torch.allclose(avg["1.running_mean"], mean) and int(avg["1.num_batches_tracked"]) == 3
    assert not any(p.requires_grad for p in ema.module.parameters())


# ------------------------------------------------------------------------------------------ compile
dynamo = pytest.importorskip("torch._dynamo")
needs_dynamo = pytest.mark.skipif(not torch._dynamo.is_dynamo_supported(),
                                  reason="torch.compile is not supported on this Python")


@needs_dynamo
def test_compiled_fit_matches_the_eager_one(small) -> None:
    # aot_eager traces forward and backward as torch.compile does, without the minutes of C++ compiling that
    # inductor takes for each new net on a small CPU (benchmarks/bench_epoch_speed.py measures inductor)
    _, _, eager = fit(small)
    _, _, compiled = fit(small, compile=True, compile_backend="aot_eager")
    assert compiled.ok and compiled.compile_error == "" and compiled.compile_seconds > 0
    assert np.allclose(curves(compiled), curves(eager), atol=1e-4)


@needs_dynamo
def test_a_failing_compile_falls_back_to_eager_and_the_trial_trains(small) -> None:
    from torch._dynamo import register_backend

    def broken(gm, example_inputs):
        raise RuntimeError("no C compiler here")

    register_backend(broken, name="test_broken_backend")
    _, plain_module, plain = fit(small)
    with pytest.warns(RuntimeWarning, match="torch.compile .*failed, training without it"):
        _, module, result = fit(small, compile=True, compile_backend="test_broken_backend")
    assert result.ok and "no C compiler here" in result.compile_error
    assert curves(result) == curves(plain)  # BatchNorm statistics of the failed attempt were undone
    assert states_equal(module.state_dict(), plain_module.state_dict())


def test_an_unknown_backend_falls_back_too(small) -> None:
    with pytest.warns(RuntimeWarning, match="no_such_backend"):
        _, _, result = fit(small, max_epochs=1, compile=True, compile_backend="no_such_backend")
    assert result.ok and "no_such_backend" in result.compile_error


# ------------------------------------------------------------------------------------------ throughput, recipe
def test_throughput_is_training_images_over_training_seconds(small) -> None:
    _, _, result = fit(small)
    assert [h.train_images for h in result.history] == [400, 400]
    assert result.train_images_per_second == pytest.approx(800 / sum(h.train_seconds for h in result.history))


def test_final_recipe_is_one_named_config_per_dataset() -> None:
    cfg = TrainConfig.final_recipe("fashion-mnist", max_epochs=12)
    assert (cfg.max_epochs, cfg.schedule, cfg.patience) == (12, "cosine", None)
    assert cfg.label_smoothing > 0 and cfg.ema_decay is not None and cfg.warmup_epochs > 0
    assert TrainConfig.final_recipe("demo") == TrainConfig.final_recipe("fashion-mnist")
    assert TrainConfig.final_recipe("cifar10").cutout == FINAL_RECIPES["cifar10"]["cutout"] > 0
    assert TrainConfig.final_recipe("/data/mine.npz") == TrainConfig(**FINAL_RECIPES["default"])
    assert TrainConfig.final_recipe("cifar10", ema_decay=None).ema_decay is None
    search = TrainConfig()  # trials keep the plain defaults: every recipe option off
    assert (search.ema_decay, search.warmup_epochs, search.label_smoothing, search.compile) == (None, 0.0, 0.0, False)
