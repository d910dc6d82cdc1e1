"""The cost of a candidate: `Graph.macs()` / `flops()` per layer kind, checked against torch's own flop counter
on the compiled module, for every generator and for morphed children; a kind that cannot say its cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from graph_helpers import SMALL, inputs
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from morphnas.graph import Conv2d, Dense, GlobalAvgPool, Graph, Layer, ReLU, generators
from morphnas.graph.layers import Flatten, Shape, register_layer
from morphnas.graph.morphisms import add_skip, concat_skip, deeper, random_morph, wider


def counted_flops(graph: Graph, n: int = 3) -> float:
    """FLOPs per image of the compiled module's forward, as torch's FlopCounterMode counts them."""
    module = graph.to_module().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(inputs(graph, n))
    return counter.get_total_flops() / n


@pytest.mark.parametrize("name", sorted(SMALL))
def test_flops_of_generated_graphs_equal_torchs_count(name: str) -> None:
    g = SMALL[name]()
    assert g.flops() == counted_flops(g) == 2 * g.macs() > 0


def test_flops_of_default_size_generators_on_fashion_mnist_shapes() -> None:
    for name in ("cnn", "resnet"):
        g = generators.get_generator(name)((1, 28, 28), 10)
        assert g.flops() == counted_flops(g, n=1)
    # by hand: a 3×3 conv 1→64 on 28×28 (same padding) is 28·28·64·9 MACs
    g = Graph((1, 28, 28))
    x = g.add_layer(Conv2d(1, 64), 0)
    x = g.add_layer(GlobalAvgPool(), g.add_layer(ReLU(), x))
    g.set_output(g.add_layer(Dense(64, 10), x))
    assert g.macs() == 28 * 28 * 64 * 9 + 64 * 10


def test_flops_follow_morphisms() -> None:
    g = SMALL["cnn"]().init_weights(0)
    convs = g.layers_of_kind("conv2d")
    children = [
        wider(g, convs[0], 4, seed=1),
        deeper(g, convs[1], "conv", kernel_size=5, seed=2),
        deeper(g, convs[1], "bn", seed=2),
        add_skip(g, convs[0], convs[2], seed=3),
        concat_skip(g, convs[0], convs[1], seed=4),
    ]
    for child in children:
        assert child.flops() == counted_flops(child)
    assert children[0].flops() > g.flops() and children[2].flops() == g.flops()
    rng = np.random.default_rng(0)
    for name in ("resnet", "densenet"):
        child = SMALL[name]().init_weights(0)
        for _ in range(4):  # chains of random morphisms
            child, _op = random_morph(child, rng)
        assert child.flops() == counted_flops(child)


@register_layer
@dataclass(frozen=True)
class _CostlessScale(Layer):
    """A weighted per-channel scale known only to this test, which does not say what it costs."""

    kind: ClassVar[str] = "test_costless_scale"
    channelwise: ClassVar[bool] = True
    num_features: int

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return self._one(inputs)

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.num_features,)}

    def module(self) -> nn.Module:
        return nn.PReLU(self.num_features)


@register_layer
@dataclass(frozen=True)
class _Upsample(Layer):
    """A parameter-free kind without a cost method: 0 MACs by the documented default."""

    kind: ClassVar[str] = "test_free_upsample"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        c, h, w = self._one(inputs)
        return (c, 2 * h, 2 * w)


def test_a_weighted_kind_without_a_cost_is_a_clear_error_and_a_free_one_costs_zero() -> None:
    g = Graph((2, 4, 4))
    g.set_output(g.add_layer(Dense(32, 3), g.add_layer(Flatten(), g.add_layer(_CostlessScale(2), 0))))
    with pytest.raises(NotImplementedError, match="'test_costless_scale' has tensors but does not define macs"):
        g.flops()
    free = Graph((2, 4, 4))
    x = free.add_layer(_Upsample(), 0)
    free.set_output(free.add_layer(Dense(8, 3), free.add_layer(GlobalAvgPool(), free.add_layer(Conv2d(2, 8), x))))
    assert free.macs() == 8 * 8 * 8 * 2 * 9 + 8 * 3
