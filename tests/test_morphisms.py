"""Morphisms preserve the function, keep the parent intact, replay bitwise, respect limits, fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_helpers import SMALL, inputs, logits, randomized
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphnas.graph import Conv2d, Dense, Flatten, Graph, GraphError, MaxPool, ReLU, generators
from morphnas.graph.morphisms import (
    RANDOM_OP_NAMES,
    LimitError,
    Limits,
    MorphismError,
    Op,
    add_skip,
    concat_skip,
    deeper,
    neighbours,
    random_morph,
    replay,
    wider,
)


def _chain(g: Graph, seed: int, n: int, noise: float) -> tuple[Graph, list[Op]]:
    rng = np.random.default_rng(seed)
    x = inputs(g, n=4)
    ops = []
    for _ in range(n):
        g, op = random_morph(g, rng, noise=noise)
        ops.append(op)
        g.validate()
        module = g.to_module().train()
        module(x).logsumexp(1).mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    return g, ops


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SMALL)), seed=st.integers(0, 2**16))
def test_twenty_chained_morphisms_preserve_the_function(name, seed):
    parent = randomized(SMALL[name](), seed)
    child, _ = _chain(parent, seed, 20, noise=0.0)
    x = inputs(parent)
    assert (logits(child, x) - logits(parent, x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", sorted(SMALL))
def test_default_noise_changes_the_function_only_slightly(name):
    parent = randomized(SMALL[name](), 3)
    child, _ = _chain(parent, 3, 10, noise=1e-4)
    x = inputs(parent)
    before = logits(parent, x)
    diff = (logits(child, x) - before).abs().max().item()
    assert diff <= 1e-2 * before.abs().max().item()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_replay_rebuilds_the_child_bitwise_and_leaves_the_parent_untouched(name):
    parent = randomized(SMALL[name](), 5)
    before = parent.to_json(), [t.clone() for _, t in parent.weight_tensors()]
    child, ops = _chain(parent, 5, 8, noise=1e-4)
    assert (parent.to_json(), len(before[1])) == (before[0], len(list(parent.weight_tensors())))
    assert all(torch.equal(a, b) for a, (_, b) in zip(before[1], parent.weight_tensors(), strict=True))
    again = replay(parent, [Op.from_dict(op.to_dict()) for op in ops])
    assert again.to_json() == child.to_json()
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(again.weight_tensors(), child.weight_tensors(), strict=True))
    assert child.history[-len(ops):] == [op.to_dict() for op in ops]
    # architecture-only replay gives the same architecture
    assert replay(parent.without_weights(), ops).canonical_hash() == child.canonical_hash()


def _weight_grad(g: Graph, lid: int) -> torch.Tensor:
    module = g.to_module().train()
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()  # keep BatchNorm in training mode, but no random dropout masks
    module(inputs(g, n=32)).logsumexp(1).mean().backward()
    return module.get_submodule(f"l{lid}").weight.grad


@pytest.mark.parametrize(("name", "kind"), [("cnn", "conv2d"), ("cnn", "dense"), ("mlp", "dense")])
def test_widened_units_receive_gradients(name, kind):
    g = randomized(SMALL[name]())
    lid = g.layers_of_kind(kind)[0]
    width = g.shape(g.layer_output[lid])[0]
    child = wider(g, lid, 4, seed=1)
    assert child.shape(child.layer_output[lid])[0] == width + 4
    assert _weight_grad(child, lid)[width:].abs().sum() > 0
    # without noise a copy gets exactly its source's gradient (Net2Net split gives both the same outgoing
    # weights): the new units are as trainable as the units they copy
    exact = wider(g, lid, 4, seed=1, noise=0.0)
    grad = _weight_grad(exact, lid)
    sources = np.random.default_rng(1).integers(0, width, size=4)  # the units wider(seed=1) copied
    assert grad[sources].abs().sum() > 0
    assert torch.equal(grad[width:], grad[sources])


def _assert_same_function(a: Graph, b: Graph, tol: float = 1e-4) -> None:
    x = inputs(a)
    assert (logits(a, x) - logits(b, x)).abs().max().item() <= tol


def test_wider_propagates_through_add_to_every_producer():
    g = randomized(SMALL["resnet"]())
    # the second conv of the first block feeds an Add whose other input is the stem: all must widen together
    lid = g.layers_of_kind("conv2d")[2]
    child = wider(g, lid, 3, noise=0.0)
    _assert_same_function(g, child)
    stem = g.layers_of_kind("conv2d")[0]
    assert child.layers[stem].out_channels == g.layers[stem].out_channels + 3


def test_wider_propagates_through_concat_offsets_and_flatten():
    dense = randomized(SMALL["densenet"]())
    lid = dense.layers_of_kind("conv2d")[1]  # a growth conv whose output is concatenated
    _assert_same_function(dense, wider(dense, lid, 2, noise=0.0))
    g = Graph((2, 6, 6))
    x = g.add_layer(Conv2d(2, 3, 3), g.input_node)
    x = g.add_layer(ReLU(), x)
    x = g.add_layer(MaxPool(2, 2), x)
    x = g.add_layer(Flatten(), x)
    x = g.add_layer(Dense(27, 5), x)
    g.set_output(x)
    g = randomized(g.init_weights(0))
    child = wider(g, 0, 2, noise=0.0)
    assert child.layers[4].in_features == 45
    _assert_same_function(g, child)
    _assert_same_function(g, wider(g, 0, 2, noise=0.0, method="zero"))


@pytest.mark.parametrize("kind", ["conv", "conv_bn", "conv_block", "bn", "relu"])
def test_deeper_kinds_preserve_the_function(kind):
    g = randomized(SMALL["cnn"]())
    relu = g.layers_of_kind("relu")[0]
    _assert_same_function(g, deeper(g, relu, kind, kernel_size=5, noise=0.0))


def test_skips_preserve_the_function_and_pool_to_size():
    g = randomized(SMALL["cnn"]())
    a, b = g.layers_of_kind("relu")[0], g.layers_of_kind("relu")[2]  # 16x16 -> 4x4: two pools copied
    for morph in (add_skip, concat_skip):
        child = morph(g, a, b, noise=0.0)
        _assert_same_function(g, child)
        assert len(child.layers_of_kind("maxpool")) == len(g.layers_of_kind("maxpool")) + 2


def test_resnet_strided_path_is_matched_by_pooling():
    g = randomized(SMALL["resnet"]())
    a, b = g.layers_of_kind("relu")[0], g.layers_of_kind("relu")[-1]
    _assert_same_function(g, add_skip(g, a, b, noise=0.0))


# ------------------------------------------------------------------------------------------------ errors
def test_bad_morphism_requests_name_the_problem():
    g = SMALL["cnn"]()
    relu = g.layers_of_kind("relu")[0]
    bn = g.layers_of_kind("batchnorm")[0]
    last = g.producer(g.output_node)
    with pytest.raises(GraphError, match="unknown layer id 999"):
        wider(g, 999, 2)
    with pytest.raises(MorphismError, match="cannot be widened"):
        wider(g, relu, 2)
    with pytest.raises(MorphismError, match="number of classes"):
        wider(g, last, 2)
    with pytest.raises(MorphismError, match="a skip must go forward"):
        add_skip(g, g.layers_of_kind("relu")[2], relu)
    with pytest.raises(MorphismError, match="join \\(C, H, W\\) tensors"):
        concat_skip(g, relu, g.layers_of_kind("dense")[0])
    with pytest.raises(MorphismError, match="would not preserve the function"):
        deeper(g, bn, "relu")
    with pytest.raises(MorphismError, match="unknown deeper kind"):
        deeper(g, relu, "lstm")
    with pytest.raises(MorphismError, match="noise must be"):
        deeper(g, relu, "conv", noise=float("nan"))
    with pytest.raises(MorphismError, match="unknown morphism 'shrink'"):
        Op.from_dict({"op": "shrink"})


def test_shapes_that_cannot_be_matched_are_refused():
    g = Graph((1, 5, 5))
    x = g.add_layer(Conv2d(1, 2, 3), g.input_node)
    a = g.add_layer(ReLU(), x)
    y = g.add_layer(MaxPool(3, 1, 1), a)  # same size, then a branch that shrinks 5 -> 2
    z = g.add_layer(MaxPool(2, 2), y)
    z = g.add_layer(Flatten(), z)
    g.set_output(g.add_layer(Dense(8, 2), z))
    g.init_weights(0)
    with pytest.raises(MorphismError, match="join \\(C, H, W\\) tensors"):
        add_skip(g, g.producer(a), g.producer(z))


def test_limits_are_enforced_and_random_morph_respects_them():
    g = SMALL["cnn"]()
    conv = g.layers_of_kind("conv2d")[0]
    with pytest.raises(LimitError, match="max_width=10"):
        wider(g, conv, 4, limits=Limits(max_width=10))
    with pytest.raises(LimitError, match="max_layers"):
        deeper(g, conv, "bn", limits=Limits(max_layers=g.n_layers()))
    limits = Limits(max_layers=g.n_layers() + 6, max_params=int(g.n_params() * 1.5), max_width=16)
    rng = np.random.default_rng(0)
    child = g
    for _ in range(15):
        try:
            child, _ = random_morph(child, rng, limits=limits)
        except MorphismError:
            break
        assert child.n_layers() <= limits.max_layers and child.n_params() <= limits.max_params
        assert child.max_width() <= 16


def test_random_morph_draws_only_the_kinds_asked_for_and_refuses_unknown_ones():
    g = SMALL["cnn"]()
    for kinds in [("deeper", "wider"), ("add_skip",)]:
        rng = np.random.default_rng(2)
        assert {random_morph(g, rng, kinds=kinds)[1].name for _ in range(12)} == set(kinds)
    # every kind by default, drawn exactly as when the kinds are named
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [random_morph(g, a)[1] for _ in range(6)] == [random_morph(g, b, kinds=RANDOM_OP_NAMES)[1]
                                                         for _ in range(6)]
    for bad in [(), ("shallower",)]:
        with pytest.raises(ValueError, match="kinds must be a non-empty subset of"):
            random_morph(g, np.random.default_rng(0), kinds=bad)


def test_a_cost_cap_refuses_children_that_cost_more():
    g = SMALL["cnn"]()
    with pytest.raises(LimitError, match="max_macs"):
        wider(g, g.layers_of_kind("conv2d")[0], 4, limits=Limits(max_macs=g.macs()))
    limits = Limits(max_macs=int(g.macs() * 1.3))
    rng = np.random.default_rng(1)
    child, grew = g, 0
    for _ in range(25):
        try:
            child, _ = random_morph(child, rng, limits=limits)
        except MorphismError:
            break
        assert child.macs() <= limits.max_macs
        grew += child.macs() > g.macs()
    assert grew, "no child used the room under the cap"


def test_neighbours_are_distinct_one_op_children():
    g = generators.cnn((1, 28, 28), 10, seed=None)
    found = neighbours(g, 8, np.random.default_rng(0))
    hashes = {child.canonical_hash() for child, _ in found}
    assert len(found) == len(hashes) >= 6 and g.canonical_hash() not in hashes
    for child, op in found:
        assert replay(g, [op]).canonical_hash() == child.canonical_hash()
    again = neighbours(g, 8, np.random.default_rng(0))
    assert [op for _, op in again] == [op for _, op in found]
