"""Synthetic objectives: a fake "validation accuracy" of an architecture computed in microseconds, with no
training, for strategy research (``benchmarks/bench_search_quality.py``, benchmark suites with
``objective = "..."``). Selectable by name; ``register_objective`` adds one.

An objective is built from a seed (which draws its hidden optimum and its noise stream) and is called on an
architecture: ``objective(graph)`` is the noisy value a strategy observes, ``objective.clean(graph)`` the
noise-free value a benchmark judges by. Higher is better, at most about 0.95. Every objective here scores
architectures through views of the graph that are NOT the edit distance's (order-free statistics, parameter
counts, paths through the DAG), so a kernel is not rewarded for being its own objective. Three shapes:

- ``stats-target``: a hidden target reached by a random chain of morphisms of the start; the value falls as
  order-free statistics (depth, log parameters, skips of each kind, log width, 5x5 convolutions, batch norms)
  move away from the target's. A rugged, many-dimensional bowl near the start.
- ``far-optimum``: a smooth surface over log parameters, depth and skips whose optimum is far larger than the
  start (16-64 times the parameters, 8-14 more layers): rewards strategies that can travel, not just polish.
- ``skip-pattern``: only one pattern of skip connections pays (a kind, add or concat, over a band of convolution
  counts), other skips cost a little, and size matters little: a needle-like, structural objective.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from morphnas.graph import Graph, generators
from morphnas.graph.descriptors import skip_spans
from morphnas.graph.morphisms import random_morph
from morphnas.searcher.registry import Registry

START_SHAPE = (3, 16, 16)
START_CLASSES = 10


def start_architecture() -> Graph:
    """The small CNN the synthetic objectives are defined around (2 blocks, 16 filters, 16x16 RGB input)."""
    return generators.cnn(START_SHAPE, START_CLASSES, n_blocks=2, filters=16, dense_units=32, seed=None)


class Objective(ABC):
    """A seeded synthetic objective: ``clean(graph)`` is its noise-free value, calling it adds N(0, noise²)."""

    name = ""
    input_shape: tuple[int, ...] = START_SHAPE
    n_classes: int = START_CLASSES

    def __init__(self, seed: int, noise: float = 0.005) -> None:
        self.seed = int(seed)
        self.noise = float(noise)
        self.rng = np.random.default_rng([self.seed, 54321])

    @abstractmethod
    def clean(self, graph: Graph) -> float:
        """The noise-free value of ``graph`` (higher is better)."""

    def __call__(self, graph: Graph) -> float:
        return float(self.clean(graph) + self.rng.normal(0.0, self.noise))

    def noisy(self, graph: Graph, key: int) -> float:
        """The noisy value of ``graph`` with its noise drawn from a stream keyed by ``key`` (a trial id) instead of
        the objective's running stream: the same trial gets the same value whatever ran before it, so a search
        resumed after a kill observes what an uninterrupted one would have."""
        rng = np.random.default_rng([self.seed, 54321, int(key)])
        return float(self.clean(graph) + rng.normal(0.0, self.noise))

    def start(self) -> Graph:
        """The architecture a search on this objective starts from."""
        return start_architecture()


# ---------------------------------------------------------------------------------------------- stats-target
def summary_stats(g: Graph) -> np.ndarray:
    """Order-free statistics: depth, log2 parameters, Add and Concat merges, log2 widest layer, 5x5 convs, BNs."""
    kinds = [layer.kind for layer in g.layers.values()]
    k5 = sum(1 for layer in g.layers.values() if layer.kind == "conv2d" and layer.kernel_size == 5)
    return np.array([g.depth(), np.log2(g.n_params()), kinds.count("add"), kinds.count("concat"),
                     np.log2(max(1, g.max_width())), k5, kinds.count("batchnorm")], dtype=np.float64)


class StatsTarget(Objective):
    """``0.95 - 0.5·(1 - exp(-Σ|s - s*|/scale / 4))``: closeness to a hidden target's summary statistics."""

    name = "stats-target"
    scales = np.array([3.0, 1.5, 1.0, 1.0, 1.0, 2.0, 3.0])

    def __init__(self, seed: int, noise: float = 0.005, target_ops: int = 12) -> None:
        super().__init__(seed, noise)
        rng = np.random.default_rng([self.seed, 12345])
        target = self.start()
        for _ in range(int(target_ops)):
            target, _ = random_morph(target, rng)
        self.target = summary_stats(target)

    def clean(self, graph: Graph) -> float:
        gap = float(np.sum(np.abs(summary_stats(graph) - self.target) / self.scales))
        return 0.95 - 0.5 * (1.0 - np.exp(-gap / 4.0))


