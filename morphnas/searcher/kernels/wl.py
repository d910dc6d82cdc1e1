"""The Weisfeiler–Lehman subtree kernel on architecture graphs, normalised (as in NAS-BOWL, Ru et al. 2021).

Each layer is a node labelled by its kind and coarse sizes (the spec's ``coarse_label()``: kernel and stride
of a conv or pool, width as log2, dropout rate); edges follow the data flow (a merge has one edge per input).
``h`` rounds of WL relabelling (a node's new label is its label with the sorted labels of its producers) give
a bag of subtree patterns; the kernel is the cosine similarity of the pattern counts, PSD and equal to 1 on
the diagonal.
It does not use the edit distance, so it is a useful check on what the distance buys.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import torch
from scipy import sparse

from morphnas.graph.graph import Graph
from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels.base import ArchitectureKernel, as_indices


def node_label(graph: Graph, lid: int) -> str:
    """Initial WL label of layer ``lid``: its spec's ``coarse_label()``, the kind plus coarse sizes."""
    return graph.layers[lid].coarse_label()


def wl_features(graph: Graph, iterations: int = 2) -> Counter[str]:
    """Counts of WL subtree patterns of depth 0..``iterations`` over the layer graph of ``graph``."""
    labels: dict[int, str] = {}
    preds: dict[int, list[int]] = {}
    for lid in graph.topological_layers():
        labels[lid] = node_label(graph, lid)
        preds[lid] = [p for p in (graph.producer(n) for n in graph.layer_inputs[lid]) if p is not None]
    counts: Counter[str] = Counter(f"0:{lab}" for lab in labels.values())
    for it in range(1, iterations + 1):
        new = {}
        for lid, lab in labels.items():
            text = lab + "(" + ",".join(sorted(labels[p] for p in preds[lid])) + ")"
            new[lid] = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        labels = new
        counts.update(f"{it}:{lab}" for lab in labels.values())
    return counts


class WLKernel(ArchitectureKernel):
    """Normalised WL subtree kernel over ``iterations`` rounds (no lengthscale; the GP scales it)."""

    has_lengthscale = False

    def __init__(self, cache: ArchitectureCache, iterations: int = 2, **kwargs: object) -> None:
        super().__init__(cache, **kwargs)
        if iterations < 0:
            raise ValueError(f"WL iterations must be >= 0, got {iterations}")
        self.iterations = int(iterations)
        self._vocab: dict[str, int] = {}
        self._memo: tuple[bytes, sparse.csr_matrix] | None = None  # the last right-hand set (the training set)

    def _matrix(self, indices: np.ndarray) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, i in enumerate(indices.tolist()):
            feats = self.cache.feature(f"wl{self.iterations}", i, lambda g: wl_features(g, self.iterations))
            norm = math.sqrt(sum(v * v for v in feats.values())) or 1.0
            for label, count in feats.items():
                col = self._vocab.setdefault(label, len(self._vocab))
                rows.append(r)
                cols.append(col)
                vals.append(count / norm)
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(indices), max(1, len(self._vocab))))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        i1 = as_indices(x1)
        if diag:
            return torch.ones(len(i1), dtype=torch.float64)
        same = x1 is x2 or torch.equal(x1, x2)
        i2 = i1 if same else as_indices(x2)
        key = i2.tobytes()
        if self._memo is not None and self._memo[0] == key:
            f2 = self._memo[1]
        else:
            f2 = self._matrix(i2)
            if i2.size and i2.max() < len(self.cache):  # members only: scratch indices get reused
                self._memo = (key, f2)
        f1 = f2 if same else self._matrix(i1)
        width = len(self._vocab) or 1
        f1, f2 = (f if f.shape[1] == width else
                  sparse.csr_matrix((f.data, f.indices, f.indptr), shape=(f.shape[0], width)) for f in (f1, f2))
        k = (f1 @ f2.T).toarray()
        return torch.from_numpy(np.asarray(k, dtype=np.float64))
