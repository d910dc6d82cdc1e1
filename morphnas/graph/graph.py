"""The architecture IR: a DAG whose nodes are tensors and whose edges are layers.

The topology lives in a networkx ``DiGraph`` (node = tensor id with its per-sample ``shape``; edge
``u -> v`` carries the id of the layer that reads ``u`` and writes ``v``). A multi-input layer (Add,
Concat) is one layer id on several edges; its ordered inputs are kept in ``layer_inputs``. A graph may
carry weights: one dict of CPU float32 tensors per layer. Weight tensors are never modified in place, so
a morphed child shares the tensors of the layers it did not change with its parent. The graph's versioned
dict (JSON) form is defined here too; reading and writing files is ``serialization``'s job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch

from morphnas.graph.compile import Step, build_module
from morphnas.graph.errors import GraphError
from morphnas.graph.layers import Layer, Shape, ShapeError, Weights, layer_from_dict
from morphnas.graph.serialization import (
    WEIGHTS_FILE,
    graph_blob,
    read_architecture_file,
    read_graph_blob,
    read_weights_file,
    write_graph_files,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURE_FORMAT", "SCHEMA_VERSION", "Graph", "GraphError", "Weights"]
ARCHITECTURE_FORMAT = "morphnas.architecture"
SCHEMA_VERSION = 1


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
        if not layer.merge and len(inputs) != 1:
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

    def macs(self) -> int:
        """Multiply-accumulates per image of one forward pass: the sum of each layer's ``Layer.macs``.

        Convolutions and dense layers count, element-wise layers count 0 (the convention of ``layers.py``); a
        kind with tensors that does not define its cost raises ``NotImplementedError`` naming it.
        """
        return sum(self.layers[lid].macs([self.shape(n) for n in self.layer_inputs[lid]],
                                         self.shape(self.layer_output[lid])) for lid in self.layers)

    def known_macs(self) -> int | None:
        """``macs()``, or None when a layer kind (a plugin's) cannot say its cost: for callers that record or
        cap the cost where it is known and must not fail where it is not."""
        try:
            return self.macs()
        except NotImplementedError:
            return None

    def flops(self) -> int:
        """Floating-point operations per image of one forward pass, 2 × ``macs()``: what
        ``torch.utils.flop_counter.FlopCounterMode`` counts for ``to_module()`` on one image."""
        return 2 * self.macs()

    def n_layers(self) -> int:
        return len(self.layers)

    def max_width(self) -> int:
        """Largest number of output channels / units of any layer with units (Conv2d, Dense)."""
        widths = [self.shape(self.layer_output[lid])[0] for lid, lay in self.layers.items() if lay.has_units]
        return max(widths, default=0)

    def depth(self) -> int:
        """Number of layers with units (Conv2d, Dense) on the longest input-to-output path."""
        best: dict[int, int] = {self.input_node: 0}
        for lid in self.topological_layers():
            inc = 1 if self.layers[lid].has_units else 0
            best[self.layer_output[lid]] = max(best[n] for n in self.layer_inputs[lid]) + inc
        return best.get(self.output_node, 0) if self.output_node is not None else 0

    def n_skips(self) -> int:
        """Number of merge layers (Add, Concat): each closes one skip connection."""
        return sum(1 for lay in self.layers.values() if lay.merge)

    def is_nonnegative(self, node: int) -> bool:
        """True when tensor ``node`` is provably >= 0 (a ReLU output, or pooled/merged such outputs)."""
        lid = self.producer(node)
        if lid is None:
            return False
        layer = self.layers[lid]
        if layer.makes_nonnegative:
            return True
        if layer.keeps_nonnegative:
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
            self.check_weights(self.weights)
        return self

    def check_weights(self, weights: Weights) -> None:
        """Raise GraphError unless ``weights`` has exactly the tensors (names and shapes) this graph's layers need."""
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
        self.validate()
        steps = [Step(lid, self.layers[lid], self.layer_inputs[lid], self.layer_output[lid], self._may_run_inplace(lid))
                 for lid in self.topological_layers()]
        return build_module(self.input_node, steps, self.output_node, self.weights)

    def _may_run_inplace(self, lid: int) -> bool:
        """Layer ``lid`` may overwrite its single input: no other layer reads it, its producer's backward won't."""
        inputs = self.layer_inputs[lid]
        if len(inputs) != 1:
            return False
        producer = self.producer(inputs[0])
        return (producer is not None and self.layers[producer].output_free_in_backward
                and len(self.consumers(inputs[0])) == 1)

    def with_weights_from(self, module: nn.Module) -> Graph:
        """A copy of this graph carrying the (trained) weights of ``module``, compiled from this graph."""
        state = module.state_dict()
        weights: Weights = {}
        for lid, layer in self.layers.items():
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
        g = self.copy()
        g.check_weights(weights)
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
        (in order, or sorted for a commutative layer like Add) and how many layers read it.
        """
        h: dict[int, str] = {self.input_node: "in" + repr(self.input_shape)}
        for lid in self.topological_layers():
            layer = self.layers[lid]
            ins = [h[n] for n in self.layer_inputs[lid]]
            if layer.commutative:
                ins.sort()
            out = self.layer_output[lid]
            text = f"{layer.spec_json}|{'|'.join(ins)}|{self.nx.out_degree(out)}"
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
        """Versioned JSON-able description of the architecture (no weights): layers in topological order."""
        return {
            "format": ARCHITECTURE_FORMAT,
            "version": SCHEMA_VERSION,
            "input_shape": list(self.input_shape),
            "input_node": self.input_node,
            "output_node": self.output_node,
            "layers": [
                {"id": lid, "inputs": list(self.layer_inputs[lid]), "output": self.layer_output[lid],
                 "spec": self.layers[lid].to_dict()}
                for lid in self.topological_layers()
            ],
            "next_ids": {"node": self._next_node, "layer": self._next_layer},
            "history": self.history,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Graph:
        """Rebuild a Graph from ``to_dict()`` output, validating everything; GraphError on any problem."""
        where = "architecture"
        if not isinstance(data, dict):
            raise GraphError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != ARCHITECTURE_FORMAT:
            raise GraphError(f"{where}: 'format' must be {ARCHITECTURE_FORMAT!r}, got {data.get('format')!r}")
        version = _require(data, "version", int, where)
        if not 1 <= version <= SCHEMA_VERSION:
            raise GraphError(f"{where}: schema version {version} is not supported (this morphnas reads "
                             f"versions 1..{SCHEMA_VERSION})")
        input_shape = _require(data, "input_shape", list, where)
        input_node = _require(data, "input_node", int, where)
        graph = cls(tuple(input_shape))
        graph.nx.clear()
        graph.input_node = input_node
        graph.nx.add_node(input_node, shape=graph.input_shape)
        for i, entry in enumerate(_require(data, "layers", list, where)):
            here = f"{where}: layer #{i}"
            if not isinstance(entry, dict):
                raise GraphError(f"{here}: expected an object, got {entry!r}")
            lid = _require(entry, "id", int, here)
            inputs = tuple(_require(entry, "inputs", list, here))
            output = _require(entry, "output", int, here)
            if lid in graph.layers:
                raise GraphError(f"{here}: duplicate layer id {lid}")
            if output in graph.nx:
                raise GraphError(f"{here}: tensor {output} is written twice (or is the input)")
            unknown = [n for n in inputs if not isinstance(n, int) or n not in graph.nx]
            if unknown:
                raise GraphError(f"{here} (id {lid}): reads tensors {unknown} that no earlier layer writes "
                                 "(layers must be listed in topological order)")
            if len(set(inputs)) != len(inputs) or not inputs:
                raise GraphError(f"{here} (id {lid}): inputs must be distinct and non-empty, got {list(inputs)}")
            try:
                spec = layer_from_dict(_require(entry, "spec", dict, here))
                if not spec.merge and len(inputs) != 1:
                    raise ValueError(f"{spec.kind} takes exactly one input, got {len(inputs)}")
                shape = spec.output_shape([graph.shape(n) for n in inputs])
            except ValueError as exc:
                raise GraphError(f"{here} (id {lid}): {exc}") from None
            graph.nx.add_node(output, shape=shape)
            graph._new_layer(spec, inputs, output, None, lid=lid)
        output_node = _require(data, "output_node", int, where)
        if output_node not in graph.nx:
            raise GraphError(f"{where}: output_node {output_node} is not a tensor of the graph")
        graph.output_node = output_node
        next_ids = data.get("next_ids", {})
        if not isinstance(next_ids, dict):
            raise GraphError(f"{where}: 'next_ids' must be an object")
        graph._next_node = max(int(next_ids.get("node", 0)), max(graph.nx) + 1)
        graph._next_layer = max(int(next_ids.get("layer", 0)), max(graph.layers, default=-1) + 1)
        history = data.get("history", [])
        if not isinstance(history, list):
            raise GraphError(f"{where}: 'history' must be a list")
        graph.history = history
        graph.validate()
        return graph

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
        self.validate()
        tensors = list(self.weight_tensors()) if self.weights is not None else None
        return write_graph_files(directory, self.to_json(), tensors, SCHEMA_VERSION)

    @classmethod
    def load(cls, directory: str | Path, weights: bool = True) -> Graph:
        """Read a graph written by ``save``; GraphError naming the file and the problem when malformed."""
        data, arch = read_architecture_file(directory)
        try:
            graph = cls.from_dict(data)
        except GraphError as exc:
            raise GraphError(f"{arch}: {exc}") from None
        wpath = Path(directory) / WEIGHTS_FILE
        if weights and wpath.is_file():
            graph._attach_weights(read_weights_file(wpath), str(wpath))
        return graph

    def _attach_weights(self, tensors: Weights, where: str) -> None:
        """Give this graph ``tensors`` after checking them; GraphError naming ``where`` when they do not fit."""
        try:
            self.check_weights(tensors)
        except GraphError as exc:
            raise GraphError(f"{where}: weights do not match the architecture: {exc}") from None
        self.weights = tensors

    def to_bytes(self) -> bytes:
        """The weighted graph as one self-contained bytes blob (safetensors, architecture in its metadata): how a
        model travels between the driver and a worker, with no file and no pickle."""
        if self.weights is None:
            raise GraphError("to_bytes needs a weighted graph: init_weights() or train it first")
        self.validate()
        return graph_blob(self.to_json(), self.weight_tensors(), SCHEMA_VERSION)

    @classmethod
    def from_bytes(cls, data: bytes) -> Graph:
        """Inverse of ``to_bytes``; GraphError when ``data`` is not such a blob or does not fit its architecture."""
        architecture, tensors = read_graph_blob(data)
        graph = cls.from_dict(architecture)
        graph._attach_weights(tensors, "model blob")
        return graph

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


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """``data[key]`` when present and of type ``kind`` (bool never counts as int), else GraphError."""
    if key not in data:
        raise GraphError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GraphError(f"{where}: {key!r} must be of type {kind.__name__}, got {value!r}")
    return value
