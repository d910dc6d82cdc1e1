"""Kernels over architectures for the searcher's GP, selectable by name; ``register_kernel`` adds one.

Built in: ``bourgain`` (the paper's kernel made PSD by a seeded Bourgain embedding; ``autokeras``'s default),
``exp-distance`` (``exp(−d/ℓ)`` with a PSD projection), ``wl`` (Weisfeiler–Lehman subtree kernel),
``descriptors`` (ARD RBF on parameters, MACs, depth, skips, widths, spans per skip kind) and ``additive`` (a
learned mix of two, by default ``bourgain`` and ``descriptors``; ``bayesian``'s default).
A factory is called as ``factory(cache, **options)`` and returns an ``ArchitectureKernel``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels.base import ArchitectureKernel, as_indices
from morphnas.searcher.kernels.bourgain import BourgainKernel, bourgain_anchors
from morphnas.searcher.kernels.descriptors import AdditiveKernel, DescriptorKernel
from morphnas.searcher.kernels.exp_distance import ExpDistanceKernel
from morphnas.searcher.kernels.wl import WLKernel, wl_features
from morphnas.searcher.registry import Registry

KERNELS: Registry[ArchitectureKernel] = Registry("kernel")
KERNELS.register("bourgain", BourgainKernel)
KERNELS.register("exp-distance", ExpDistanceKernel)
KERNELS.register("wl", WLKernel)
KERNELS.register("descriptors", DescriptorKernel)
KERNELS.register("additive", AdditiveKernel)


def register_kernel(name: str, factory: Callable[..., ArchitectureKernel], *, overwrite: bool = False) -> None:
    """Make ``factory(cache, **options) -> ArchitectureKernel`` selectable as ``name``."""
    KERNELS.register(name, factory, overwrite=overwrite)


def make_kernel(name: str, cache: ArchitectureCache, **options: Any) -> ArchitectureKernel:
    """The kernel registered as ``name`` over ``cache``; ValueError listing the valid names if unknown."""
    kernel = KERNELS.create(name, cache, **options)
    if not isinstance(kernel, ArchitectureKernel):
        raise TypeError(f"kernel factory {name!r} returned {type(kernel).__name__}, not an ArchitectureKernel")
    return kernel


__all__ = [
    "KERNELS",
    "AdditiveKernel",
    "ArchitectureKernel",
    "BourgainKernel",
    "DescriptorKernel",
    "ExpDistanceKernel",
    "WLKernel",
    "as_indices",
    "bourgain_anchors",
    "make_kernel",
    "register_kernel",
    "wl_features",
]
