"""Strategies: one interface, deterministic per seed, pending never re-suggested, exact resume, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_searcher_helpers import BASES, toy_metric

from morphnas.graph.morphisms import Limits, replay
from morphnas.searcher import STRATEGIES, Observation, Strategy, Suggestion, make_strategy, register_strategy

FAST_BO = {"fit_steps": 5, "annealing": {"t_min": 0.3, "n_children": 3, "n_attempts": 6}}
OPTIONS = {"bayesian": FAST_BO, "bo-scratch": FAST_BO, "evolution": {"population_size": 4, "sample_size": 2}}
NAMES = ["bayesian", "bo-scratch", "random", "random-walk", "hill-climbing", "evolution", "bfs"]


def _make(name, seed=0):
    return make_strategy(name, [BASES["cnn"](), BASES["resnet"]()], seed=seed, **OPTIONS.get(name, {}))


def _run(strategy, n, start=0, fail=()):
    """Drive ``strategy`` sequentially for ``n`` trials; returns the suggestions' (hash, parent, ops)."""
    trail = []
    for tid in range(start, start + n):
        s = strategy.suggest(tid)
        assert s is not None
        trail.append((s.architecture.canonical_hash(), s.parent, s.ops))
        if tid in fail:
            strategy.observe(Observation(tid, s.architecture, None, "failed"))
        else:
            strategy.observe(Observation(tid, s.architecture, toy_metric(s.architecture)))
    return trail


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bo-scratch"])  # bo-scratch: bayesian's code
def test_same_seed_same_suggestions_and_exact_resume(name):
    a, b = _make(name, seed=3), _make(name, seed=3)
    first = _run(a, 4, fail={3})
    assert _run(b, 4, fail={3}) == first
    hashes = [h for h, _, _ in first]
    assert len(set(hashes)) == len(hashes)  # never the same architecture twice
    state = json.loads(json.dumps(a.state_dict()))  # plain JSON
    c = _make(name, seed=3)
    c.load_state_dict(state)
    assert _run(c, 2, start=4) == _run(a, 2, start=4)


@pytest.mark.parametrize("name", NAMES)
def test_suggestions_are_consistent(name):
    strategy = _make(name, seed=1)
    _run(strategy, 4)
    s = strategy.suggest(4)
    assert isinstance(s, Suggestion) and s.info["strategy"] == name
    if s.parent is None:
        assert not s.ops and not s.inherit_weights
    else:
        parent = strategy.observations[s.parent]
        assert parent.ok
        assert replay(parent.architecture, s.ops).canonical_hash() == s.architecture.canonical_hash()
        assert s.inherit_weights == (name != "bo-scratch")


@pytest.mark.parametrize("name", ["bayesian", "random-walk", "evolution", "hill-climbing", "bfs"])
def test_pending_trials_are_never_suggested_again(name):
    strategy = _make(name, seed=2)
    _run(strategy, 2)
    pending = [strategy.suggest(t) for t in range(2, 5)]  # three in flight at once
    keys = [p.architecture.canonical_hash() for p in pending]
    assert len(set(keys)) == 3
    assert all(strategy.is_seen(k) for k in keys) and set(strategy.pending) == {2, 3, 4}
    state = strategy.state_dict()
    assert [p["trial_id"] for p in state["pending"]] == [2, 3, 4]
    resumed = _make(name, seed=2)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert resumed.suggest(5).architecture.canonical_hash() == strategy.suggest(5).architecture.canonical_hash()


def test_bayesian_waits_without_results_and_skips_failures():
    strategy = _make("bayesian")
    assert strategy.suggest(0).info["reason"] == "initial"
    assert strategy.suggest(1).info["reason"] == "initial"
    assert strategy.suggest(2) is None  # nothing trained yet: wait for a result
    s = strategy.suggest  # the failed one never enters the GP but stays seen
    strategy.observe(Observation(0, BASES["cnn"](), None, "failed"))
    strategy.observe(Observation(1, BASES["resnet"](), 0.5))
    nxt = s(2)
    assert nxt.parent == 1 and nxt.info["reason"] == "acquisition"
    assert strategy.gp is not None and strategy.gp.n_train == 1
    assert np.isfinite(nxt.info["acquisition"])


def test_fantasies_enter_the_gp():
    for fantasy in ("believer", "liar-min"):
        strategy = make_strategy("bayesian", [BASES["cnn"]()], fantasy=fantasy, **FAST_BO)
        _run(strategy, 2)
        strategy.suggest(2)
        strategy.suggest(3)
        assert strategy.gp.n_train == 3  # two trained + one pending fantasy


def test_evolution_ages_out_the_oldest():
    strategy = _make("evolution")
    _run(strategy, 7)
    assert list(strategy.population) == [3, 4, 5, 6]


def test_limits_are_respected_and_kept_in_state():
    strategy = _make("random-walk")
    _run(strategy, 2)
    strategy.limits = Limits(max_params=BASES["resnet"]().n_params() + 400)
    trail = _run(strategy, 3, start=2)
    assert all(strategy.observations[t].architecture.n_params() <= strategy.limits.max_params
               for t in range(2, 5) if strategy.observations[t].architecture.canonical_hash() in
               {h for h, _, _ in trail})
    assert strategy.state_dict()["limits"]["max_params"] == strategy.limits.max_params


def test_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="bayesian, bfs, bo-scratch, evolution, hill-climbing, random, random-walk"):
        make_strategy("greedy", [BASES["cnn"]()])
    with pytest.raises(ValueError, match="valid names: ei, pi, thompson, ucb"):
        make_strategy("bayesian", [BASES["cnn"]()], acquisition="lcb")
    with pytest.raises(ValueError, match="valid names: bourgain, exp-distance, wl"):
        make_strategy("bayesian", [BASES["cnn"]()], kernel="matern")
    with pytest.raises(ValueError, match="believer"):
        make_strategy("bayesian", [BASES["cnn"]()], fantasy="optimist")
    with pytest.raises(ValueError, match="initial architecture"):
        make_strategy("random", [])
    strategy = _make("random")
    strategy.suggest(0)
    with pytest.raises(ValueError, match="already suggested"):
        strategy.suggest(0)
    with pytest.raises(ValueError, match="status='failed'"):
        Observation(1, BASES["cnn"](), float("nan"))
    with pytest.raises(ValueError, match="cannot load"):
        _make("bfs").load_state_dict(strategy.state_dict())


def test_register_a_strategy():
    class Repeat(Strategy):
        name = "first-only"

        def _propose(self, trial_id):
            return None

    register_strategy("first-only", Repeat)
    try:
        s = make_strategy("first-only", [BASES["mlp"]()])
        assert s.suggest(0).info["reason"] == "initial" and s.suggest(1) is None
    finally:
        STRATEGIES.unregister("first-only")


def test_warm_started_gp_fits_resume_exactly():
    a = _make("bayesian", seed=4)
    a.cold_fits_until = 1  # warm starts from the second fit on
    _run(a, 4)
    assert a.state_dict()["extra"]["warm"]  # the last fit's hyperparameters travel with the state
    b = _make("bayesian", seed=4)
    b.cold_fits_until = 1
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert _run(b, 2, start=4) == _run(a, 2, start=4)
    assert b.gp.hyperparameters == a.gp.hyperparameters
