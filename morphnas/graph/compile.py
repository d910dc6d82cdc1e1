"""Compile a Graph once into an ``nn.Module`` whose forward is plain generated Python (torch.fx).

The plan is fixed at compile time: one statement per layer in topological order, intermediate tensors
released after their last use, no graph walking per forward. The result is a ``torch.fx.GraphModule``,
so it prints as code, runs under ``torch.compile`` and is scriptable for export.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import torch
import torch.fx
from torch import nn

if TYPE_CHECKING:
    from morphnas.graph.graph import Graph, Weights

# Producers after which an in-place ReLU is safe: their backward does not need their output.
_INPLACE_RELU_AFTER = frozenset({"conv2d", "dense", "batchnorm", "add"})


def compile_graph(graph: Graph) -> torch.fx.GraphModule:
    """Build the module for ``graph`` (validated first) and load the graph's weights into it, if any."""
    graph.validate()
    fx = torch.fx.Graph()
    env: dict[int, torch.fx.Node] = {graph.input_node: fx.placeholder("x")}
    modules: dict[str, nn.Module] = {}
    for lid in graph.topological_layers():
        layer = graph.layers[lid]
        args = [env[n] for n in graph.layer_inputs[lid]]
        name = f"l{lid}"
        kind = layer.kind
        if kind == "add":
            out = args[0]
            for arg in args[1:]:
                out = fx.call_function(operator.add, (out, arg))
        elif kind == "concat":
            out = fx.call_function(torch.cat, (tuple(args),), {"dim": 1})
        elif kind == "flatten":
            out = fx.call_function(torch.flatten, (args[0], 1))
        elif kind == "globalavgpool":
            out = fx.call_method("mean", (args[0], (2, 3)))
        else:
            module = layer.module()
            if module is None:  # pragma: no cover - every other kind has a module
                raise TypeError(f"layer kind {kind!r} has no module")
            if kind == "relu":
                (src,) = graph.layer_inputs[lid]
                producer = graph.producer(src)
                if (producer is not None and graph.layers[producer].kind in _INPLACE_RELU_AFTER
                        and len(graph.consumers(src)) == 1):
                    module = nn.ReLU(inplace=True)
            modules[name] = module
            out = fx.call_module(name, (args[0],))
        env[graph.layer_output[lid]] = out
    fx.output(env[graph.output_node])
    root = nn.Module()
    for name, module in modules.items():
        root.add_module(name, module)
    gm = torch.fx.GraphModule(root, fx, class_name="MorphNet")
    if graph.weights is not None:
        load_weights(gm, graph.weights)
    return gm


def load_weights(module: nn.Module, weights: Weights) -> None:
    """Copy graph weights into a module compiled from that graph (exact float32 copy)."""
    state = {f"l{lid}.{name}": t for lid, ws in weights.items() for name, t in ws.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the module: missing {missing}, unexpected {unexpected}")


def weights_from_module(graph: Graph, module: nn.Module) -> Weights:
    """Read the weights of ``module`` (compiled from ``graph``) as graph weights: CPU float32 copies."""
    state = module.state_dict()
    weights: Weights = {}
    for lid, layer in graph.layers.items():
        names = layer.param_shapes()
        if not names:
            continue
        layer_weights = {}
        for name in names:
            key = f"l{lid}.{name}"
            if key not in state:
                raise ValueError(f"module has no tensor {key!r}: it was not compiled from this graph "
                                 f"(layer {lid} is {layer.describe()})")
            layer_weights[name] = state[key].detach().to(
                "cpu", torch.float32, copy=True, memory_format=torch.contiguous_format)
        weights[lid] = layer_weights
    return weights
