"""Random search: architectures drawn at random from the generators' families, each trained from scratch.

The sampler covers the Auto-Keras CNN, ResNet, DenseNet and MLP generators over ranges of depth and width
(MLP only for flat inputs). It is the baseline that uses neither morphisms nor weight inheritance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from morphnas.graph import generators
from morphnas.graph.graph import Graph, GraphError
from morphnas.graph.layers import Shape
from morphnas.graph.morphisms import DEFAULT_NOISE, LimitError, Limits
from morphnas.searcher.strategies.base import Strategy, StrategyExhausted, Suggestion

FAMILIES = ("cnn", "resnet", "densenet", "mlp")


class ArchitectureSampler:
    """Random architectures of the generators' families for one input shape and class count."""

    def __init__(self, input_shape: Shape, n_classes: int, families: Sequence[str] | None = None,
                 limits: Limits | None = None) -> None:
        self.input_shape = tuple(input_shape)
        self.n_classes = int(n_classes)
        image = len(self.input_shape) == 3
        default = FAMILIES if image else ("mlp",)
        self.families = tuple(families) if families is not None else default
        for fam in self.families:
            if fam not in FAMILIES:
                raise ValueError(f"unknown architecture family {fam!r}; valid families: {', '.join(FAMILIES)}")
            if fam != "mlp" and not image:
                raise ValueError(f"family {fam!r} needs (C, H, W) inputs, got {self.input_shape}")
        self.limits = limits

    def _draw(self, family: str, rng: np.random.Generator) -> tuple[Graph, dict[str, Any]]:
        def pick(options: Sequence[Any]) -> Any:
            return options[int(rng.integers(len(options)))]

        shape, k = self.input_shape, self.n_classes
        if family == "cnn":
            args = {"n_blocks": pick([1, 2, 3, 4]), "filters": pick([16, 32, 64, 128]), "kernel_size": pick([3, 5]),
                    "dense_units": pick([32, 64, 128, 256]), "dropout": pick([0.0, 0.25, 0.5])}
            return generators.cnn(shape, k, seed=None, **args), args
        if family == "resnet":
            stages, blocks = pick([2, 3]), pick([1, 2, 3])
            args = {"depth": 2 + 2 * stages * blocks, "width": pick([8, 16, 32]), "n_stages": stages}
            return generators.resnet(shape, k, seed=None, **args), args
        if family == "densenet":
            args = {"growth": pick([8, 12, 16]),
                    "block_layers": [pick([2, 3, 4, 6]) for _ in range(pick([2, 3]))]}
            return generators.densenet(shape, k, seed=None, **args), args
        args = {"hidden": [pick([64, 128, 256, 512]) for _ in range(pick([1, 2, 3]))],
                "dropout": pick([0.0, 0.25, 0.5])}
        return generators.mlp(shape, k, seed=None, **args), args

    def sample(self, rng: np.random.Generator, tries: int = 50) -> tuple[Graph, dict[str, Any]]:
        """A random architecture (within the limits) and the generator arguments that built it."""
        for _ in range(tries):
            family = self.families[int(rng.integers(len(self.families)))]
            try:
                graph, args = self._draw(family, rng)
                if self.limits is not None:
                    self.limits.check(graph)
            except (GraphError, LimitError):
                continue
            return graph, {"family": family, **args}
        raise GraphError(f"no architecture within {self.limits} in {tries} random draws")


class RandomSearch(Strategy):
    """Random architectures from the generators' space, trained from scratch (no morphisms, no inheritance)."""

    name = "random"
    draws = 100  # draws per suggestion before the space counts as exhausted

    def __init__(self, initial: Sequence[Graph], seed: int = 0, limits: Limits | None = None,
                 noise: float = DEFAULT_NOISE, families: Sequence[str] | None = None) -> None:
        super().__init__(initial, seed, limits, noise)
        self.families = families

    def propose(self, trial_id: int) -> Suggestion | None:
        """An unseen random architecture; StrategyExhausted when none fits the limits or 100 draws were all
        seen (results do not change the space, so waiting cannot help)."""
        first = self.initial[0]
        sampler = ArchitectureSampler(first.input_shape, first.output_shape[0], self.families, self.limits)
        for _ in range(self.draws):
            try:
                graph, args = sampler.sample(self.rng)
            except GraphError as exc:
                raise StrategyExhausted(f"the random strategy cannot draw an architecture: {exc}") from exc
            if not self.is_seen(graph):
                return Suggestion(graph, info={"strategy": self.name, "reason": "random", **args})
        raise StrategyExhausted(f"the random strategy's space looks exhausted: {self.draws} random draws were all "
                                "architectures already suggested or observed")
