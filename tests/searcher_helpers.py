"""Shared helpers for the searcher tests (no tests here): tiny architectures, random morph chains, a toy metric."""

from __future__ import annotations

import numpy as np

from morphnas.graph import Graph, generators
from morphnas.graph.morphisms import random_morph

BASES = {
    "cnn": lambda: generators.cnn((3, 8, 8), 4, n_blocks=2, filters=4, dense_units=8, seed=None),
    "resnet": lambda: generators.resnet((3, 8, 8), 4, depth=8, width=4, seed=None),
    "densenet": lambda: generators.densenet((3, 8, 8), 4, growth=2, block_layers=(2, 2), seed=None),
    "mlp": lambda: generators.mlp((1, 4, 4), 4, hidden=(8, 8), seed=None),
}


def morph_chain(graph: Graph, n: int, seed: int) -> Graph:
    """``graph`` after ``n`` random morphisms drawn from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        graph, _ = random_morph(graph, rng)
    return graph


def random_architectures(n: int, seed: int = 0, max_ops: int = 6) -> list[Graph]:
    """``n`` architectures: random morph chains (0..max_ops ops) from random tiny bases."""
    rng = np.random.default_rng(seed)
    names = sorted(BASES)
    out = []
    for _ in range(n):
        g = BASES[names[int(rng.integers(len(names)))]]()
        for _ in range(int(rng.integers(0, max_ops + 1))):
            g, _ = random_morph(g, rng)
        out.append(g)
    return out


def toy_metric(graph: Graph) -> float:
    """A cheap deterministic stand-in for accuracy, for driving strategies in tests."""
    return float(-abs(graph.depth() - 6) * 0.05 - abs(np.log2(graph.n_params()) - 10) * 0.03
                 + 0.05 * min(graph.n_skips(), 2))
