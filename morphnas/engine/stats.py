"""Statistics of a benchmark suite: pure NumPy/SciPy functions, no I/O, no morphnas types.

Conventions: a *curve* is the best-so-far value after each trial (higher is better); a matrix of curves has
one row per seed. Every function states what it assumes; the report (``suite_report``) only calls them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


def median_iqr(values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, 25th percentile, 75th percentile) along ``axis``, NumPy's default (linear) interpolation.

    Assumes nothing about the distribution; the interquartile band is a description of the seeds, not a
    confidence interval.
    """
    a = np.asarray(values, dtype=np.float64)
    return np.median(a, axis=axis), np.percentile(a, 25, axis=axis), np.percentile(a, 75, axis=axis)


def mean_std(values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sample standard deviation with ddof = 1) along ``axis``; the std is NaN for a single value."""
    a = np.asarray(values, dtype=np.float64)
    n = a.shape[axis] if a.ndim else 1
    std = np.std(a, axis=axis, ddof=1) if n > 1 else np.full(np.mean(a, axis=axis).shape, np.nan)
    return np.mean(a, axis=axis), std


def ranks(scores: Any) -> np.ndarray:
    """Rank of each strategy (column) within each seed (row): 1 = best (highest), ties share their mean rank.

    Assumes the columns were run under the same conditions per row (same seed, same budget): ranks compare
    within a row only.
    """
    a = np.asarray(scores, dtype=np.float64)
    return np.vstack([sps.rankdata(-row, method="average") for row in np.atleast_2d(a)])


def mean_ranks(scores: Any) -> np.ndarray:
    """Mean over seeds (rows) of ``ranks``: one number per strategy, 1 is best."""
    return ranks(scores).mean(axis=0)


def normalised_auc(curve: Any, budget: int) -> float:
    """Area under a best-so-far curve over trials 1..``budget``, divided by ``budget``: the mean of the curve's
    first ``budget`` values (a step function, one step per trial). A curve shorter than the budget (a strategy
    that stopped early) keeps its last value; undefined values (no successful trial yet, NaN) count as 0.

    In the units of the metric: 1.0 would be a perfect score from the first trial on. It rewards finding good
    architectures early, which the end-of-budget value does not see.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    c = np.asarray(curve, dtype=np.float64)[:budget]
    if len(c) == 0:
        return 0.0
    c = np.concatenate([c, np.full(budget - len(c), c[-1])])
    return float(np.nan_to_num(c, nan=0.0).mean())


def min_exact_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can give with ``n`` non-zero paired
    differences: 2 / 2^n (every difference of the same sign). It is 0.0625 for n = 5 and 0.03125 for n = 6, so
    at least 6 pairs are needed to ever reach p < 0.05."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0**n)


def min_pairs_for(alpha: float = ALPHA) -> int:
    """The fewest non-zero pairs with which an exact two-sided Wilcoxon test can reach p < ``alpha``."""
    n = 1
    while min_exact_wilcoxon_p(n) >= alpha:
        n += 1
    return n


def rank_biserial(a: Any, b: Any) -> float:
    """Matched-pairs rank-biserial correlation of ``a - b`` (Kerby 2014): (R+ - R-) / (R+ + R-), with R± the sums
    of the ranks of |d| over the positive and negative non-zero differences (zeros dropped, ties averaged).
    +1: ``a`` better on every pair, -1: ``b`` better on every pair, 0: no tendency (or no non-zero difference)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    r = sps.rankdata(np.abs(d))
    plus, minus = r[d > 0].sum(), r[d < 0].sum()
    return float((plus - minus) / (plus + minus))


@dataclass
class PairedTest:
    """One two-sided exact Wilcoxon signed-rank test of ``a`` against ``b`` over paired seeds."""

    n: int  # pairs
    n_nonzero: int  # pairs with a non-zero difference (the test's sample size)
    wins: int  # pairs where a > b
    losses: int
    ties: int
    statistic: float | None  # min(R+, R-) as scipy reports it; None when not computed
    p: float | None  # None when the test cannot reach p < alpha with this many pairs, or has no pair
    effect: float  # matched-pairs rank-biserial correlation, + favours a
    testable: bool  # whether enough non-zero pairs exist for p < alpha to be possible
    p_holm: float | None = None  # filled by ``holm`` over a family of tests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilcoxon_paired(a: Any, b: Any, alpha: float = ALPHA) -> PairedTest:
    """Exact two-sided Wilcoxon signed-rank test of paired samples ``a`` and ``b`` (same seeds, same order).

    Assumptions: the pairs are independent (one per seed); the differences are symmetric about their median
    under the null hypothesis (no systematic difference); the values are at least interval-scaled. Zero
    differences are dropped (Wilcoxon's convention, ``zero_method="wilcox"``) and the exact null distribution is
    used (``method="exact"``), which assumes no ties among |d| — with ties it is approximate. With fewer
    non-zero pairs than ``min_pairs_for(alpha)`` (6 at alpha = 0.05) no outcome could be significant, so no p is
    reported (``p`` None, ``testable`` False) rather than a p-value that cannot mean anything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D of the same length, got {a.shape} and {b.shape}")
    d = a - b
    nonzero = int(np.count_nonzero(d))
    test = PairedTest(n=len(d), n_nonzero=nonzero, wins=int(np.sum(d > 0)), losses=int(np.sum(d < 0)),
                      ties=int(np.sum(d == 0)), statistic=None, p=None, effect=rank_biserial(a, b),
                      testable=nonzero >= min_pairs_for(alpha))
    if test.testable:
        res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided", method="exact")
        test.statistic, test.p = float(res.statistic), float(res.pvalue)
    return test


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate under any
    dependence between the tests): sort ascending, p_(i) · (m - i + 1) for i = 1..m, made monotone by a running
    maximum and capped at 1, returned in the input order. NaN entries (tests not run) stay NaN and do not count
    in m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def holm_tests(tests: list[PairedTest]) -> list[PairedTest]:
    """Fill ``p_holm`` of a family of tests (those with a p-value) with Holm's adjustment; returns them."""
    adjusted = holm([math.nan if t.p is None else t.p for t in tests])
    for t, q in zip(tests, adjusted, strict=True):
        t.p_holm = None if math.isnan(q) else float(q)
    return tests


def step_at(times: Any, values: Any, grid: Any) -> np.ndarray:
    """The right-continuous step function through (``times``, ``values``) sampled at ``grid``: the last value
    at or before each grid point, NaN before the first (a best-so-far curve against compute seconds)."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(grid, dtype=np.float64)
    i = np.searchsorted(t, g, side="right") - 1
    out = np.where(i >= 0, v[np.clip(i, 0, max(len(v) - 1, 0))] if len(v) else np.nan, np.nan)
    return out.astype(np.float64)


__all__ = ["ALPHA", "PairedTest", "holm", "holm_tests", "mean_ranks", "mean_std", "median_iqr",
           "min_exact_wilcoxon_p", "min_pairs_for", "normalised_auc", "rank_biserial", "ranks", "step_at",
           "wilcoxon_paired"]
