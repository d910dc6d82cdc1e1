"""Kernels: PSD over random architectures, one embedding for fit and predict, seeded, registry by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from searcher_helpers import random_architectures

from morphnas.graph.descriptors import DESCRIPTOR_NAMES, architecture_descriptors
from morphnas.searcher import KERNELS, ArchitectureCache, ArchitectureKernel, make_kernel, register_kernel
from morphnas.searcher.gp import ArchitectureGP
from morphnas.searcher.kernels import AdditiveKernel, BourgainKernel


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


@pytest.mark.parametrize("name", ["bourgain", "exp-distance", "wl", "descriptors", "additive"])
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
    with pytest.raises(ValueError, match="additive, bourgain, descriptors, exp-distance, wl"):
        make_kernel("rbf", cache)


def test_registry_says_which_kernels_take_a_seed():
    """Only a named parameter counts (``**kwargs``, which GPyTorch passes on and drops, does not): the search seeds
    exactly the kernels that draw randomness; an unknown name is an error, not "takes nothing"."""
    assert KERNELS.accepts("bourgain", "seed") and KERNELS.accepts("additive", "seed")
    assert not KERNELS.accepts("descriptors", "seed") and not KERNELS.accepts("exp-distance", "seed")
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        KERNELS.accepts("rbf", "seed")


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


def test_descriptor_ard_keeps_the_descriptor_that_explains_the_data(population):
    """Targets that depend on log2 parameters alone: the fitted lengthscale of that descriptor is the shortest
    (the marginal likelihood switches the others off), and the additive mix leans on the descriptor view."""
    cache, idx = population
    x = np.stack([architecture_descriptors(cache.graph(int(i))) for i in idx])
    y = np.sin(x[:, 0])  # a non-monotone function of log2 parameters only
    gp = ArchitectureGP(cache, "descriptors").fit(idx[:70], y[:70])
    ls = gp.kernel.lengthscale.detach().reshape(-1).numpy()
    assert int(np.argmin(ls)) == DESCRIPTOR_NAMES.index("log2 params")
    pred, _ = gp.predict(idx[70:])
    assert np.corrcoef(pred, y[70:])[0, 1] > 0.9
    mix = ArchitectureGP(cache, "additive").fit(idx[:70], y[:70])
    assert isinstance(mix.kernel, AdditiveKernel) and mix.kernel.weight < 0.5  # w is the edit distance's share


def test_additive_fits_start_from_the_same_point(population):
    """Every fit starts from w = 1/2 and each part's initial lengthscale: a fit is a function of the data."""
    cache, idx = population
    y = np.linspace(0.0, 1.0, 40)
    gp = ArchitectureGP(cache, "additive", {"seed": 1})
    first = gp.fit(idx[:40], y).hyperparameters, gp.kernel.weight
    gp.fit(idx[40:80], y[::-1])
    again = gp.fit(idx[:40], y).hyperparameters, gp.kernel.weight
    assert first == again


def test_additive_rejects_a_bad_pair(population):
    cache, _ = population
    with pytest.raises(ValueError, match="two registered kernels"):
        make_kernel("additive", cache, kernels=["bourgain"])


def test_descriptors_do_not_depend_on_how_a_graph_was_built(population):
    """A saved and loaded architecture has the same descriptors (skip spans included) as the one in memory:
    networkx's edge order differs after a round trip, and a resumed search must model the same numbers."""
    from morphnas.graph.graph import Graph

    cache, idx = population
    for i in idx[:60]:
        g = cache.graph(int(i))
        loaded = Graph.from_dict(g.to_dict())
        np.testing.assert_array_equal(architecture_descriptors(g), architecture_descriptors(loaded))


def test_each_skip_kind_has_its_own_mean_span(population):
    """The spans are summarised per kind: the add skips' mean span and the concat skips' are those of
    ``skip_spans`` for that kind alone (0 without one), so an add skip over one convolution and a concat skip over
    three do not read as two skips over two."""
    from morphnas.graph.descriptors import skip_spans

    cache, idx = population
    add, concat = DESCRIPTOR_NAMES.index("mean add span"), DESCRIPTOR_NAMES.index("mean concat span")
    mixed = 0
    for i in idx:
        g = cache.graph(int(i))
        spans = skip_spans(g)
        d = architecture_descriptors(g)
        for column, kind in ((add, "add"), (concat, "concat")):
            of_kind = [s for k, s in spans if k == kind]
            assert d[column] == (np.mean(of_kind) if of_kind else 0.0)
        mixed += {k for k, _ in spans} == {"add", "concat"} and d[add] != d[concat]
    assert mixed, "no random architecture had both kinds of skip with different spans: the test checks nothing"
