"""Export a trained model out of a run: TorchScript, and architecture.json + safetensors with a standalone
``model.py`` that rebuilds it with nothing but PyTorch and safetensors (no morphnas needed).

Both exported forms take raw images (uint8 or float in pixel units, N×C×H×W) and include the input
normalisation the network was trained with.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from morphnas.engine.results import classifier, pick_trial
from morphnas.engine.setup import stored_config
from morphnas.graph.graph import Graph
from morphnas.storage.rundir import RunDir


def standalone_code(graph: Graph, mean: list[float], std: list[float], class_names: list[str]) -> str:
    """Python source of an ``nn.Module`` computing ``graph`` on raw images, plus a ``load()`` function.

    Each layer writes its own code: ``module_code()`` for a submodule ``l<id>``, else ``apply_code()``.
    """
    init, body = [], []
    name = {graph.input_node: "x"}
    for lid in graph.topological_layers():
        layer = graph.layers[lid]
        ins = [name[n] for n in graph.layer_inputs[lid]]
        out = f"t{graph.layer_output[lid]}"
        name[graph.layer_output[lid]] = out
        module_code = layer.module_code()
        if module_code is None:
            expr = layer.apply_code(ins)
        else:
            init.append(f"        self.l{lid} = {module_code}")
            expr = f"self.l{lid}({', '.join(ins)})"
        body.append(f"        {out} = {expr}")
    body.append(f"        return {name[graph.output_node]}")
    return f'''"""A network found by morphnas, as plain PyTorch. Needs only torch and safetensors.

    from model import load
    net = load()                      # reads weights.safetensors next to this file
    logits = net(images)              # raw pixel values (uint8 or float), N x C x H x W = INPUT_SHAPE
"""

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

CLASS_NAMES = {class_names!r}
INPUT_SHAPE = {tuple(graph.input_shape)!r}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor({mean!r}).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor({std!r}).view(1, -1, 1, 1))
{chr(10).join(init)}

    def forward(self, images):
        x = (images.float() - self.mean) / self.std
{chr(10).join(body)}


def load(directory=None):
    """The trained network in eval mode, weights from ``weights.safetensors`` in ``directory``."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    net = Net()
    state = load_file(str(directory / "weights.safetensors"))
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and k not in ("mean", "std")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit: missing {{missing}}, unexpected {{unexpected}}")
    return net.eval()
'''


def export(path: str | Path, out: str | Path, trial: int | None = None, final: bool = False) -> dict[str, Any]:
    """Write the best (or given, or final) model of the run in ``path`` into ``out``; returns what was written."""
    run = RunDir.open(path)
    try:
        stored_config(run)  # imports the run's plugins
        norm = run.normalization()
        if final:
            graph, source = run.load_final_model(), "final"
        else:
            record = pick_trial(run, trial)
            graph, source = run.load_model(record.id), f"trial {record.id}"
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        graph.save(out)
        (out / "model.py").write_text(standalone_code(graph, norm["mean"], norm["std"], norm["class_names"]))
        (out / "preprocessing.json").write_text(json.dumps(norm | {"source": source}, indent=1))
        model = classifier(run, trial, final=final)
        files = {"architecture": str(out / "architecture.json"), "weights": str(out / "weights.safetensors"),
                 "code": str(out / "model.py"), "preprocessing": str(out / "preprocessing.json")}
        with warnings.catch_warnings():  # TorchScript is in maintenance mode; it still serves deployment
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model)
        scripted.save(str(out / "model.pt"))
        files["torchscript"] = str(out / "model.pt")
        return {"source": source, "files": files}
    finally:
        run.close()


def load_torchscript(path: str | Path) -> nn.Module:
    """Load an exported ``model.pt`` (no morphnas code involved)."""
    return torch.jit.load(str(path)).eval()
