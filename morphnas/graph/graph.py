"""The architecture IR: a DAG whose nodes are tensors and whose edges are layers.

The topology lives in a networkx ``DiGraph`` (node = tensor id with its per-sample ``shape``; edge
``u -> v`` carries the id of the layer that reads ``u`` and writes ``v``). A multi-input layer (Add,
Concat) is one layer id on several edges; its ordered inputs are kept in ``layer_inputs``. A graph may
carry weights: one dict of CPU float32 tensors per layer. Weight tensors are never modified in place, so
a morphed child shares the tensors of the layers it did not change with its parent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch

from morphnas.graph.layers import WEIGHTED_KINDS, Layer, Shape, ShapeError

if TYPE_CHECKING:
    from torch import nn

Weights = dict[int, dict[str, torch.Tensor]]


class GraphError(ValueError):
    """The architecture is invalid, or an operation on it names something that is not there."""


class Graph:
    """A neural network architecture (and optionally its weights) as a DAG of tensors and layers.

    Build one with ``add_layer`` / ``set_output`` (see ``morphnas.graph.generators``), change it only
    through ``morphnas.graph.morphisms`` (each returns a new graph), run it with ``to_module()``.
    """

    def __init__(self, input_shape: Shape) -> None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) not in (1, 3) or any(d < 1 for d in shape):
            raise GraphError(f"input_shape must be (C, H, W) or (F,) of positive sizes, got {input_shape}")
        self.input_shape: Shape = shape
        self.nx = nx.DiGraph()
        self.input_node = 0
        self.output_node: int | None = None
        self.nx.add_node(0, shape=shape)
        self.layers: dict[int, Layer] = {}
        self.layer_inputs: dict[int, tuple[int, ...]] = {}
        self.layer_output: dict[int, int] = {}
        self._producer: dict[int, int] = {}
        self.weights: Weights | None = None
        self.history: list[dict[str, Any]] = []
        self._next_node = 1
        self._next_layer = 0
        self._topo: list[int] | None = None

    # ------------------------------------------------------------------ building
    def add_layer(self, layer: Layer, *inputs: int) -> int:
        """Append ``layer`` reading the tensors ``inputs``; returns the id of its new output tensor."""
        if not isinstance(layer, Layer):
            raise GraphError(f"add_layer needs a Layer spec, got {type(layer).__name__}")
        if self.weights is not None and layer.param_shapes():
            raise GraphError("add_layer on a weighted graph would leave a layer without weights: "
                             "build first, then init_weights(), or use a morphism")
        inputs = tuple(int(n) for n in inputs)
        for n in inputs:
            self._check_node(n)
        if len(set(inputs)) != len(inputs):
            raise GraphError(f"{layer.kind} reads the same tensor twice: {inputs}")
        if layer.n_inputs == 1 and len(inputs) != 1:
            raise GraphError(f"{layer.kind} takes exactly one input, got {len(inputs)}")
        try:
            out_shape = layer.output_shape([self.shape(n) for n in inputs])
        except ShapeError as exc:
            raise GraphError(f"cannot add {layer.describe()} after tensors {inputs}: {exc}") from None
        lid, out = self._next_layer, self._next_node
        self._next_layer += 1
        self._next_node += 1
        self.nx.add_node(out, shape=out_shape)
        for n in inputs:
            self.nx.add_edge(n, out, layer=lid)
        self.layers[lid] = layer
        self.layer_inputs[lid] = inputs
        self.layer_output[lid] = out
        self._producer[out] = lid
        self._topo = None
        return out

    def set_output(self, node: int) -> None:
        """Mark ``node`` (a flat ``(n_classes,)`` tensor) as the network's output."""
        self._check_node(node)
        if len(self.shape(node)) != 1:
            raise GraphError(f"the output must be a flat (n_classes,) tensor, got shape {self.shape(node)}")
        self.output_node = node
        self._topo = None

    def init_weights(self, seed: int = 0) -> Graph:
        """Give every layer freshly initialised weights drawn from a local ``torch.Generator(seed)``."""
        gen = torch.Generator().manual_seed(int(seed))
        self.weights = {lid: self.layers[lid].init_weights(gen) for lid in self.topological_layers()}
        self.weights = {lid: w for lid, w in self.weights.items() if w}
        return self

    # ------------------------------------------------------------------ queries
    def _check_node(self, node: int) -> None:
        if node not in self.nx:
            raise GraphError(f"unknown tensor id {node}; the graph has tensors {sorted(self.nx.nodes)}")

    def check_layer(self, lid: int) -> Layer:
        """The spec of layer ``lid``, or a GraphError naming the valid ids."""
        try:
            return self.layers[lid]
        except (KeyError, TypeError):
            raise GraphError(f"unknown layer id {lid!r}; valid ids: {sorted(self.layers)}") from None

    def shape(self, node: int) -> Shape:
        """Per-sample shape of tensor ``node``."""
        self._check_node(node)
        return self.nx.nodes[node]["shape"]

    def producer(self, node: int) -> int | None:
        """Id of the layer that writes tensor ``node`` (None for the input)."""
        return self._producer.get(node)

    def consumers(self, node: int) -> list[int]:
        """Ids of the layers that read tensor ``node``, in increasing order."""
        return sorted({d["layer"] for _, _, d in self.nx.out_edges(node, data=True)})

    def topological_layers(self) -> list[int]:
        """Layer ids in a deterministic topological order (the compiled module runs them in this order)."""
        if self._topo is None:
            order = nx.lexicographical_topological_sort(self.nx)
            self._topo = [self._producer[n] for n in order if n in self._producer]
        return list(self._topo)

    def layers_of_kind(self, *kinds: str) -> list[int]:
        """Ids of layers of the given kinds, in topological order."""
        return [lid for lid in self.topological_layers() if self.layers[lid].kind in kinds]

    @property
    def has_weights(self) -> bool:
        return self.weights is not None

    @property
    def output_shape(self) -> Shape:
        if self.output_node is None:
            raise GraphError("the graph has no output yet: call set_output(node)")
        return self.shape(self.output_node)

    def n_params(self) -> int:
        """Number of trainable parameters, exactly as PyTorch counts them for ``to_module()``."""
        return sum(layer.n_params() for layer in self.layers.values())

    def n_layers(self) -> int:
        return len(self.layers)

    def max_width(self) -> int:
        """Largest number of output channels / units of any Conv2d or Dense layer."""
        widths = [getattr(lay, "out_channels", getattr(lay, "out_features", 0))
                  for lay in self.layers.values() if lay.kind in WEIGHTED_KINDS]
        return max(widths, default=0)

    def depth(self) -> int:
        """Number of Conv2d/Dense layers on the longest input-to-output path."""
        best: dict[int, int] = {self.input_node: 0}
        for lid in self.topological_layers():
            inc = 1 if self.layers[lid].kind in WEIGHTED_KINDS else 0
            best[self.layer_output[lid]] = max(best[n] for n in self.layer_inputs[lid]) + inc
        return best.get(self.output_node, 0) if self.output_node is not None else 0

    def n_skips(self) -> int:
        """Number of merge layers (Add, Concat): each closes one skip connection."""
        return sum(1 for lay in self.layers.values() if lay.kind in ("add", "concat"))

    def is_nonnegative(self, node: int) -> bool:
        """True when tensor ``node`` is provably >= 0 (a ReLU output, or pooled/merged such outputs)."""
        lid = self.producer(node)
        if lid is None:
            return False
        kind = self.layers[lid].kind
        if kind == "relu":
            return True
        if kind in ("maxpool", "avgpool", "globalavgpool", "dropout", "flatten", "add", "concat"):
            return all(self.is_nonnegative(n) for n in self.layer_inputs[lid])
        return False

    # ------------------------------------------------------------------ validation
    def validate(self) -> Graph:
        """Check the whole graph (DAG, wiring, every shape, weights); raise GraphError naming the problem."""
        if self.output_node is None:
            raise GraphError("the graph has no output: call set_output(node)")
        if not nx.is_directed_acyclic_graph(self.nx):
            raise GraphError(f"the graph has a cycle: {nx.find_cycle(self.nx)}")
        sources = [n for n in self.nx if self.nx.in_degree(n) == 0]
        if sources != [self.input_node]:
            raise GraphError(f"the graph must have exactly one input tensor ({self.input_node}); "
                             f"tensors without a producer: {sources}")
        for node in self.nx:
            if node != self.input_node and node not in self._producer:
                raise GraphError(f"tensor {node} has no producing layer")
        reaching = nx.ancestors(self.nx, self.output_node) | {self.output_node}
        dead = set(self.nx) - reaching
        if dead:
            raise GraphError(f"tensors {sorted(dead)} do not lead to the output {self.output_node}")
        shapes: dict[int, Shape] = {self.input_node: self.input_shape}
        for lid in self.topological_layers():
            layer = self.layers[lid]
            try:
                shapes[self.layer_output[lid]] = layer.output_shape([shapes[n] for n in self.layer_inputs[lid]])
            except ShapeError as exc:
                raise GraphError(f"layer {lid} ({layer.describe()}): {exc}") from None
            if shapes[self.layer_output[lid]] != self.shape(self.layer_output[lid]):
                raise GraphError(f"layer {lid}: stored shape {self.shape(self.layer_output[lid])} != "
                                 f"inferred {shapes[self.layer_output[lid]]}")
        if len(self.output_shape) != 1:
            raise GraphError(f"the output must be flat (n_classes,), got {self.output_shape}")
        if self.weights is not None:
            self._validate_weights(self.weights)
        return self

    def _validate_weights(self, weights: Weights) -> None:
        for lid, layer in self.layers.items():
            expected = layer.param_shapes()
            got = weights.get(lid, {})
            if set(got) != set(expected):
                raise GraphError(f"layer {lid} ({layer.describe()}) has weights {sorted(got)}, "
                                 f"expected {sorted(expected)}")
            for name, shape in expected.items():
                if tuple(got[name].shape) != shape:
                    raise GraphError(f"layer {lid} weight {name!r} has shape {tuple(got[name].shape)}, "
                                     f"expected {shape}")
        extra = set(weights) - set(self.layers)
        if extra:
            raise GraphError(f"weights given for unknown layers {sorted(extra)}")

    # ------------------------------------------------------------------ copies and weights
    def copy(self) -> Graph:
        """Structural copy; weight dicts are copied, the (never mutated) tensors are shared."""
        g = Graph.__new__(Graph)
        g.input_shape = self.input_shape
        g.nx = self.nx.copy()
        g.input_node = self.input_node
        g.output_node = self.output_node
        g.layers = dict(self.layers)
        g.layer_inputs = dict(self.layer_inputs)
        g.layer_output = dict(self.layer_output)
        g._producer = dict(self._producer)
        g.weights = None if self.weights is None else {lid: dict(w) for lid, w in self.weights.items()}
        g.history = list(self.history)
        g._next_node = self._next_node
        g._next_layer = self._next_layer
        g._topo = None if self._topo is None else list(self._topo)
        return g

    def without_weights(self) -> Graph:
        """The same architecture with no weights (cheap to morph: the search uses it to explore)."""
        g = self.copy()
        g.weights = None
        return g

    def to_module(self) -> nn.Module:
        """Compile once to an ``nn.Module`` running a precomputed plan; it holds copies of the weights."""
        from morphnas.graph.compile import compile_graph

        return compile_graph(self)

    def with_weights_from(self, module: nn.Module) -> Graph:
        """A copy of this graph carrying the (trained) weights of ``module``, compiled from this graph."""
        from morphnas.graph.compile import weights_from_module

        g = self.copy()
        weights = weights_from_module(self, module)
        g._validate_weights(weights)
        g.weights = weights
        return g

    def weight_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """All weight tensors as ``("l{layer}.{name}", tensor)``, the naming of the compiled module."""
        if self.weights is None:
            return
        for lid in sorted(self.weights):
            for name in sorted(self.weights[lid]):
                yield f"l{lid}.{name}", self.weights[lid][name]

    # ------------------------------------------------------------------ identity
    def canonical_hash(self) -> str:
        """Hash of the architecture alone, independent of tensor/layer ids and of weights.

        Merkle-style: a tensor's hash combines its producer's spec, the hashes of the producer's inputs
        (ordered for Concat, sorted for Add) and how many layers read it.
        """
        h: dict[int, str] = {self.input_node: "in" + repr(self.input_shape)}
        for lid in self.topological_layers():
            layer = self.layers[lid]
            ins = [h[n] for n in self.layer_inputs[lid]]
            if layer.kind == "add":
                ins.sort()
            out = self.layer_output[lid]
            text = f"{json.dumps(layer.to_dict(), sort_keys=True)}|{'|'.join(ins)}|{self.nx.out_degree(out)}"
            h[out] = hashlib.sha1(text.encode()).hexdigest()
        return h[self.output_node] if self.output_node is not None else ""

    def summary(self) -> str:
        """One line per layer in topological order: id, layer, inputs -> output and shape."""
        lines = [f"input {self.input_node}: {self.input_shape}"]
        for lid in self.topological_layers():
            out = self.layer_output[lid]
            ins = ",".join(str(n) for n in self.layer_inputs[lid])
            lines.append(f"[{lid:3d}] {self.layers[lid].describe():32s} {ins:>9s} -> {out:<4d} {self.shape(out)}")
        lines.append(f"output {self.output_node}; {self.n_layers()} layers, depth {self.depth()}, "
                     f"{self.n_params():,} parameters, {self.n_skips()} skips")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Graph(input={self.input_shape}, layers={self.n_layers()}, params={self.n_params()}, "
                f"weights={self.has_weights})")

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """Versioned JSON-able description of the architecture (no weights)."""
        from morphnas.graph.serialization import graph_to_dict

        return graph_to_dict(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        from morphnas.graph.serialization import graph_from_dict

        return graph_from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """Rebuild an architecture from ``to_json()`` output; GraphError naming any problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphError(f"architecture is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, directory: str | Path) -> Path:
        """Write ``architecture.json`` (+ ``weights.safetensors`` if weighted) into ``directory``, atomically."""
        from morphnas.graph.serialization import save_graph

        return save_graph(self, directory)

    @classmethod
    def load(cls, directory: str | Path, weights: bool = True) -> Graph:
        """Read a graph written by ``save``; GraphError naming the file and the problem when malformed."""
        from morphnas.graph.serialization import load_graph

        return load_graph(directory, weights=weights)

    # ------------------------------------------------------------------ internal editing (morphisms)
    def _new_node(self, shape: Shape) -> int:
        node = self._next_node
        self._next_node += 1
        self.nx.add_node(node, shape=shape)
        return node

    def _new_layer(self, layer: Layer, inputs: tuple[int, ...], output: int,
                   weights: dict[str, torch.Tensor] | None, lid: int | None = None) -> int:
        if lid is None:
            lid = self._next_layer
        self._next_layer = max(self._next_layer, lid + 1)
        self.layers[lid] = layer
        self.layer_inputs[lid] = inputs
        self.layer_output[lid] = output
        self._producer[output] = lid
        for n in inputs:
            self.nx.add_edge(n, output, layer=lid)
        if self.weights is not None and weights:
            self.weights[lid] = weights
        self._topo = None
        return lid

    def _rewire(self, lid: int, old: int, new: int) -> None:
        """Make layer ``lid`` read tensor ``new`` where it read ``old``."""
        out = self.layer_output[lid]
        self.layer_inputs[lid] = tuple(new if n == old else n for n in self.layer_inputs[lid])
        self.nx.remove_edge(old, out)
        self.nx.add_edge(new, out, layer=lid)
        self._topo = None

    def _redirect_consumers(self, old: int, new: int, keep: set[int]) -> None:
        """Every reader of ``old`` except the layers in ``keep`` now reads ``new``; the output moves too."""
        for lid in self.consumers(old):
            if lid not in keep:
                self._rewire(lid, old, new)
        if self.output_node == old:
            self.output_node = new

    def _set_shape(self, node: int, shape: Shape) -> None:
        self.nx.nodes[node]["shape"] = shape

    def _replace_layer(self, lid: int, layer: Layer, weights: dict[str, torch.Tensor] | None) -> None:
        self.layers[lid] = layer
        if self.weights is not None:
            if weights:
                self.weights[lid] = weights
            else:
                self.weights.pop(lid, None)
