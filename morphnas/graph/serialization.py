"""Graph files on disk: ``architecture.json`` and ``weights.safetensors``. No pickle.

This module keeps the file I/O only: the dict form of a graph belongs to ``Graph.to_dict()`` /
``from_dict()``, and ``Graph.save`` / ``Graph.load`` call the functions here (this module never imports
graph.py). Writes are atomic (write to a temporary file in the same directory, then rename), so a crash
never leaves a half-written model behind. Every malformed file is a GraphError naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from morphnas.graph.errors import GraphError
from morphnas.graph.layers import Weights

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_FORMAT = "morphnas.weights"


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_graph_files(directory: str | Path, architecture_json: str,
                      tensors: Iterable[tuple[str, torch.Tensor]] | None, schema_version: int) -> Path:
    """Write ``architecture.json`` and, when ``tensors`` is given, ``weights.safetensors`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / ARCHITECTURE_FILE, lambda p: Path(p).write_text(architecture_json))
    if tensors is not None:
        state = {name: t.contiguous() for name, t in tensors}
        meta = {"format": WEIGHTS_FORMAT, "version": str(schema_version)}
        _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, p, metadata=meta))
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
    weights: Weights = {}
    for key, tensor in state.items():
        lid_text, _, name = key.partition(".")
        if not lid_text.startswith("l") or not lid_text[1:].isdigit() or not name:
            raise GraphError(f"{path}: unexpected tensor name {key!r} (expected 'l<layer id>.<name>')")
        if tensor.dtype != torch.float32:
            raise GraphError(f"{path}: tensor {key!r} is {tensor.dtype}, expected float32")
        weights.setdefault(int(lid_text[1:]), {})[name] = tensor
    return weights
