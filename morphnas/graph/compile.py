"""Compile a layer plan once into an ``nn.Module`` whose forward is plain generated Python (torch.fx).

The plan is fixed at compile time: one statement per layer in topological order, intermediate tensors
released after their last use, no graph walking per forward. Each layer emits itself: a layer with a
``module()`` becomes a submodule ``l<id>`` called on its inputs, a function layer's ``apply`` runs on
torch.fx proxies and so records its own operations. The result is a ``torch.fx.GraphModule``, so it prints
as code, runs under ``torch.compile`` and is scriptable for export. ``Graph.to_module()`` builds the plan;
this module does not know the Graph class (graph.py imports it, not the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from morphnas.graph.layers import Layer, Weights


@dataclass(frozen=True)
class Step:
    """One layer of the plan: its id, spec, input and output tensor ids, and whether it may run in place."""

    lid: int
    layer: Layer
    inputs: tuple[int, ...]
    output: int
    inplace: bool = False


def build_module(input_node: int, steps: Sequence[Step], output_node: int,
                 weights: Weights | None = None) -> torch.fx.GraphModule:
    """The module running ``steps`` in order from tensor ``input_node`` to ``output_node``, with ``weights``."""
    fx = torch.fx.Graph()
    tracer = torch.fx.proxy.GraphAppendingTracer(fx)  # records what function layers do to their proxies
    env: dict[int, torch.fx.Node] = {input_node: fx.placeholder("x")}
    modules: dict[str, nn.Module] = {}
    for step in steps:
        args = [env[n] for n in step.inputs]
        module = step.layer.module()
        if module is None:
            out = step.layer.apply([torch.fx.Proxy(arg, tracer) for arg in args]).node
        else:
            if step.inplace:
                module = step.layer.inplace_module() or module
            name = f"l{step.lid}"
            modules[name] = module
            out = fx.call_module(name, tuple(args))
        env[step.output] = out
    fx.output(env[output_node])
    root = nn.Module()
    for name, module in modules.items():
        root.add_module(name, module)
    gm = torch.fx.GraphModule(root, fx, class_name="MorphNet")
    if weights is not None:
        load_weights(gm, weights)
    return gm


def load_weights(module: nn.Module, weights: Weights) -> None:
    """Copy graph weights into a module compiled from that graph (exact float32 copy)."""
    state = {f"l{lid}.{name}": t for lid, ws in weights.items() for name, t in ws.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the module: missing {missing}, unexpected {unexpected}")
