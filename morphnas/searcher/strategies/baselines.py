"""Morphism baselines without a model: random walk, hill climbing (NASH / AutoKeras 1.x) and BFS.

- ``random-walk``: a random morphism of a uniformly random trained model.
- ``hill-climbing``: a random chain of ``n_ops`` morphisms of the current best model (Elsken et al.'s NASH,
  and AutoKeras 1.x's greedy search: evaluate the initial architectures, then always mutate the best).
- ``bfs``: the paper's ablation without BO: trained models in the order they finish, each expanded into up to
  ``n_children`` distinct one-op children, suggested breadth first.

With several fidelities (``base.py``): random walk draws among ``trained_models`` (each lineage's latest model),
hill climbing ranks them by rung, then metric, and BFS swaps a queued model for its promotion when one arrives
(same architecture, longer-trained weights for the children; a model already expanded is not expanded again).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import DEFAULT_NOISE, Limits, MorphismError, Op, apply, neighbours
from morphnas.searcher.strategies.base import Observation, Strategy, Suggestion


class RandomWalk(Strategy):
    """A random morphism of a random trained model, weights inherited."""

    name = "random-walk"

    def propose(self, trial_id: int) -> Suggestion | None:
        trained = self.trained_models
        if not trained:
            return None
        order = self.rng.permutation(len(trained))
        for k in order.tolist():
            suggestion = self.mutate(trained[k], self.rng, reason="random walk")
            if suggestion is not None:
                return suggestion
        return None


class HillClimbing(Strategy):
    """Always a random ``n_ops``-morphism child of the current best model (falling back to the next best)."""

    name = "hill-climbing"

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE, n_ops: int = 1) -> None:
        super().__init__(initial, seed, limits, noise)
        if n_ops < 1:
            raise ValueError(f"hill-climbing needs n_ops >= 1, got {n_ops}")
        self.n_ops = int(n_ops)

    def propose(self, trial_id: int) -> Suggestion | None:
        return self.child_of_best(self.rng, self.n_ops)


class BreadthFirst(Strategy):
    """Breadth-first expansion of the morphism tree, no model (the paper's BFS ablation)."""

    name = "bfs"

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE, n_children: int = 8) -> None:
        super().__init__(initial, seed, limits, noise)
        if n_children < 1:
            raise ValueError(f"bfs needs n_children >= 1, got {n_children}")
        self.n_children = int(n_children)

    def _reset(self) -> None:
        super()._reset()
        self._queue: deque[int] = deque()
        self._frontier: dict[int, list[Op]] = {}

    def on_observe(self, observation: Observation) -> None:
        if not observation.ok:
            return
        source = observation.continues
        if source is None:
            self._queue.append(observation.trial_id)
        elif source in self._queue:  # a promotion: its children inherit the longer-trained weights
            self._queue = deque(observation.trial_id if t == source else t for t in self._queue)
            if source in self._frontier:
                self._frontier[observation.trial_id] = self._frontier.pop(source)

    def propose(self, trial_id: int) -> Suggestion | None:
        while self._queue:
            head = self._queue[0]
            parent = self.observations[head]
            if head not in self._frontier:
                children = neighbours(parent.architecture, self.n_children, self.rng, noise=self.noise,
                                      limits=self.limits, max_attempts=2 * self.n_children)
                self._frontier[head] = [op for _, op in children]
            ops = self._frontier[head]
            while ops:
                op = ops.pop(0)
                try:
                    child = apply(parent.architecture, op, limits=self.limits)
                except MorphismError:
                    continue  # the limits shrank since the op was drawn
                if not self.is_seen(child):
                    return Suggestion(child, head, (op,), True, {"strategy": self.name, "reason": "bfs"})
            self._queue.popleft()
            del self._frontier[head]
        return None

    def extra_state(self) -> dict[str, Any]:
        return {"queue": list(self._queue),
                "frontier": [[t, [op.to_dict() for op in ops]] for t, ops in self._frontier.items()]}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self._queue = deque(int(t) for t in extra.get("queue", []))
        self._frontier = {int(t): [Op.from_dict(o) for o in ops] for t, ops in extra.get("frontier", [])}
