"""Acquisition functions: formulas, ordering, seeded Thompson draws, registry by name."""

from __future__ import annotations

import numpy as np
import pytest

from morphnas.searcher import ACQUISITIONS, Posterior, make_acquisition, register_acquisition


@pytest.fixture
def post():
    return Posterior(np.array([0.5, 0.6, 0.6, 0.4]), np.array([0.1, 0.0, 0.2, 0.3]))


def test_ucb_default_beta(post):
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(make_acquisition("ucb")(post, 0.6, rng), post.mean + 2.576 * post.std)
    np.testing.assert_allclose(make_acquisition("ucb", beta=0.0)(post, 0.6, rng), post.mean)


def test_ei_and_pi_prefer_uncertainty_at_equal_mean(post):
    rng = np.random.default_rng(0)
    ei = make_acquisition("ei")(post, 0.6, rng)
    pi = make_acquisition("pi")(post, 0.55, rng)
    assert ei[2] > ei[1] >= 0 and np.all(ei >= 0)
    assert 0 <= pi.min() and pi.max() <= 1 and pi[1] == 1.0
    # EI against a Monte Carlo estimate
    z = np.random.default_rng(1).standard_normal(200_000)
    mc = np.maximum(post.mean[3] + post.std[3] * z - 0.6, 0).mean()
    assert ei[3] == pytest.approx(mc, rel=0.02)


def test_thompson_is_seeded_and_joint():
    cov = np.array([[1.0, 0.999], [0.999, 1.0]]) * 0.01
    post = Posterior(np.zeros(2), np.sqrt(np.diag(cov)), cov)
    ts = make_acquisition("thompson")
    assert ts.needs_covariance
    a = ts(post, 0.0, np.random.default_rng(4))
    b = ts(post, 0.0, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    draws = post.sample(np.random.default_rng(0), 2000)
    assert np.corrcoef(draws.T)[0, 1] > 0.99


def test_unknown_and_custom_acquisitions():
    with pytest.raises(ValueError, match="ei, pi, thompson, ucb"):
        make_acquisition("lcb")
    with pytest.raises(ValueError, match="beta"):
        make_acquisition("ucb", beta=-1)

    class Mean:
        needs_covariance = False

        def __call__(self, posterior, best, rng):
            return posterior.mean

    register_acquisition("mean-test", Mean)
    try:
        assert make_acquisition("mean-test")(Posterior(np.ones(2), np.ones(2)), 0.0, None).sum() == 2
    finally:
        ACQUISITIONS.unregister("mean-test")
    assert "mean-test" not in ACQUISITIONS and "ucb" in ACQUISITIONS
    with pytest.raises(ValueError, match="unknown acquisition 'mean-test'; valid names: ei, pi, thompson, ucb"):
        ACQUISITIONS.unregister("mean-test")