# ---------------------------------------------------------------------------------------------- far-optimum
class FarOptimum(Objective):
    """A smooth bowl over (log2 parameters, depth, skips) whose optimum is far larger than the start."""

    name = "far-optimum"

    def __init__(self, seed: int, noise: float = 0.005) -> None:
        super().__init__(seed, noise)
        rng = np.random.default_rng([self.seed, 777])
        s = self.start()
        self.optimum = np.array([np.log2(s.n_params()) + rng.uniform(4.0, 6.0), s.depth() + rng.uniform(8.0, 14.0),
                                 rng.uniform(2.0, 5.0)])
        self.widths = np.array([2.0, 6.0, 2.0])

    def clean(self, graph: Graph) -> float:
        x = np.array([np.log2(graph.n_params()), graph.depth(), graph.n_skips()], dtype=np.float64)
        z = (x - self.optimum) / self.widths
        return float(0.95 - 0.45 * (1.0 - np.exp(-0.5 * float(z @ z))))


# ---------------------------------------------------------------------------------------------- skip-pattern
class SkipPattern(Objective):
    """Only skips of one kind spanning a band of convolutions pay (up to 3 of them); other skips cost a little."""

    name = "skip-pattern"

    def __init__(self, seed: int, noise: float = 0.005) -> None:
        super().__init__(seed, noise)
        rng = np.random.default_rng([self.seed, 4242])
        self.kind = "add" if rng.random() < 0.5 else "concat"
        self.low = int(rng.integers(1, 3))  # the paying band: low..low+1 convolutions bypassed
        self.log_params = np.log2(self.start().n_params()) + rng.uniform(0.5, 2.0)

    def terms(self, graph: Graph) -> dict[str, float]:
        """The parts of the value: paying and costly skips, the size term, and log2 parameters over the hidden
        size (``benchmarks/skip_pattern_anatomy.py`` reads which one a strategy loses)."""
        good = bad = 0
        for kind, span in skip_spans(graph):
            if kind == self.kind and self.low <= span <= self.low + 1:
                good += 1
            else:
                bad += 1
        over = float(np.log2(graph.n_params()) - self.log_params)
        return {"good": good, "bad": bad, "size": float(np.exp(-0.5 * (over / 2.0) ** 2)), "over": over}

    def clean(self, graph: Graph) -> float:
        t = self.terms(graph)
        return float(0.55 + 0.11 * min(t["good"], 3) - 0.02 * min(t["bad"], 5) + 0.05 * t["size"])


OBJECTIVES: Registry[Objective] = Registry("objective")
OBJECTIVES.register("stats-target", StatsTarget)
OBJECTIVES.register("far-optimum", FarOptimum)
OBJECTIVES.register("skip-pattern", SkipPattern)


def register_objective(name: str, factory: Callable[..., Objective], *, overwrite: bool = False) -> None:
    """Make ``factory(seed, **options) -> Objective`` selectable as ``name``."""
    OBJECTIVES.register(name, factory, overwrite=overwrite)


def make_objective(name: str, seed: int, **options: Any) -> Objective:
    """The objective registered as ``name`` with ``seed``; ValueError listing the valid names if unknown."""
    objective = OBJECTIVES.create(name, seed, **options)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective factory {name!r} returned {type(objective).__name__}, not an Objective")
    return objective


__all__ = ["OBJECTIVES", "FarOptimum", "Objective", "SkipPattern", "StatsTarget", "make_objective",
           "register_objective", "skip_spans", "start_architecture", "summary_stats"]
