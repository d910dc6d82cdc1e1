"""Graph files on disk: ``architecture.json`` and ``weights.safetensors``. No pickle.

This module keeps the file I/O only: the dict form of a graph belongs to ``Graph.to_dict()`` /
``from_dict()``, and ``Graph.save`` / ``Graph.load`` call the functions here (this module never imports
graph.py). Writes are atomic (``morphnas.fileio.atomic_write``: temporary file, fsync, rename), so a crash
never leaves a half-written model behind. Every malformed file is a GraphError naming the file. A model also
travels as one bytes blob (safetensors with the architecture JSON in its metadata) between the driver and
its workers: no file, no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save, save_file

from morphnas.fileio import atomic_write
from morphnas.graph.errors import GraphError
from morphnas.graph.layers import Weights

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_FORMAT = "morphnas.weights"


def write_graph_files(directory: str | Path, architecture_json: str,
                      tensors: Iterable[tuple[str, torch.Tensor]] | None, schema_version: int) -> Path:
    """Write ``architecture.json`` and, when ``tensors`` is given, ``weights.safetensors`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / ARCHITECTURE_FILE, architecture_json)
    if tensors is not None:
        state = {name: t.contiguous() for name, t in tensors}
        meta = {"format": WEIGHTS_FORMAT, "version": str(schema_version)}
        atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=meta))
    return directory


def read_architecture_file(directory: str | Path) -> tuple[Any, Path]:
    """The parsed JSON of ``architecture.json`` in ``directory``, and the file's path."""
    arch = Path(directory) / ARCHITECTURE_FILE
    if not arch.is_file():
        raise GraphError(f"no {ARCHITECTURE_FILE} in {directory}")
    try:
        return json.loads(arch.read_text()), arch
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GraphError(f"{arch}: not valid JSON ({exc})") from None


def read_weights_file(path: str | Path) -> Weights:
    """The float32 tensors of a safetensors file, by layer id and name (keys ``l<layer id>.<name>``)."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GraphError(f"{path}: not a readable safetensors file ({exc})") from None
    return _weights_from_state(state, str(path))


def _weights_from_state(state: dict[str, torch.Tensor], path: str) -> Weights:
    weights: Weights = {}
    for key, tensor in state.items():
        lid_text, _, name = key.partition(".")
        if not lid_text.startswith("l") or not lid_text[1:].isdigit() or not name:
            raise GraphError(f"{path}: unexpected tensor name {key!r} (expected 'l<layer id>.<name>')")
        if tensor.dtype != torch.float32:
            raise GraphError(f"{path}: tensor {key!r} is {tensor.dtype}, expected float32")
        weights.setdefault(int(lid_text[1:]), {})[name] = tensor
    return weights


def graph_blob(architecture_json: str, tensors: Iterable[tuple[str, torch.Tensor]], schema_version: int) -> bytes:
    """A weighted graph as one safetensors blob, the architecture JSON in its metadata."""
    state = {name: t.contiguous() for name, t in tensors}
    meta = {"format": WEIGHTS_FORMAT, "version": str(schema_version), "architecture": architecture_json}
    return save(state, metadata=meta)


def read_graph_blob(data: bytes) -> tuple[Any, Weights]:
    """Inverse of ``graph_blob``: (the architecture's parsed JSON, the weights); GraphError when not a blob."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        architecture = json.loads(header["__metadata__"]["architecture"])
        state = load(data)
    except (KeyError, ValueError, TypeError, AttributeError, SafetensorError) as exc:
        raise GraphError(f"not a morphnas model blob ({type(exc).__name__}: {exc})") from None
    return architecture, _weights_from_state(state, "model blob")
