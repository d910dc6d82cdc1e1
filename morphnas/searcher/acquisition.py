"""Acquisition functions by name: ``ucb`` (β = 2.576), ``ei``, ``pi``, ``thompson``; ``register_acquisition``.

An acquisition scores a batch of candidates from the GP ``Posterior`` (metric units, higher is better), the
best metric observed so far and a local ``numpy.random.Generator`` (for Thompson sampling). Higher scores are
better. A factory is called with the options given by name, e.g. ``make_acquisition("ucb", beta=1.0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy.special import ndtr

from morphnas.searcher.gp import Posterior
from morphnas.searcher.registry import Registry


class Acquisition(Protocol):
    """Scores candidates; ``needs_covariance`` asks the GP for the joint posterior of each batch."""

    needs_covariance: bool

    def __call__(self, posterior: Posterior, best: float, rng: np.random.Generator) -> np.ndarray: ...


class UCB:
    """Upper confidence bound ``μ + β·σ`` (Auto-Keras' choice; β = 2.576, the two-sided 99 % z-value)."""

    needs_covariance = False

    def __init__(self, beta: float = 2.576) -> None:
        if not np.isfinite(beta) or beta < 0:
            raise ValueError(f"ucb: beta must be a finite number >= 0, got {beta}")
        self.beta = float(beta)

    def __call__(self, posterior: Posterior, best: float, rng: np.random.Generator) -> np.ndarray:
        return posterior.mean + self.beta * posterior.std


class EI:
    """Expected improvement over ``best + xi``."""

    needs_covariance = False

    def __init__(self, xi: float = 0.0) -> None:
        self.xi = float(xi)

    def __call__(self, posterior: Posterior, best: float, rng: np.random.Generator) -> np.ndarray:
        std = np.maximum(posterior.std, 1e-12)
        gain = posterior.mean - best - self.xi
        z = gain / std
        return gain * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


class PI:
    """Probability of improving on ``best + xi``."""

    needs_covariance = False

    def __init__(self, xi: float = 0.0) -> None:
        self.xi = float(xi)

    def __call__(self, posterior: Posterior, best: float, rng: np.random.Generator) -> np.ndarray:
        return ndtr((posterior.mean - best - self.xi) / np.maximum(posterior.std, 1e-12))


class Thompson:
    """Thompson sampling: one joint posterior draw over each scored batch."""

    needs_covariance = True

    def __call__(self, posterior: Posterior, best: float, rng: np.random.Generator) -> np.ndarray:
        return posterior.sample(rng, 1)[0]


ACQUISITIONS: Registry[Acquisition] = Registry("acquisition")
ACQUISITIONS.register("ucb", UCB)
ACQUISITIONS.register("ei", EI)
ACQUISITIONS.register("pi", PI)
ACQUISITIONS.register("thompson", Thompson)


def register_acquisition(name: str, factory: Callable[..., Acquisition], *, overwrite: bool = False) -> None:
    """Make ``factory(**options) -> Acquisition`` selectable as ``name``."""
    ACQUISITIONS.register(name, factory, overwrite=overwrite)


def make_acquisition(name: str, **options: Any) -> Acquisition:
    """The acquisition registered as ``name``; ValueError listing the valid names if unknown."""
    return ACQUISITIONS.create(name, **options)
