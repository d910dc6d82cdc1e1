"""The base of the searcher's kernels: GPyTorch kernels whose inputs are indices into an ArchitectureCache.

An architecture enters a GP as one float column holding its cache index. A kernel looks up what it needs
(edit distances, graph features) in the cache, so members and the optimizer's scratch candidates are handled
alike. ``prepare(train)`` is called by the GP before every fit with the training indices, for kernels whose
definition depends on the training set (the Bourgain anchors, the PSD projection basis); the same prepared
kernel then serves fitting and prediction.
"""

from __future__ import annotations

import numpy as np
import torch
from gpytorch.constraints import Interval
from gpytorch.kernels import Kernel

from morphnas.searcher.cache import ArchitectureCache


def as_indices(x: torch.Tensor) -> np.ndarray:
    """Cache indices from a GPyTorch input tensor of shape (n, 1) or (n,)."""
    return np.rint(x.detach().reshape(-1).cpu().numpy()).astype(np.int64)


class ArchitectureKernel(Kernel):
    """A kernel over architecture indices; subclasses implement ``forward`` from cache lookups."""

    def __init__(self, cache: ArchitectureCache, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if not isinstance(cache, ArchitectureCache):
            raise TypeError(f"an architecture kernel needs an ArchitectureCache, got {type(cache).__name__}")
        self.cache = cache
        self.train_indices = np.zeros(0, dtype=np.int64)

    def prepare(self, train_indices: np.ndarray) -> None:
        """Fix what the kernel derives from the training set; the GP calls this before each fit."""
        idx = np.asarray(train_indices, dtype=np.int64).ravel()
        # unique, in order of first appearance: random choices then depend on the order of the data, not on
        # how the cache happened to number the architectures (a resumed search numbers them differently)
        _, first = np.unique(idx, return_index=True)
        self.train_indices = idx[np.sort(first)]

    def initial_lengthscale(self) -> float:
        """Starting value of the lengthscale for a fit (kernels without one ignore it)."""
        return 1.0

    def constrain(self) -> None:
        """Bound the lengthscale to [0.02, 50] in units of the kernel's own data scale (e.g. the median
        distance): sane bounds for any metric. The GP calls this once; composite kernels recurse."""
        if self.has_lengthscale:
            self.register_constraint("raw_lengthscale", Interval(0.02, 50.0))

    def reset(self) -> None:
        """Back to the starting hyperparameters, so that every fit starts from the same point."""
        if self.has_lengthscale:
            self.lengthscale = self.initial_lengthscale()

    def _ls(self) -> torch.Tensor:
        return self.lengthscale.reshape(()).to(torch.float64)
