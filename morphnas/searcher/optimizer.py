"""The acquisition optimizer: Auto-Keras' tree-structured simulated annealing over network morphisms.

A priority queue starts with every trained architecture. Each step pops the best node; with probability
``exp(min((value − best_child)/(T·scale), 1))`` it is expanded into up to ``n_children`` one-op children (from
up to ``n_attempts`` random morphisms). Children already seen — within ``seen_tolerance`` edit distance of a
member of the cache (trained or pending) or with the descriptor of a child met before (distance 0, which
equal canonical hashes imply) — are skipped; the rest are scored by the acquisition and pushed. ``T`` starts
at ``t_start`` and is multiplied by ``cooling`` after each pop; the search stops below ``t_min``, at
``time_limit`` or when the queue is empty. The best-scoring child wins: its trained ancestor and the chain
of ops from it.

Deliberate changes from the original: roots are ranked by their acquisition value like every other node
(the original ranked them by their metric, another scale, so with many trained models it expanded only roots).
Value differences are divided by ``scale``: 1.0 by default, i.e. the paper's temperatures in the metric's own
units, which suit accuracy-like metrics in [0, 1]; ``scale=None`` uses the spread of the roots' acquisition
values instead (scale-free and greedier: ~50 candidates scored instead of ~150; on the synthetic benchmark
worse for UCB, better for EI and Thompson — docs/benchmarks.md, Searcher). A proposal is at most
``max_ops`` (default 3) morphisms away from its trained parent. Without it, UCB's preference for the least
known regions made chains of 30+ ops the rule on real searches (a 1.6k-parameter CNN proposed as a 1.7M one),
which inherit little of the parent's training and cost far more to train. With ``time_limit=None`` (the default)
the result depends only on the inputs and the generator, never on machine speed.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import DEFAULT_NOISE, Limits, MorphismError, Op, random_morph
from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.distance import Descriptor
from morphnas.searcher.gp import Posterior

Scorer = Callable[[np.ndarray], tuple[np.ndarray, Posterior]]


@dataclass(frozen=True)
class Root:
    """A trained architecture the search may start from: its trial id, graph and cache index."""

    trial_id: int
    graph: Graph
    index: int


@dataclass(frozen=True)
class Proposal:
    """The optimizer's answer: apply ``ops`` to trial ``parent`` to get ``graph`` (score and statistics)."""

    parent: int
    ops: tuple[Op, ...]
    graph: Graph
    score: float
    mean: float
    std: float
    stats: dict[str, object] = field(default_factory=dict)


@dataclass(order=True)
class _Node:
    priority: float
    order: int
    root: int = field(compare=False)
    ops: tuple[Op, ...] = field(compare=False)
    graph: Graph = field(compare=False)
    desc: Descriptor = field(compare=False)


