"""Graphs on disk: ``architecture.json`` (versioned schema) and ``weights.safetensors``. No pickle.

Writes are atomic (write to a temporary file in the same directory, then rename), so a crash never
leaves a half-written model behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save, save_file

from morphnas.fileio import atomic_write
from morphnas.graph.graph import Graph, GraphError, Weights
from morphnas.graph.layers import layer_from_dict

FORMAT = "morphnas.architecture"
SCHEMA_VERSION = 1
ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The architecture as a JSON-able dict: layers in topological order with their wiring."""
    return {
        "format": FORMAT,
        "version": SCHEMA_VERSION,
        "input_shape": list(graph.input_shape),
        "input_node": graph.input_node,
        "output_node": graph.output_node,
        "layers": [
            {"id": lid, "inputs": list(graph.layer_inputs[lid]), "output": graph.layer_output[lid],
             "spec": graph.layers[lid].to_dict()}
            for lid in graph.topological_layers()
        ],
        "next_ids": {"node": graph._next_node, "layer": graph._next_layer},
        "history": graph.history,
    }


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise GraphError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GraphError(f"{where}: {key!r} must be of type {kind.__name__}, got {value!r}")
    return value


def graph_from_dict(data: dict[str, Any]) -> Graph:
    """Rebuild a Graph from ``graph_to_dict`` output, validating everything; GraphError on any problem."""
    where = "architecture"
    if not isinstance(data, dict):
        raise GraphError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise GraphError(f"{where}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    version = _require(data, "version", int, where)
    if not 1 <= version <= SCHEMA_VERSION:
        raise GraphError(f"{where}: schema version {version} is not supported (this morphnas reads "
                         f"versions 1..{SCHEMA_VERSION})")
    input_shape = _require(data, "input_shape", list, where)
    input_node = _require(data, "input_node", int, where)
    graph = Graph(tuple(input_shape))
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
            if spec.n_inputs == 1 and len(inputs) != 1:
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


def save_graph(graph: Graph, directory: str | Path) -> Path:
    """Write ``architecture.json`` and, for a weighted graph, ``weights.safetensors`` into ``directory``."""
    graph.validate()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = graph.to_json()
    atomic_write(directory / ARCHITECTURE_FILE, text)
    if graph.weights is not None:
        tensors = {name: t.contiguous() for name, t in graph.weight_tensors()}
        meta = {"format": "morphnas.weights", "version": str(SCHEMA_VERSION)}
        atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata=meta))
    return directory


def load_weights_file(graph: Graph, path: Path) -> Weights:
    """Read a safetensors file of graph weights, checked against the graph's layers."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GraphError(f"{path}: not a readable safetensors file ({exc})") from None
    return _weights_from_state(graph, state, str(path))


def _weights_from_state(graph: Graph, state: dict[str, torch.Tensor], where: str) -> Weights:
    weights: Weights = {}
    for key, tensor in state.items():
        lid_text, _, name = key.partition(".")
        if not lid_text.startswith("l") or not lid_text[1:].isdigit() or not name:
            raise GraphError(f"{where}: unexpected tensor name {key!r} (expected 'l<layer id>.<name>')")
        if tensor.dtype != torch.float32:
            raise GraphError(f"{where}: tensor {key!r} is {tensor.dtype}, expected float32")
        weights.setdefault(int(lid_text[1:]), {})[name] = tensor
    try:
        graph._validate_weights(weights)
    except GraphError as exc:
        raise GraphError(f"{where}: weights do not match the architecture: {exc}") from None
    return weights


def graph_to_bytes(graph: Graph) -> bytes:
    """A weighted graph as one self-contained safetensors blob (the architecture JSON in its metadata): how a
    model travels between the driver and a worker, with no file and no pickle."""
    if graph.weights is None:
        raise GraphError("graph_to_bytes needs a weighted graph")
    tensors = {name: t.contiguous() for name, t in graph.weight_tensors()}
    meta = {"format": "morphnas.weights", "version": str(SCHEMA_VERSION), "architecture": graph.to_json()}
    return save(tensors, metadata=meta)


def graph_from_bytes(data: bytes) -> Graph:
    """Inverse of ``graph_to_bytes``; GraphError when the blob is not one."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        graph = graph_from_dict(json.loads(header["__metadata__"]["architecture"]))
        state = load(data)
    except (KeyError, ValueError, TypeError, AttributeError, SafetensorError) as exc:
        raise GraphError(f"not a morphnas model blob ({type(exc).__name__}: {exc})") from None
    graph.weights = _weights_from_state(graph, state, "model blob")
    return graph


def load_graph(directory: str | Path, weights: bool = True) -> Graph:
    """Read a graph saved by ``save_graph``; GraphError naming the file and the problem when malformed."""
    directory = Path(directory)
    arch = directory / ARCHITECTURE_FILE
    if not arch.is_file():
        raise GraphError(f"no {ARCHITECTURE_FILE} in {directory}")
    try:
        data = json.loads(arch.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GraphError(f"{arch}: not valid JSON ({exc})") from None
    try:
        graph = graph_from_dict(data)
    except GraphError as exc:
        raise GraphError(f"{arch}: {exc}") from None
    wpath = directory / WEIGHTS_FILE
    if weights and wpath.is_file():
        graph.weights = load_weights_file(graph, wpath)
    return graph
