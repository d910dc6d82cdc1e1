"""Shared helpers for the graph tests: small generated graphs with 'trained-looking' weights."""

from __future__ import annotations

import torch

from morphnas.graph import Graph, generators

SMALL = {
    "cnn": lambda: generators.cnn((3, 16, 16), 10, filters=8, dense_units=16),
    "resnet": lambda: generators.resnet((3, 16, 16), 10, depth=8, width=8),
    "densenet": lambda: generators.densenet((3, 16, 16), 10, growth=4, block_layers=(2, 2)),
    "mlp": lambda: generators.mlp((1, 8, 8), 10, hidden=(32, 16)),
}


def randomized(graph: Graph, seed: int = 0) -> Graph:
    """The same architecture with random weights and non-trivial BatchNorm statistics, like a trained net."""
    gen = torch.Generator().manual_seed(seed)
    g = graph.copy()
    assert g.weights is not None

    def randn(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen) * std

    for lid, ws in g.weights.items():
        if "running_var" in ws:  # BatchNorm: affine near identity, statistics far from the defaults
            new = {"weight": 1 + randn(ws["weight"], 0.2), "bias": randn(ws["bias"], 0.2),
                   "running_mean": randn(ws["running_mean"], 0.5),
                   "running_var": torch.rand(ws["running_var"].shape, generator=gen) * 1.5 + 0.5}
        else:  # Conv/Dense: Kaiming-normal scale, as after training
            fan_in = ws["weight"][0].numel()
            new = {"weight": randn(ws["weight"], (2 / fan_in) ** 0.5), "bias": randn(ws["bias"], 0.1)}
        g.weights[lid] = new
    return g


def logits(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode output of the compiled graph."""
    with torch.no_grad():
        return graph.to_module().eval()(x)


def inputs(graph: Graph, n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn((n, *graph.input_shape), generator=torch.Generator().manual_seed(seed))
