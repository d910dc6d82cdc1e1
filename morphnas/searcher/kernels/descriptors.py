"""An RBF kernel on architecture descriptors (parameters, MACs, depth, skips, widths, spans per skip kind), with one
lengthscale per descriptor (ARD), and ``additive``: a learned mix of two kernels (by default the edit
distance's ``bourgain`` and ``descriptors``).

Why: the edit distance sees which layers and skips two networks share, not what a skip spans or how much a
widening grows the network, and among the best model's children it ranked no better than chance on objectives
that turn on those (issue 11's ablation, docs/benchmarks.md). Descriptors are the other view, the one NAS
performance predictors regress on; each is standardised by the training set's spread and ARD lets the
marginal likelihood switch off the ones that do not matter for the problem at hand. ``additive`` keeps the
edit distance's structural view beside it: ``k = w·k_a + (1−w)·k_b``, ``w`` learned, so the data say which
view explains them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from morphnas.graph.descriptors import DESCRIPTOR_NAMES, architecture_descriptors
from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels.base import ArchitectureKernel, as_indices


class DescriptorKernel(ArchitectureKernel):
    """ARD RBF on standardised ``architecture_descriptors`` (see module doc)."""

    has_lengthscale = True

    def __init__(self, cache: ArchitectureCache, ard: bool = True, **kwargs: object) -> None:
        super().__init__(cache, ard_num_dims=len(DESCRIPTOR_NAMES) if ard else None, **kwargs)
        self.ard = bool(ard)
        self._center = np.zeros(len(DESCRIPTOR_NAMES))
        self._spread = np.ones(len(DESCRIPTOR_NAMES))
        self._train_z: torch.Tensor | None = None

    def descriptors(self, indices: np.ndarray) -> np.ndarray:
        """Raw descriptor vectors of architectures ``indices``, shape (n, len(DESCRIPTOR_NAMES))."""
        rows = [self.cache.feature("descriptors", int(i), architecture_descriptors) for i in indices.tolist()]
        return np.stack(rows) if rows else np.zeros((0, len(DESCRIPTOR_NAMES)))

    def prepare(self, train_indices: np.ndarray) -> None:
        super().prepare(train_indices)
        x = self.descriptors(self.train_indices)
        self._center = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        spread = x.std(axis=0) if len(x) > 1 else np.ones(x.shape[1])
        self._spread = np.where(spread > 1e-9, spread, 1.0)  # a descriptor constant so far: compared in its units
        self._train_z = torch.from_numpy((x - self._center) / self._spread)

    def standardised(self, indices: np.ndarray) -> torch.Tensor:
        """Descriptors of ``indices`` in the training set's standard units; the training set's own rows are kept
        from ``prepare``, since every step of the hyperparameter fit asks for them again."""
        if self._train_z is not None and np.array_equal(indices, self.train_indices):
            return self._train_z
        return torch.from_numpy((self.descriptors(indices) - self._center) / self._spread)

    def initial_lengthscale(self) -> float:
        """√(number of descriptors) in standardised units: a typical pair of training points correlates ~0.4."""
        return math.sqrt(len(DESCRIPTOR_NAMES)) if self.ard else 1.0

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        i1 = as_indices(x1)
        ls = self.lengthscale.reshape(-1).to(torch.float64)
        if diag:
            return torch.ones(len(i1), dtype=torch.float64) + 0 * ls.sum()
        same = x1 is x2 or torch.equal(x1, x2)
        z1 = self.standardised(i1) / ls
        z2 = z1 if same else self.standardised(as_indices(x2)) / ls
        sq = (z1.pow(2).sum(-1, keepdim=True) + z2.pow(2).sum(-1)[None, :] - 2 * z1 @ z2.T).clamp_min(0)
        return torch.exp(-0.5 * sq)


class AdditiveKernel(ArchitectureKernel):
    """``w·k_a + (1−w)·k_b`` over two registered kernels, ``w = sigmoid(raw_weight)`` learned (module doc)."""

    has_lengthscale = False

    def __init__(self, cache: ArchitectureCache, kernels: Sequence[str] = ("bourgain", "descriptors"),
                 seed: int = 0, **kwargs: object) -> None:
        super().__init__(cache, **kwargs)
        from morphnas.searcher.kernels import KERNELS, make_kernel

        names = list(kernels)
        if len(names) != 2 or "additive" in names:
            raise ValueError(f"additive mixes two registered kernels other than itself, got {names!r}")
        parts = []
        for name in names:
            options = {"seed": seed} if KERNELS.accepts(name, "seed") else {}
            parts.append(make_kernel(name, cache, **options))
        self.kernels = torch.nn.ModuleList(parts)
        self.names = names
        self.register_parameter("raw_weight", torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)))

    @property
    def weight(self) -> float:
        """The first kernel's share ``w``."""
        return float(torch.sigmoid(self.raw_weight.detach()))

    def constrain(self) -> None:
        for kernel in self.kernels:
            kernel.constrain()

    def reset(self) -> None:
        with torch.no_grad():
            self.raw_weight.zero_()
        for kernel in self.kernels:
            kernel.reset()

    def prepare(self, train_indices: np.ndarray) -> None:
        super().prepare(train_indices)
        for kernel in self.kernels:
            kernel.prepare(train_indices)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        w = torch.sigmoid(self.raw_weight.reshape(())).to(torch.float64)
        a, b = (kernel.forward(x1, x2, diag=diag) for kernel in self.kernels)
        return w * a + (1 - w) * b
