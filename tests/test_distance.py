"""Edit distance: metric-like properties, morphism locality, exact skip matching, batched == reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from searcher_helpers import BASES, morph_chain, random_architectures

from morphnas.graph import Dense, Graph, ReLU, generators
from morphnas.graph.morphisms import add_skip, deeper, wider
from morphnas.searcher import ArchitectureCache, describe, edit_distance, main_chain
from morphnas.searcher.distance import layer_cost, layers_distance, skip_cost, skips_distance

SLOW_OK = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW_OK
@given(name=st.sampled_from(sorted(BASES)), other=st.sampled_from(sorted(BASES)),
       s1=st.integers(0, 10**6), s2=st.integers(0, 10**6), n1=st.integers(0, 6), n2=st.integers(0, 6))
def test_identity_symmetry_non_negativity(name, other, s1, s2, n1, n2):
    a = morph_chain(BASES[name](), n1, s1)
    b = morph_chain(BASES[other](), n2, s2)
    assert edit_distance(a, a) == 0.0
    assert edit_distance(a, b) == pytest.approx(edit_distance(b, a), abs=1e-12)
    assert edit_distance(a, b) >= 0.0
    if a.canonical_hash() != b.canonical_hash() and describe(a).layers != describe(b).layers:
        assert edit_distance(a, b) > 0.0


@pytest.mark.parametrize("name", sorted(BASES))
def test_one_morphism_is_a_small_step(name):
    base = BASES[name]()
    for seed in range(8):
        child = morph_chain(base, 1, seed)
        # one op inserts at most three layers (a conv block), changes a few widths or adds one skip;
        # skips after an insertion shift by up to 3 positions, which costs a fraction per skip
        assert 0.0 < edit_distance(base, child) <= 4.0


def test_more_morphisms_move_further_on_average():
    base = BASES["cnn"]()
    means = [np.mean([edit_distance(base, morph_chain(base, k, seed)) for seed in range(12)]) for k in (1, 3, 8)]
    assert means[0] < means[1] < means[2]


def test_dense_width_counts():
    a = generators.mlp((8,), 3, hidden=(16,), seed=None)
    b = generators.mlp((8,), 3, hidden=(64,), seed=None)
    assert edit_distance(a, b) == pytest.approx((64 - 16) / 64)


def test_layer_cost_rules():
    assert layer_cost(("conv2d", (16.0, 3.0, 1.0)), ("dense", (16.0,))) == 1.0
    assert layer_cost(("conv2d", (16.0, 3.0, 1.0)), ("conv2d", (32.0, 3.0, 1.0))) == pytest.approx(0.5 / 3)
    assert layer_cost(("relu", ()), ("relu", ())) == 0.0
    assert layers_distance([], [("relu", ())] * 3) == 3.0


def _brute_force(a, b):
    if len(a) > len(b):
        a, b = b, a
    best = float("inf")
    for perm in itertools.permutations(range(len(b)), len(a)):
        best = min(best, sum(skip_cost(a[i], b[j]) for i, j in enumerate(perm)) + len(b) - len(a))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 8), st.sampled_from(["add", "concat"])), max_size=5),
       st.lists(st.tuples(st.integers(0, 12), st.integers(0, 8), st.sampled_from(["add", "concat"])), max_size=5))
def test_skip_matching_is_the_brute_force_minimum(a, b):
    expected = float(max(len(a), len(b))) if not a or not b else _brute_force(a, b)
    assert skips_distance(a, b) == pytest.approx(expected, abs=1e-12)


def test_main_chain_follows_residual_and_dense_branches():
    res = BASES["resnet"]()
    chain = main_chain(res)
    assert res.layer_output[chain[-1]] == res.output_node
    desc = describe(res)
    assert [s[2] for s in desc.skips] == ["add"] * 3
    assert all(s[1] == 5 for s in desc.skips)  # conv, bn, relu, conv, bn on the residual branch
    dense = describe(BASES["densenet"]())
    assert [s[2] for s in dense.skips] == ["concat"] * 4
    assert all(s[1] == 3 for s in dense.skips)  # bn, relu, conv per dense layer


def test_skip_position_and_length_follow_the_chain():
    g = BASES["cnn"]()
    convs = g.layers_of_kind("conv2d")
    relus = g.layers_of_kind("relu")
    child = add_skip(g, relus[0], relus[1])
    (start, length, kind), = describe(child).skips
    assert kind == "add" and start == 3 and length == 4  # after bn, conv, relu; maxpool, bn, conv, relu
    assert len(convs) == 2


def test_merge_off_the_chain_still_counts():
    # a skip whose end is on a projection shortcut (off the main chain) is still a skip
    res = BASES["resnet"]()
    proj = [lid for lid in res.layers_of_kind("conv2d") if res.layers[lid].kernel_size == 1]
    src = res.layers_of_kind("relu")[0]
    child = add_skip(res, src, proj[0])
    assert len(describe(child).skips) == len(describe(res).skips) + 1
    assert edit_distance(res, child) > 0


def test_every_single_layer_insertion_moves_the_distance():
    g = BASES["cnn"]()
    relu = g.layers_of_kind("relu")[0]
    for kind in ("bn", "relu", "conv"):
        assert edit_distance(g, deeper(g, relu, kind)) == pytest.approx(1.0)
    assert 0 < edit_distance(g, wider(g, g.layers_of_kind("conv2d")[0], 4)) < 1


def test_cache_matches_reference_and_grows_incrementally():
    graphs = random_architectures(40, seed=3)
    cache = ArchitectureCache()
    idx = [cache.add(g) for g in graphs]
    ref = np.array([[edit_distance(a, b) for b in graphs] for a in graphs])
    np.testing.assert_allclose(cache.distances(idx, idx), ref, atol=1e-9)
    d = cache.matrix()
    np.testing.assert_array_equal(d, d.T)
    assert len(cache) == len({g.canonical_hash() for g in graphs})
    assert cache.add(graphs[0]) == idx[0]  # dedupe by canonical hash
    scratch = cache.set_scratch(graphs[:4])
    assert scratch.tolist() == list(range(len(cache), len(cache) + 4))
    np.testing.assert_allclose(cache.distances(scratch, idx), ref[:4], atol=1e-9)
    np.testing.assert_allclose(cache.distances(scratch, scratch), ref[:4, :4], atol=1e-9)
    np.testing.assert_allclose(cache.distances(idx[:3], scratch), ref[:3, :4], atol=1e-9)
    assert np.all(cache.min_distance_to_members(scratch) < 1e-9)
    cache.add(generators.cnn((3, 8, 8), 4, n_blocks=3, filters=5, seed=None))
    assert cache.n_scratch == 0  # a new member invalidates the scratch batch


def test_lambda_weighs_the_skip_term():
    a, b = BASES["resnet"](), BASES["cnn"]()
    da, db = describe(a), describe(b)
    for lam in (0.0, 1.0, 2.5):
        cache = ArchitectureCache(lam=lam)
        i, j = cache.add(a), cache.add(b)
        expected = layers_distance(da.layers, db.layers) + lam * skips_distance(da.skips, db.skips)
        assert cache.distances([i], [j])[0, 0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="lam"):
        ArchitectureCache(lam=-1)


def test_flat_mlp_without_flatten():
    g = Graph((6,))
    x = g.add_layer(Dense(6, 5), g.input_node)
    x = g.add_layer(ReLU(), x)
    x = g.add_layer(Dense(5, 2), x)
    g.set_output(x)
    assert [t[0] for t in describe(g).layers] == ["dense", "relu", "dense"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 6), st.sampled_from(["add", "concat"])),
                         max_size=8), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 9), st.integers(0, 6), st.sampled_from(["add", "concat"])), max_size=8))
def test_vectorised_skip_matching_equals_the_reference(member_sets, probe):
    # the cache matches one skip set against all interned sets at once (enumeration or Hungarian by size)
    cache = ArchitectureCache()
    ids = [cache.skipsets.intern(tuple(sorted(m))) for m in member_sets]
    row = cache.skipsets.distances_to_all(tuple(sorted(probe)))
    for sid, m in zip(ids, member_sets, strict=True):
        assert row[sid] == pytest.approx(skips_distance(sorted(probe), sorted(m)), abs=1e-12)


def test_vocabulary_takes_a_kind_with_more_size_attributes_than_any_built_in():
    """A layer kind registered later may compare more attributes than conv's three: the table widens."""
    from morphnas.searcher import TokenVocabulary

    vocab = TokenVocabulary()
    conv = vocab.token_id(("conv2d", (16.0, 3.0, 1.0)))
    a = vocab.token_id(("fancy", (1.0, 2.0, 3.0, 4.0)))
    b = vocab.token_id(("fancy", (1.0, 2.0, 3.0, 5.0)))
    assert vocab.sub[a, b] == pytest.approx((1.0 / 5.0) / 4)  # mean relative difference over all four
    assert vocab.sub[a, conv] == 1.0 and vocab.sub[b, b] == 0.0
