"""Suite statistics against fixtures: ranks, exact Wilcoxon p-values, Holm, effect sizes, medians and IQRs."""

from __future__ import annotations

import numpy as np
import pytest

from morphnas.engine import stats


def test_dominating_strategy_ranks_first_with_the_exact_wilcoxon_p():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=8)
    scores = np.stack([base + 0.05, base, base - rng.uniform(0.01, 0.1, size=8)], axis=1)  # A > B > C per seed
    assert stats.mean_ranks(scores).tolist() == [1.0, 2.0, 3.0]
    t = stats.wilcoxon_paired(scores[:, 0], scores[:, 1])
    assert t.testable and t.wins == 8 and t.losses == 0
    assert t.statistic == 0.0
    assert t.p == pytest.approx(2 / 2**8)  # all 8 differences positive: exact two-sided p = 2 / 2^n
    assert t.effect == 1.0


def test_ties_share_ranks():
    assert stats.ranks([[1.0, 1.0, 0.5]]).tolist() == [[1.5, 1.5, 3.0]]


def test_too_few_pairs_give_no_p_value():
    assert stats.min_pairs_for(0.05) == 6
    assert stats.min_exact_wilcoxon_p(5) == 0.0625
    t = stats.wilcoxon_paired([1, 2, 3, 4, 5.0], [0, 0, 0, 0, 0.0])
    assert not t.testable and t.p is None and t.effect == 1.0
    t = stats.wilcoxon_paired([1, 2, 3, 4, 5, 6, 0.0], [0, 0, 0, 0, 0, 0, 0.0])  # a zero pair: 6 non-zero remain
    assert t.testable and t.n_nonzero == 6 and t.p == pytest.approx(0.03125)


def test_wilcoxon_mixed_signs_and_rank_biserial():
    a = np.array([0.9, 0.8, 0.7, 0.75, 0.6, 0.65])
    b = np.array([0.85, 0.82, 0.6, 0.70, 0.61, 0.55])  # d = .05 -.02 .1 .05 -.01 .1
    t = stats.wilcoxon_paired(a, b)
    # |d| ranks: .01->1, .02->2, .05,.05->3.5,3.5, .1,.1->5.5,5.5; R+ = 3.5+3.5+5.5+5.5 = 18, R- = 3
    assert t.effect == pytest.approx((18 - 3) / 21)
    assert t.statistic == pytest.approx(3.0)
    assert 0.05 < t.p < 0.2


def test_holm_against_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    assert stats.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(stats.holm([np.nan, 0.2])[0]) and stats.holm([np.nan, 0.2])[1] == pytest.approx(0.2)
    assert stats.holm([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_holm_tests_fill_adjusted_p_only_where_a_test_ran():
    ok = stats.wilcoxon_paired(np.arange(1, 9.0), np.zeros(8))
    few = stats.wilcoxon_paired([1.0, 2.0], [0.0, 0.0])
    stats.holm_tests([ok, few])
    assert ok.p_holm == pytest.approx(ok.p) and few.p_holm is None  # a family of one test


def test_median_iqr_and_mean_std_equal_numpy():
    x = np.random.default_rng(1).normal(size=(7, 5))
    med, q25, q75 = stats.median_iqr(x)
    assert np.array_equal(med, np.median(x, axis=0))
    assert np.array_equal(q25, np.percentile(x, 25, axis=0)) and np.array_equal(q75, np.percentile(x, 75, axis=0))
    mean, std = stats.mean_std(x)
    assert np.allclose(mean, x.mean(0)) and np.allclose(std, x.std(0, ddof=1))


def test_normalised_auc_and_step_function():
    assert stats.normalised_auc([0.5, 0.6, 0.6, 0.9], 4) == pytest.approx(0.65)
    assert stats.normalised_auc([np.nan, 0.8], 4) == pytest.approx((0 + 0.8 * 3) / 4)  # padded with the last value
    got = stats.step_at([1.0, 3.0], [0.5, 0.7], [0.0, 1.0, 2.0, 3.0, 9.0])
    assert np.isnan(got[0]) and got[1:].tolist() == [0.5, 0.5, 0.7, 0.7]