class TreeAnnealer:
    """Tree-structured simulated annealing over morphisms (constants of the paper by default)."""

    def __init__(self, t_start: float = 1.0, cooling: float = 0.9, t_min: float = 1e-4, n_children: int = 8,
                 n_attempts: int = 16, time_limit: float | None = None, seen_tolerance: float = 1e-5,
                 noise: float = DEFAULT_NOISE, limits: Limits | None = None, max_ops: int | None = 3,
                 scale: float | None = 1.0) -> None:
        if not 0 < cooling < 1:
            raise ValueError(f"cooling must be in (0, 1), got {cooling}")
        if not 0 < t_min < t_start:
            raise ValueError(f"need 0 < t_min < t_start, got t_min={t_min}, t_start={t_start}")
        if scale is not None and not scale > 0:
            raise ValueError(f"scale must be > 0 or None, got {scale}")
        if n_children < 1 or n_attempts < n_children:
            raise ValueError(f"need 1 <= n_children <= n_attempts, got {n_children} and {n_attempts}")
        self.t_start, self.cooling, self.t_min = float(t_start), float(cooling), float(t_min)
        self.n_children, self.n_attempts = int(n_children), int(n_attempts)
        self.time_limit = time_limit
        self.seen_tolerance = float(seen_tolerance)
        self.noise = float(noise)
        self.limits = limits
        self.scale = scale
        if max_ops is not None and max_ops < 1:
            raise ValueError(f"max_ops must be >= 1 or None, got {max_ops}")
        self.max_ops = max_ops

    def _children(self, cache: ArchitectureCache, graph: Graph, desc: Descriptor, rng: np.random.Generator
                  ) -> list[tuple[Graph, Op, Descriptor]]:
        """Up to ``n_children`` one-op children with distinct descriptors from ``n_attempts`` random morphisms
        (drawn like ``morphisms.neighbours``; told apart by descriptor, which the distance needs anyway, instead
        of canonical hashes, which cost as much as the morphism itself)."""
        found: list[tuple[Graph, Op, Descriptor]] = []
        sigs = {desc.signature}
        for _ in range(self.n_attempts):
            if len(found) >= self.n_children:
                break
            try:
                child, op = random_morph(graph, rng, noise=self.noise, limits=self.limits, max_attempts=1)
            except MorphismError:
                continue
            child_desc = cache.describe(child)
            if child_desc.signature not in sigs:
                sigs.add(child_desc.signature)
                found.append((child, op, child_desc))
        return found

    def optimize(self, cache: ArchitectureCache, roots: Sequence[Root], score: Scorer,
                 rng: np.random.Generator) -> Proposal | None:
        """Best unseen descendant of ``roots`` under ``score`` (see module doc), or None if none was found.

        ``score(indices)`` returns acquisition values and the posterior at cache indices; every member of
        ``cache`` counts as seen. Draws only from ``rng``.
        """
        start = time.perf_counter()
        if not roots:
            return None
        root_values, _ = score(np.array([r.index for r in roots], dtype=np.int64))
        if self.scale is not None:
            scale = float(self.scale)
        else:
            spread = float(np.std(root_values))
            scale = spread if spread > 1e-12 else max(1e-12, float(np.mean(np.abs(root_values))) or 1.0)
        heap: list[_Node] = []
        counter = 0
        for r, v in zip(roots, root_values, strict=True):
            heapq.heappush(heap, _Node(-float(v), counter, r.trial_id, (), r.graph, cache.descriptor(r.index)))
            counter += 1
        seen: set[tuple] = set()
        best: tuple[float, _Node, float, float] | None = None
        t, pops, scored, skipped, stop = self.t_start, 0, 0, 0, "temperature"
        while True:
            if not heap:
                stop = "queue empty"
                break
            if t <= self.t_min:
                break
            if self.time_limit is not None and time.perf_counter() - start > self.time_limit:
                stop = "time limit"
                break
            node = heapq.heappop(heap)
            pops += 1
            value = -node.priority
            opt = -math.inf if best is None else best[0]
            accept = math.exp(min((value - opt) / (t * scale), 1.0))
            if accept >= rng.random() and (self.max_ops is None or len(node.ops) < self.max_ops):
                fresh, descs = [], []
                for child, op, desc in self._children(cache, node.graph, node.desc, rng):
                    if desc.signature in seen or cache.has_signature(desc):
                        skipped += 1
                        continue
                    seen.add(desc.signature)
                    fresh.append((child, op))
                    descs.append(desc)
                if fresh:
                    idx = cache.set_scratch([c for c, _ in fresh], descs, parent=node.desc)
                    near = cache.min_distance_to_members(idx) < self.seen_tolerance
                    skipped += int(near.sum())
                    keep = np.flatnonzero(~near)
                    if keep.size:
                        values, post = score(idx[keep])
                        scored += keep.size
                        for k, v, mu, sd in zip(keep.tolist(), values.tolist(), post.mean.tolist(),
                                                post.std.tolist(), strict=True):
                            child, op = fresh[k]
                            entry = _Node(-float(v), counter, node.root, (*node.ops, op), child, descs[k])
                            counter += 1
                            heapq.heappush(heap, entry)
                            if best is None or v > best[0]:
                                best = (float(v), entry, float(mu), float(sd))
            t *= self.cooling
        cache.clear_scratch()
        if best is None:
            return None
        value, winner, mu, sd = best
        stats = {"pops": pops, "scored": scored, "skipped_seen": skipped, "seconds": time.perf_counter() - start,
                 "depth": len(winner.ops), "stopped_by": stop}
        return Proposal(winner.root, winner.ops, winner.graph, value, mu, sd, stats)
