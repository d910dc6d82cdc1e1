"""Regularized (aging) evolution (Real et al. 2019) with network morphisms as the mutations.

The population is the last ``population_size`` successful trials in the order they finished. Until it is
full, children of random members are suggested; then each suggestion mutates the best of ``sample_size``
members drawn at random (a tournament), and each new result pushes the oldest member out (aging), which
keeps the search from sticking to one lucky early model.

With several fidelities (``base.py``): a promotion takes its source's place in the population (the same
individual, trained longer: its age is unchanged, and one that has aged out stays out), and the tournament ranks
by rung, then metric.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import DEFAULT_NOISE, Limits
from morphnas.searcher.strategies.base import Observation, Strategy, Suggestion, rank_key


class AgingEvolution(Strategy):
    """Aging evolution: tournament of ``sample_size`` from a ``population_size`` FIFO, one-op mutations."""

    name = "evolution"

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE, population_size: int = 20, sample_size: int = 5) -> None:
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ValueError(f"evolution needs 1 <= sample_size <= population_size, got {sample_size} and "
                             f"{population_size}")
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        super().__init__(initial, seed, limits, noise)

    def _reset(self) -> None:
        super()._reset()
        self.population: deque[int] = deque()

    def on_observe(self, observation: Observation) -> None:
        if observation.ok and observation.continues is not None:
            source = observation.continues
            self.population = deque(observation.trial_id if t == source else t for t in self.population)
        elif observation.ok:
            self.population.append(observation.trial_id)
            while len(self.population) > self.population_size:
                self.population.popleft()

    def propose(self, trial_id: int) -> Suggestion | None:
        members = [self.observations[t] for t in self.population]
        if not members:
            return None
        if len(members) < self.population_size:
            order = self.rng.permutation(len(members)).tolist()
            reason = "filling the population"
        else:
            picks = self.rng.choice(len(members), size=self.sample_size, replace=False).tolist()
            order = sorted(picks, key=lambda k: rank_key(members[k]), reverse=True)
            reason = "tournament winner"
        for k in order:
            suggestion = self.mutate(members[k], self.rng, reason=reason)
            if suggestion is not None:
                return suggestion
        return None

    def extra_state(self) -> dict[str, Any]:
        return {"population": list(self.population)}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.population = deque(int(t) for t in extra.get("population", []))
