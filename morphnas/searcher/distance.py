"""Edit distance between architectures: ``d = D_layers + λ·D_skip``, the input of the searcher's kernels.

An architecture is described by its **main chain** and its **skip connections**:

- The main chain is the input-to-output path with the most *sequence layers* (ties: the most layers of any
  kind, then the first input of each merge), found by dynamic programming over the DAG. On a plain CNN it is
  the whole network; on a ResNet it runs through the residual branches; on a DenseNet through the new
  features of each dense layer.
- The layer sequence holds the chain's layers whose kind is in ``SEQUENCE_KINDS`` (the kinds whose layer
  spec sets ``in_distance``): conv2d and dense (the paper's choice) and also batchnorm, relu, the pools and
  dropout, so that every morphism (a deeper BN or ReLU included) moves an architecture by a non-zero
  distance; otherwise such a child would look "already seen" to the acquisition optimizer, and the GP could
  not tell it from its parent. Flatten (shape only) and the merges (encoded as skips) are left out.
- A skip connection is every extra input of a merge layer (``merge`` flag: Add, Concat): ``(start, length, kind)`` where
  ``start`` is the chain position the extra input leaves from (the closest chain tensor it descends from) and
  ``start + length`` the chain position it joins (the merge's own position, or, for a merge off the chain,
  the first chain tensor it reaches). A position counts the sequence layers from the input. Layers on the
  skip branch itself (pools, the 1x1 convolutions of ``add_skip``, a ResNet projection) are not counted.

``D_layers`` is a Levenshtein alignment with insertion and deletion cost 1 and substitution cost 1 between
kinds, else the mean of ``|x−y|/max(x,y)`` over the size attributes in ``SIZE_ATTRIBUTES`` (each spec's
``size_attributes``; dense width included, which the original ignored). ``D_skip`` is an optimal matching
(``linear_sum_assignment``) with pairwise cost ``(|u_a−u_b| + |l_a−l_b|) / (max(u_a,u_b) + max(l_a,l_b))`` (1
across kinds) plus 1 per unmatched skip. The functions here are the reference implementation for one pair;
``morphnas.searcher.cache.ArchitectureCache`` computes the same numbers in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.graph.graph import Graph
from morphnas.graph.layers import KindSet, KindTable

# Live views of the layer registry (a kind registered later is included): the flags live on the layer specs.
SEQUENCE_KINDS: AbstractSet[str] = KindSet("in_distance")
SIZE_ATTRIBUTES: KindTable = KindTable("size_attributes")
MERGE_KINDS: AbstractSet[str] = KindSet("merge")

LayerToken = tuple[str, tuple[float, ...]]
Skip = tuple[int, int, str]


@dataclass(frozen=True)
class Descriptor:
    """What the edit distance sees of an architecture: the chain's layer tokens, its skips, its hash."""

    layers: tuple[LayerToken, ...]
    skips: tuple[Skip, ...]
    key: str

    @property
    def signature(self) -> tuple[tuple[LayerToken, ...], tuple[Skip, ...]]:
        """What the distance sees, hashable: equal signatures are at distance 0."""
        return self.layers, self.skips

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (for inspection and logs)."""
        return {"layers": [[k, list(a)] for k, a in self.layers], "skips": [list(s) for s in self.skips],
                "key": self.key}


def layer_token(graph: Graph, lid: int) -> LayerToken:
    """``(kind, size attributes)`` of layer ``lid``: the unit of the Levenshtein alignment."""
    layer = graph.layers[lid]
    return layer.kind, tuple(float(getattr(layer, name)) for name in layer.size_attributes)


def main_chain(graph: Graph, kinds: AbstractSet[str] = SEQUENCE_KINDS) -> list[int]:
    """Layer ids of the main chain, input to output: the path with the most ``kinds`` layers (see module doc)."""
    if graph.output_node is None:
        raise ValueError("the graph has no output: call set_output(node) first")
    score: dict[int, tuple[int, int]] = {graph.input_node: (0, 0)}
    back: dict[int, int] = {}
    for lid in graph.topological_layers():
        ins = graph.layer_inputs[lid]
        best = max(ins, key=lambda n: score[n])  # max() keeps the first of equal inputs: deterministic
        inc = 1 if graph.layers[lid].kind in kinds else 0
        score[graph.layer_output[lid]] = (score[best][0] + inc, score[best][1] + 1)
        back[graph.layer_output[lid]] = best
    chain: list[int] = []
    node = graph.output_node
    while node != graph.input_node:
        lid = graph.producer(node)
        assert lid is not None
        chain.append(lid)
        node = back[node]
    chain.reverse()
    return chain


def describe(graph: Graph, kinds: AbstractSet[str] = SEQUENCE_KINDS, key: str | None = None) -> Descriptor:
    """The descriptor of ``graph``: main-chain layer tokens and skip connections (see module doc).

    ``key``: the graph's canonical hash when the caller already has it (saves recomputing it; ``""`` when the
    caller does not need it).
    """
    chain = main_chain(graph, kinds)
    pos: dict[int, int] = {graph.input_node: 0}
    primary: dict[int, int] = {}
    tokens: list[LayerToken] = []
    previous = graph.input_node
    for lid in chain:
        if graph.layers[lid].kind in kinds:
            tokens.append(layer_token(graph, lid))
        pos[graph.layer_output[lid]] = len(tokens)
        primary[lid] = previous
        previous = graph.layer_output[lid]

    def start_of(node: int) -> int:
        # Closest chain tensor ``node`` descends from: the largest chain position met walking back.
        stack, seen, best = [node], {node}, 0
        while stack:
            n = stack.pop()
            if n in pos:
                best = max(best, pos[n])
                continue
            lid = graph.producer(n)
            for m in graph.layer_inputs[lid] if lid is not None else ():
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return best

    def end_of(node: int) -> int:
        # First chain tensor ``node`` flows into: the smallest chain position met walking forward.
        stack, seen, best = [node], {node}, len(tokens)
        while stack:
            n = stack.pop()
            if n in pos:
                best = min(best, pos[n])
                continue
            for m in graph.nx.successors(n):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return best

    skips: list[Skip] = []
    for lid in graph.topological_layers():
        layer = graph.layers[lid]
        if not layer.merge:
            continue
        ins = graph.layer_inputs[lid]
        main = primary.get(lid)
        if main is None:  # a merge off the chain: its deepest input plays the chain's part
            depth = {n: start_of(n) for n in ins}
            main = max(ins, key=lambda n: depth[n])
        end = end_of(graph.layer_output[lid])
        for n in ins:
            if n != main:
                start = min(start_of(n), end)
                skips.append((start, end - start, layer.kind))
    return Descriptor(tuple(tokens), tuple(sorted(skips)), graph.canonical_hash() if key is None else key)


def layer_cost(x: LayerToken, y: LayerToken) -> float:
    """Substitution cost: 1 across kinds, else the mean relative difference of the size attributes."""
    if x[0] != y[0]:
        return 1.0
    if not x[1]:
        return 0.0
    diffs = [abs(a - b) / max(a, b) if max(a, b) > 0 else 0.0 for a, b in zip(x[1], y[1], strict=True)]
    return float(sum(diffs) / len(diffs))


def layers_distance(a: Sequence[LayerToken], b: Sequence[LayerToken]) -> float:
    """Levenshtein distance of two layer sequences (insert/delete 1, substitute ``layer_cost``)."""
    prev = np.arange(len(b) + 1, dtype=np.float64)
    for i, x in enumerate(a, start=1):
        row = np.empty_like(prev)
        row[0] = i
        for j, y in enumerate(b, start=1):
            row[j] = min(prev[j] + 1.0, row[j - 1] + 1.0, prev[j - 1] + layer_cost(x, y))
        prev = row
    return float(prev[-1])


def skip_cost(s: Skip, t: Skip) -> float:
    """Cost of matching two skips: normalised position and length difference, 1 across kinds."""
    if s[2] != t[2]:
        return 1.0
    den = max(s[0], t[0]) + max(s[1], t[1])
    return 0.0 if den == 0 else (abs(s[0] - t[0]) + abs(s[1] - t[1])) / den


def skip_cost_matrix(a: Sequence[Skip], b: Sequence[Skip]) -> np.ndarray:
    """All pairwise ``skip_cost`` values, vectorised: shape (len(a), len(b))."""
    ua, la = (np.array([s[k] for s in a], dtype=np.float64)[:, None] for k in (0, 1))
    ub, lb = (np.array([s[k] for s in b], dtype=np.float64)[None, :] for k in (0, 1))
    den = np.maximum(ua, ub) + np.maximum(la, lb)
    num = np.abs(ua - ub) + np.abs(la - lb)
    cost = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    kinds_differ = np.array([s[2] for s in a], dtype=object)[:, None] != np.array([s[2] for s in b], dtype=object)
    return np.where(kinds_differ, 1.0, cost)


def skips_distance(a: Sequence[Skip], b: Sequence[Skip]) -> float:
    """Optimal matching cost of two skip sets plus 1 per unmatched skip."""
    if not a or not b:
        return float(max(len(a), len(b)))
    cost = skip_cost_matrix(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() + abs(len(a) - len(b)))


def edit_distance(a: Graph | Descriptor, b: Graph | Descriptor, lam: float = 1.0) -> float:
    """``D_layers + lam·D_skip`` between two architectures (graphs or their descriptors)."""
    da = a if isinstance(a, Descriptor) else describe(a)
    db = b if isinstance(b, Descriptor) else describe(b)
    return layers_distance(da.layers, db.layers) + lam * skips_distance(da.skips, db.skips)
