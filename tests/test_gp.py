"""The GP: interpolation, finite predictions, agreement with GPyTorch's own posterior, jitter, fantasies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from searcher_helpers import random_architectures, toy_metric

from morphnas.searcher import ArchitectureCache, ArchitectureGP, GPError
from morphnas.searcher.gp import robust_cholesky


@pytest.fixture(scope="module")
def data():
    cache = ArchitectureCache()
    graphs = random_architectures(50, seed=5)
    idx = np.array([cache.add(g) for g in graphs])
    y = np.array([toy_metric(g) for g in graphs])
    return cache, idx, y


@pytest.mark.parametrize("kernel", ["bourgain", "exp-distance", "wl"])
def test_gp_interpolates_with_small_noise(data, kernel):
    cache, idx, y = data
    _, first = np.unique(idx, return_index=True)
    train = np.sort(first)[:30]
    gp = ArchitectureGP(cache, kernel, noise=1e-6, fit_steps=15).fit(idx[train], y[train])
    mean, std = gp.predict(idx[train])
    assert np.abs(mean - y[train]).max() < 1e-2 * (y.max() - y.min())
    assert std.max() < 0.05 * y.std()


@pytest.mark.parametrize("kernel", ["bourgain", "exp-distance", "wl"])
def test_predictions_at_new_points_are_finite_and_match_gpytorch(data, kernel):
    cache, idx, y = data
    gp = ArchitectureGP(cache, kernel, fit_steps=15).fit(idx[:35], y[:35])
    mean, std = gp.predict(idx[35:])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)
    ref_mean, ref_std = gp.gpytorch_predict(idx[35:])
    np.testing.assert_allclose(mean, ref_mean, atol=1e-6 * max(1.0, np.abs(y).max()))
    np.testing.assert_allclose(std, ref_std, atol=1e-5)
    scratch = cache.set_scratch([cache.graph(int(i)) for i in idx[35:38]])
    np.testing.assert_allclose(gp.predict(scratch)[0], mean[:3], atol=1e-9)
    cache.clear_scratch()


def test_repeated_observations_are_kept(data):
    cache, idx, y = data
    x = np.concatenate([idx[:10], idx[:10]])
    gp = ArchitectureGP(cache, noise=1e-9, fit_steps=5).fit(x, np.concatenate([y[:10], y[:10] + 0.01]))
    assert gp.n_train == 20  # nothing dropped: the duplicate rows are handled by jitter, not removal
    assert np.all(np.isfinite(gp.predict(idx[10:])[0]))


def test_fit_is_deterministic(data):
    cache, idx, y = data
    a = ArchitectureGP(cache, fit_steps=10).fit(idx[:20], y[:20]).predict(idx[20:])
    b = ArchitectureGP(cache, fit_steps=10).fit(idx[:20], y[:20]).predict(idx[20:])
    np.testing.assert_array_equal(a[0], b[0])


def test_conditioning_on_fantasies_keeps_hyperparameters(data):
    cache, idx, y = data
    gp = ArchitectureGP(cache, fit_steps=10).fit(idx[:20], y[:20])
    before = dict(gp.hyperparameters)
    fantasy = gp.predict(idx[20:23])[0]
    gp.fit(idx[:23], np.concatenate([y[:20], fantasy]), optimize=False)
    assert gp.hyperparameters == before
    assert gp.predict(idx[20:23])[1].max() < 0.5 * gp.hyperparameters["outputscale"] ** 0.5 * y[:20].std()


def test_bad_inputs_fail_clearly(data):
    cache, idx, _ = data
    gp = ArchitectureGP(cache)
    with pytest.raises(GPError, match="not fitted"):
        gp.predict(idx[:2])
    with pytest.raises(GPError, match="no observations"):
        gp.fit([], [])
    with pytest.raises(GPError, match="non-finite"):
        gp.fit(idx[:3], [0.1, np.nan, 0.2])
    with pytest.raises(ValueError, match="targets"):
        gp.fit(idx[:3], [0.1])
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        ArchitectureGP(cache, "nope")


def test_jitter_and_retry_never_drops_data():
    factor, jitter = robust_cholesky(np.ones((4, 4)))  # rank one: a tiny jitter, silently
    assert factor.shape == (4, 4) and 0 < jitter <= 1e-6
    with pytest.warns(RuntimeWarning, match="jitter"):  # slightly indefinite: a visible jitter, every row kept
        factor, jitter = robust_cholesky(np.diag([1.0, 1.0, -5e-6]))
    assert factor.shape == (3, 3) and jitter > 1e-6
    with pytest.raises(GPError, match="not positive definite"):
        robust_cholesky(np.diag([1.0, -1.0]))


def test_gp_threads_setting_is_restored(data):
    cache, idx, y = data
    before = torch.get_num_threads()
    ArchitectureGP(cache, fit_steps=3).fit(idx[:10], y[:10]).predict(idx[10:12])
    assert torch.get_num_threads() == before


def test_noise_std_is_the_fitted_noise_in_metric_units(data):
    cache, idx, y = data
    gp = ArchitectureGP(cache, fit_steps=10).fit(idx[:30], y[:30])
    assert gp.noise_std == pytest.approx(np.sqrt(gp.hyperparameters["noise"]) * y[:30].std())
    fixed = ArchitectureGP(cache, noise=0.04, fit_steps=10)
    assert fixed.noise_std == 0.0  # nothing fitted yet
    scaled = [fixed.fit(idx[:30], k * y[:30]).noise_std for k in (1.0, 10.0)]
    assert scaled[1] == pytest.approx(10 * scaled[0]) and scaled[0] == pytest.approx(0.2 * y[:30].std())
    flat = ArchitectureGP(cache, fit_steps=5).fit(idx[:10], np.full(10, 0.1))
    assert flat.noise_std == 0.0  # every target equal: no spread to fit a noise to, so no margin
