"""The tree-structured annealing: unseen children of trained parents whose ops replay exactly."""

from __future__ import annotations

import numpy as np
import pytest
from searcher_helpers import BASES, morph_chain, toy_metric

from morphnas.graph.morphisms import Limits, replay
from morphnas.searcher import ArchitectureCache, ArchitectureGP, Root, TreeAnnealer, make_acquisition

FAST = {"t_min": 0.05, "n_children": 4, "n_attempts": 8}


@pytest.fixture(scope="module")
def setup():
    cache = ArchitectureCache()
    base = BASES["cnn"]()
    trained = [base] + [morph_chain(base, k, seed) for k, seed in ((1, 1), (2, 2), (1, 3), (3, 4))]
    roots = [Root(tid, g, cache.add(g)) for tid, g in enumerate(trained, start=10)]
    y = np.array([toy_metric(g) for g in trained])
    gp = ArchitectureGP(cache, fit_steps=10).fit([r.index for r in roots], y)
    pending = morph_chain(base, 1, 99)
    cache.add(pending)
    acq = make_acquisition("ucb")

    def score(idx):
        post = gp.posterior(idx)
        return acq(post, y.max(), None), post

    return cache, roots, score, pending


def test_annealing_returns_an_unseen_child_that_replays(setup):
    cache, roots, score, pending = setup
    n_members = len(cache)
    proposal = TreeAnnealer(**FAST).optimize(cache, roots, score, np.random.default_rng(0))
    assert proposal is not None
    by_id = {r.trial_id: r for r in roots}
    assert proposal.parent in by_id and len(proposal.ops) >= 1
    key = proposal.graph.canonical_hash()
    assert key not in cache and key != pending.canonical_hash()
    assert len(cache) == n_members and cache.n_scratch == 0  # candidates never became members
    rebuilt = replay(by_id[proposal.parent].graph, proposal.ops)
    assert rebuilt.canonical_hash() == key
    assert rebuilt.to_dict()["layers"] == proposal.graph.to_dict()["layers"]
    assert np.isfinite(proposal.score) and proposal.stats["scored"] > 0


def test_annealing_is_deterministic_for_a_generator(setup):
    cache, roots, score, _ = setup
    a = TreeAnnealer(**FAST).optimize(cache, roots, score, np.random.default_rng(5))
    b = TreeAnnealer(**FAST).optimize(cache, roots, score, np.random.default_rng(5))
    assert a.parent == b.parent and a.ops == b.ops and a.score == b.score


def test_annealing_respects_limits_and_reports_nothing_when_stuck(setup):
    cache, roots, score, _ = setup
    # every morphism adds a layer or parameters: with both capped at the smallest root's, none applies
    tight = Limits(max_layers=min(r.graph.n_layers() for r in roots), max_params=min(r.graph.n_params() for r in roots))
    assert TreeAnnealer(**FAST, limits=tight).optimize(cache, roots, score, np.random.default_rng(0)) is None
    assert TreeAnnealer(**FAST).optimize(cache, [], score, np.random.default_rng(0)) is None


def test_proposals_stay_within_max_ops(setup):
    cache, roots, score, _ = setup
    for max_ops in (1, 2):
        proposal = TreeAnnealer(**FAST, max_ops=max_ops).optimize(cache, roots, score, np.random.default_rng(1))
        assert 1 <= len(proposal.ops) <= max_ops


def test_annealer_rejects_bad_schedules():
    for bad in ({"cooling": 1.0}, {"t_min": 2.0}, {"n_children": 9, "n_attempts": 8}, {"max_ops": 0},
                {"scale": 0.0}):
        with pytest.raises(ValueError):
            TreeAnnealer(**bad)
