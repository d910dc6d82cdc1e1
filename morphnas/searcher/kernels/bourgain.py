"""The paper's kernel ``k = exp(−ρ(d)²)`` made valid by a Bourgain embedding of the edit distance.

The edit distance is not Euclidean, so ``exp(−d²)`` need not be positive semi-definite. Following Auto-Keras,
each architecture is embedded by Bourgain's construction: coordinate ``j`` is its distance to the closest
member of a random anchor set ``S_j`` (sizes 1, 2, 4, ... up to the training-set size, ``⌈ln n⌉`` sets per
size); ``ρ`` is the (scaled) Euclidean distance between embeddings and the kernel is an RBF on it, hence PSD.

Fixes over the original: the anchor sets come from a local ``numpy.random.Generator`` seeded by
``(seed, n)`` (the original reseeded the global RNG), and new architectures are embedded with the SAME anchor
sets, so one kernel serves fit and prediction (the original predicted with ``exp(−d²)`` on raw distances).
The lengthscale is learned; the paper's fixed kernel is ``ℓ = 1/√2`` in units of the embedding scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels.base import ArchitectureKernel, as_indices


def bourgain_anchors(train: np.ndarray, rng: np.random.Generator, repeats: int | None = None) -> list[np.ndarray]:
    """Bourgain's random anchor sets over ``train``: sizes 2^i (i < ⌈log2 n⌉, at least one), ``repeats`` each."""
    n = len(train)
    if n == 0:
        return []
    sizes = [min(n, 2**i) for i in range(max(1, math.ceil(math.log2(n))))]
    reps = max(1, math.ceil(math.log(n))) if repeats is None else int(repeats)
    return [np.sort(rng.choice(train, size=s, replace=False)) for s in sizes for _ in range(reps)]


class BourgainKernel(ArchitectureKernel):
    """RBF on a seeded Bourgain embedding of the edit distance; learned lengthscale (see module doc)."""

    has_lengthscale = True

    def __init__(self, cache: ArchitectureCache, seed: int = 0, repeats: int | None = None,
                 **kwargs: object) -> None:
        super().__init__(cache, **kwargs)
        self.seed = int(seed)
        self.repeats = repeats
        self._anchors: list[np.ndarray] = []
        self._flat = np.zeros(0, dtype=np.int64)
        self._offsets = np.zeros(0, dtype=np.int64)
        self._scale = 1.0
        self._train_embedding: dict[int, np.ndarray] = {}

    def prepare(self, train_indices: np.ndarray) -> None:
        super().prepare(train_indices)
        rng = np.random.default_rng([self.seed, len(self.train_indices)])
        self._anchors = bourgain_anchors(self.train_indices, rng, self.repeats)
        self._flat = np.concatenate(self._anchors) if self._anchors else np.zeros(0, dtype=np.int64)
        self._offsets = np.cumsum([0] + [len(a) for a in self._anchors[:-1]]).astype(np.int64)
        self._scale = 1.0
        self._train_embedding = {}
        emb = self.embed(self.train_indices)
        self._train_embedding = dict(zip(self.train_indices.tolist(), emb, strict=True))
        if len(emb) > 1:
            sq = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
            dist = np.sqrt(sq[np.triu_indices(len(emb), 1)])
            positive = dist[dist > 1e-9]
            self._scale = float(np.median(positive)) if positive.size else 1.0

    @property
    def dimension(self) -> int:
        """Number of embedding coordinates (anchor sets)."""
        return len(self._anchors)

    def embed(self, indices: np.ndarray) -> np.ndarray:
        """Bourgain coordinates of architectures ``indices``, divided by √dim (so ρ ≤ d), unscaled."""
        idx = np.asarray(indices, dtype=np.int64)
        if not self._anchors:
            raise RuntimeError("BourgainKernel.prepare(train_indices) must run before the kernel is used")
        out = np.empty((len(idx), len(self._anchors)))
        todo = np.array([i not in self._train_embedding for i in idx.tolist()], dtype=bool)
        for k in np.flatnonzero(~todo):
            out[k] = self._train_embedding[int(idx[k])]
        if todo.any():
            d = self.cache.distances(idx[todo], self._flat)
            out[todo] = np.minimum.reduceat(d, self._offsets, axis=1) / math.sqrt(len(self._anchors))
        return out

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        i1 = as_indices(x1)
        ls = self._ls() * self._scale
        if diag:
            return torch.ones(len(i1), dtype=torch.float64) + 0 * ls
        same = x1 is x2 or torch.equal(x1, x2)
        e1 = torch.from_numpy(self.embed(i1)) / ls
        e2 = e1 if same else torch.from_numpy(self.embed(as_indices(x2))) / ls
        sq = (e1.pow(2).sum(-1, keepdim=True) + e2.pow(2).sum(-1)[None, :] - 2 * e1 @ e2.T).clamp_min(0)
        return torch.exp(-0.5 * sq)
