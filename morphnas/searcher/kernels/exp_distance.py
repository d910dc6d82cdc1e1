"""``k = exp(−d/ℓ)`` on the edit distance, projected onto the PSD cone by eigenvalue clipping.

``exp(−d/ℓ)`` is PSD only when ``d`` is of negative type, which an edit distance need not be. At ``prepare``
(and whenever ℓ changes) the training Gram matrix ``K = U Λ Uᵀ`` is eigendecomposed; eigenvalues below
``tol·λ_max`` (the negative ones included) are clipped. Every architecture ``x`` — trained or new — is mapped
to ``φ(x) = k(x, T) U Λ⁻¹ᐟ²`` (the Nyström feature map; on the training set it gives exactly the clipped
matrix), scaled to norm ≤ 1, and ``k(x, x') = φ(x)·φ(x') + [x = x'](1 − |φ(x)|²)``: an explicit feature map
plus a non-negative diagonal, so PSD over any set of architectures, one kernel for fit and prediction, unit
diagonal like ``exp(−0/ℓ)``. The lengthscale is learned with the eigenvectors held fixed inside each
gradient step (the values are exact; the gradient flows through ``k(x, T)``).
"""

from __future__ import annotations

import numpy as np
import torch

from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels.base import ArchitectureKernel, as_indices


class ExpDistanceKernel(ArchitectureKernel):
    """``exp(−d/ℓ)`` with a PSD projection by eigenvalue clipping (see module doc)."""

    has_lengthscale = True

    def __init__(self, cache: ArchitectureCache, tol: float = 1e-4, **kwargs: object) -> None:
        super().__init__(cache, **kwargs)
        self.tol = float(tol)
        self._scale = 1.0
        self._basis_key: tuple[float, int] | None = None
        self._basis = torch.zeros(0, 0, dtype=torch.float64)
        self._dtt = np.zeros((0, 0))

    def prepare(self, train_indices: np.ndarray) -> None:
        super().prepare(train_indices)
        self._dtt = self.cache.distances(self.train_indices)
        off = self._dtt[np.triu_indices(len(self._dtt), 1)]
        positive = off[off > 1e-9]
        self._scale = float(np.median(positive)) if positive.size else 1.0
        self._basis_key = None

    def _projection(self, ls: float) -> torch.Tensor:
        """``U Λ⁻¹ᐟ²`` over the kept eigen-directions of the training Gram matrix at lengthscale ``ls``."""
        key = (ls, len(self.train_indices))
        if self._basis_key != key:
            k = np.exp(-self._dtt / ls)
            lam, u = np.linalg.eigh(k)
            keep = lam > self.tol * max(lam[-1], 1e-300)
            self._basis = torch.from_numpy(u[:, keep] / np.sqrt(lam[keep]))
            self._basis_key = key
        return self._basis

    def features(self, indices: np.ndarray, ls: torch.Tensor) -> torch.Tensor:
        """Feature vectors ``φ(x)`` (norm ≤ 1) of architectures ``indices``."""
        if not len(self.train_indices):
            raise RuntimeError("ExpDistanceKernel.prepare(train_indices) must run before the kernel is used")
        basis = self._projection(float(ls.detach()))
        d = torch.from_numpy(self.cache.distances(indices, self.train_indices))
        phi = torch.exp(-d / ls) @ basis
        return phi / phi.norm(dim=-1, keepdim=True).clamp_min(1.0)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        ls = self._ls() * self._scale
        i1 = as_indices(x1)
        if diag:
            return torch.ones(len(i1), dtype=torch.float64) + 0 * ls
        same = x1 is x2 or torch.equal(x1, x2)
        i2 = i1 if same else as_indices(x2)
        p1 = self.features(i1, ls)
        p2 = p1 if same else self.features(i2, ls)
        k = p1 @ p2.T
        eq = torch.from_numpy(i1[:, None] == i2[None, :])
        residual = (1.0 - p1.pow(2).sum(-1)).clamp_min(0)
        return k + eq * residual[:, None]
