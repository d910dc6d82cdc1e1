"""Kernels: PSD over random architectures, one embedding for fit and predict, seeded, registry by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from searcher_helpers import random_architectures

from morphnas.searcher import KERNELS, ArchitectureCache, ArchitectureKernel, make_kernel, register_kernel
from morphnas.searcher.kernels import BourgainKernel


@pytest.fixture(scope="module")
def population():
    cache = ArchitectureCache()
    graphs = random_architectures(100, seed=11)
    idx = np.array([cache.add(g) for g in graphs])
    return cache, idx


def _gram(kernel, idx):
    x = torch.from_numpy(idx.astype(np.float64))[:, None]
    with torch.no_grad():
        return kernel.forward(x, x).numpy()


@pytest.mark.parametrize("name", ["bourgain", "exp-distance", "wl"])
def test_kernel_matrices_are_psd(population, name):
    cache, idx = population
    kernel = make_kernel(name, cache).double()
    train = idx[: len(idx) // 2]
    kernel.prepare(train)
    if kernel.has_lengthscale:
        kernel.lengthscale = 0.5
    k = _gram(kernel, idx)  # training AND new architectures together
    np.testing.assert_allclose(k, k.T, atol=1e-10)
    eig = np.linalg.eigvalsh(k)
    assert eig[0] >= -1e-6 * eig[-1]
    np.testing.assert_allclose(np.diag(k), 1.0, atol=1e-9)


def test_raw_exp_distance_is_not_psd_but_projection_is(population):
    cache, idx = population
    d = cache.distances(idx)
    raw = np.linalg.eigvalsh(np.exp(-(d**2)))  # the paper's exp(-d^2) without the embedding
    assert raw[0] < -1e-6 * raw[-1]  # which is why an embedding or a projection is needed


def test_bourgain_uses_the_same_embedding_for_new_points(population):
    cache, idx = population
    kernel = BourgainKernel(cache, seed=3)
    kernel.prepare(idx[:60])
    stored = kernel.embed(idx[:60])
    kernel._train_embedding = {}
    recomputed = kernel.embed(idx[:60])  # as if they were new architectures
    np.testing.assert_allclose(stored, recomputed)
    n = len(kernel.train_indices)  # distinct architectures among the 60
    assert kernel.dimension == math.ceil(math.log2(n)) * math.ceil(math.log(n))  # sizes x repeats


def test_bourgain_is_seeded_locally(population):
    cache, idx = population
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - reading the global RNG to show it is untouched
    a, b, c = (BourgainKernel(cache, seed=s) for s in (1, 1, 2))
    for kern in (a, b, c):
        kern.prepare(idx[:40])
    assert all(np.array_equal(x, y) for x, y in zip(a._anchors, b._anchors, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a._anchors, c._anchors, strict=True))
    assert np.array_equal(state, np.random.get_state()[1])  # noqa: NPY002 - the global RNG was not touched


def test_anchor_choice_ignores_cache_numbering(population):
    cache, idx = population
    graphs = [cache.graph(int(i)) for i in idx[:30]]
    other = ArchitectureCache()
    for g in reversed(graphs):  # the same architectures, numbered the other way round
        other.add(g)
    remap = np.array([other.index_of(g) for g in graphs])
    a, b = BourgainKernel(cache, seed=0), BourgainKernel(other, seed=0)
    a.prepare(idx[:30])
    b.prepare(remap)
    np.testing.assert_allclose(_gram(a, idx[:30]), _gram(b, remap))


def test_unknown_kernel_lists_valid_names(population):
    cache, _ = population
    with pytest.raises(ValueError, match="bourgain, exp-distance, wl"):
        make_kernel("rbf", cache)


def test_register_kernel_in_one_call(population):
    cache, idx = population

    class Flat(ArchitectureKernel):
        def forward(self, x1, x2, diag=False, **params):
            n1 = x1.shape[0]
            return torch.ones(n1, dtype=torch.float64) if diag else torch.ones(n1, x2.shape[0], dtype=torch.float64)

    register_kernel("flat-test", Flat)
    try:
        kernel = make_kernel("flat-test", cache)
        assert _gram(kernel, idx[:3]).sum() == 9
        with pytest.raises(ValueError, match="already registered"):
            register_kernel("flat-test", Flat)
    finally:
        KERNELS.unregister("flat-test")
