"""Search strategies behind one interface (``suggest`` / ``observe``), selectable by name.

``bayesian`` (the method, BO in a trust region of morphisms), ``autokeras`` (the paper's configuration: UCB and
tree annealing), ``bo-scratch`` (the paper's BO without weight inheritance), ``random`` (random architectures
from the generators, from scratch), ``random-walk``, ``hill-climbing`` (NASH), ``evolution`` (aging
evolution) and ``bfs`` (morphism tree without BO). ``register_strategy`` adds one: a ``Strategy`` subclass or
any factory ``(initial, seed=..., **options) -> Strategy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from morphnas.graph.graph import Graph
from morphnas.searcher.registry import Registry
from morphnas.searcher.strategies.base import Observation, Strategy, StrategyExhausted, Suggestion, rank_key
from morphnas.searcher.strategies.baselines import BreadthFirst, HillClimbing, RandomWalk
from morphnas.searcher.strategies.bayesian import AutoKerasSearch, BOScratch, GPStrategy
from morphnas.searcher.strategies.evolution import AgingEvolution
from morphnas.searcher.strategies.random_search import ArchitectureSampler, RandomSearch
from morphnas.searcher.strategies.trust_region import BayesianSearch

STRATEGIES: Registry[Strategy] = Registry("strategy")
for _cls in (BayesianSearch, AutoKerasSearch, BOScratch, RandomSearch, RandomWalk, HillClimbing, AgingEvolution,
             BreadthFirst):
    STRATEGIES.register(_cls.name, _cls)


def register_strategy(name: str, factory: Callable[..., Strategy], *, overwrite: bool = False) -> None:
    """Make ``factory(initial, seed=..., **options) -> Strategy`` selectable as ``name``."""
    STRATEGIES.register(name, factory, overwrite=overwrite)


def make_strategy(name: str, initial: Sequence[Graph], seed: int = 0, **options: Any) -> Strategy:
    """The strategy registered as ``name``; ValueError listing the valid names if unknown."""
    strategy = STRATEGIES.create(name, initial, seed=seed, **options)
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy factory {name!r} returned {type(strategy).__name__}, not a Strategy")
    return strategy


__all__ = [
    "STRATEGIES",
    "AgingEvolution",
    "ArchitectureSampler",
    "AutoKerasSearch",
    "BOScratch",
    "BayesianSearch",
    "BreadthFirst",
    "GPStrategy",
    "HillClimbing",
    "Observation",
    "RandomSearch",
    "RandomWalk",
    "Strategy",
    "StrategyExhausted",
    "Suggestion",
    "make_strategy",
    "rank_key",
    "register_strategy",
]
