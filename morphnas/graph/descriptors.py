"""Architecture descriptors: a few order-free numbers that say what a network is (its size, cost, depth, skips).

The edit distance compares layer sequences and skip endpoints; it barely weighs what a skip spans or how much a
widening costs, and two networks one morphism apart can differ by a factor of four in parameters. These numbers
are the other view: what NAS performance predictors regress on (parameters, FLOPs, depth, skips) and what a
researcher reads first. ``architecture_descriptors`` is the vector the ``descriptors`` kernel compares;
``skip_spans`` says, for every skip, its kind and how many convolutions it bypasses.

The spans are summarised per kind (the mean span of the add skips, and of the concat skips), not as one mean over
all skips: an add skip over one convolution and a concat skip over three are different networks that one mean
would call the same, and on the tuning seeds the per-kind means were what let the model tell the skip that pays
from the ones that cost (docs/benchmarks.md, issue 11's fourth round).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from morphnas.graph.graph import Graph

DESCRIPTOR_NAMES = ("log2 params", "log2 macs", "depth", "layers with units", "add skips", "concat skips",
                    "log2 widest layer", "mean log2 conv width", "mean add span", "mean concat span")


def skip_spans(g: Graph) -> list[tuple[str, int]]:
    """Every extra input of a merge layer as (kind, convolutions it bypasses): the most conv layers on any path
    from where the skip leaves to the merge, through the main graph (not the skip's own branch). The main input is
    the merge's first declared input, so the spans of an architecture are the same however it was built or loaded."""
    conv_edges = {(u, v) for u, v, d in g.nx.edges(data=True) if g.layers[d["layer"]].kind == "conv2d"}
    out = []
    for lid, layer in g.layers.items():
        if not getattr(layer, "merge", False):
            continue
        inputs = list(g.layer_inputs[lid])  # declared order: networkx's edge order depends on how the graph was
        if len(inputs) < 2:                 # built, and differs after a save and load (then resume saw other spans)
            continue
        main, extras = inputs[0], inputs[1:]
        for extra in extras:
            # where the skip leaves: the closest ancestor of the extra input that is also an ancestor of `main`
            branch = nx.ancestors(g.nx, extra) | {extra}
            shared = [n for n in branch if n in nx.ancestors(g.nx, main) | {main}]
            source = max(shared, key=lambda n: len(nx.ancestors(g.nx, n))) if shared else None
            if source is None:
                out.append((layer.kind, 0))
                continue
            sub = g.nx.subgraph(nx.descendants(g.nx, source) & (nx.ancestors(g.nx, main) | {main}) | {source})
            best: dict[int, int] = {source: 0}
            for node in nx.topological_sort(sub):
                for succ in sub.successors(node):
                    if node in best:
                        best[succ] = max(best.get(succ, 0), best[node] + ((node, succ) in conv_edges))
            out.append((layer.kind, best.get(main, 0)))
    return out


def architecture_descriptors(g: Graph) -> np.ndarray:
    """The numbers named by ``DESCRIPTOR_NAMES`` for ``g``, as float64.

    MACs come from ``Graph.known_macs``; a plugin layer that cannot state its cost leaves the parameter count in
    their place (the two move together), so every architecture has a full vector. A kind's mean span is 0 without
    skips of that kind.
    """
    kinds = [layer.kind for layer in g.layers.values()]
    log_params = math.log2(max(1, g.n_params()))
    macs = g.known_macs()
    conv_widths = [g.shape(g.layer_output[lid])[0] for lid, layer in g.layers.items() if layer.kind == "conv2d"]
    spans = skip_spans(g)
    mean_span = [float(np.mean([s for k, s in spans if k == kind] or [0.0])) for kind in ("add", "concat")]
    return np.array([log_params, math.log2(max(1, macs)) if macs is not None else log_params, g.depth(),
                     sum(1 for layer in g.layers.values() if layer.has_units), kinds.count("add"),
                     kinds.count("concat"), math.log2(max(1, g.max_width())),
                     float(np.mean(np.log2(conv_widths))) if conv_widths else 0.0, *mean_span],
                    dtype=np.float64)


__all__ = ["DESCRIPTOR_NAMES", "architecture_descriptors", "skip_spans"]
