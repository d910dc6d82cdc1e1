"""Export a trained model out of a run, in the formats today's PyTorch deploys from.

``export(run, out)`` writes into ``out``:

============================  ===============================================================================
``model.pt2``                 ``torch.export`` program (``torch.export.load(path).module()``), batch dimension
                              dynamic; ``labels.json`` and ``preprocessing.json`` inside as extra files
``model.onnx``                ONNX from torch's dynamo exporter (needs the ``export`` extra: onnx, onnxscript;
                              onnxruntime to check it), batch dimension dynamic, input ``images``, output
                              ``logits``; labels and normalisation in its ``metadata_props``
``architecture.json``,        the graph and its weights, and a generated ``model.py`` that rebuilds the network
``weights.safetensors``,      with nothing but torch and safetensors (no morphnas needed)
``model.py``
``model.pt``                  TorchScript, **legacy**: written while the installed torch still has
                              ``torch.jit.script`` (deprecated in torch 2.13); prefer ``.pt2``
``labels.json``               class names and the user's label of each class (``label_values``, ``label_type``)
``preprocessing.json``        mean, std, input shape, labels, where the model came from, what goes in and out
============================  ===============================================================================

Every model takes raw images in pixel units (N×C×H×W; float32 for ``.pt2`` and ONNX, uint8 or float for the
others) and includes the input normalisation the network was trained with; its output is one logit per class,
class ``i`` being ``label_values[i]``. ONNX and ``.pt2`` are checked against the trained model before
``export`` returns (a batch size other than the traced one, so the dynamic batch is checked too).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morphnas.engine.results import classifier, pick_trial
from morphnas.engine.setup import stored_config
from morphnas.graph.graph import Graph
from morphnas.storage.rundir import RunDir
from morphnas.trainer.arrays import LabelEncoding

FORMATS = ("pt2", "onnx", "torchscript")
LABELS_FILE = "labels.json"
PREPROCESSING_FILE = "preprocessing.json"
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
ONNX_MISSING = ("ONNX export needs the packages onnx and onnxscript (and onnxruntime to check the model): "
                "pip install 'morphnas[export]'")
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-4


def standalone_code(graph: Graph, mean: list[float], std: list[float], class_names: list[str],
                    labels: LabelEncoding | None = None) -> str:
    """Python source of an ``nn.Module`` computing ``graph`` on raw images, plus ``load()`` and ``labels()``.

    Each layer writes its own code: ``module_code()`` for a submodule ``l<id>``, else ``apply_code()``.
    """
    labels = labels if labels is not None else LabelEncoding.identity(len(class_names))
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

    from model import load, labels
    net = load()                      # reads weights.safetensors next to this file
    logits = net(images)              # raw pixel values (uint8 or float), N x C x H x W = INPUT_SHAPE
    labels(logits)                    # the predicted label of each image (LABEL_VALUES[class index])
"""

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

CLASS_NAMES = {list(class_names)!r}
LABEL_VALUES = {list(labels.values)!r}  # class i is LABEL_VALUES[i]
LABEL_TYPE = {labels.label_type!r}
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


def labels(logits):
    """The predicted label of each row of ``logits``."""
    return [LABEL_VALUES[i] for i in logits.argmax(1).tolist()]
'''


# ---------------------------------------------------------------------------------------------- formats
def onnx_available() -> bool:
    """Whether torch's ONNX exporter can run here (the ``export`` extra: onnx and onnxscript)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def torchscript_available() -> bool:
    """Whether the installed torch still has TorchScript (legacy; deprecated in favour of torch.export)."""
    return callable(getattr(getattr(torch, "jit", None), "script", None))


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Keep torch's internal warnings and log lines about itself (deprecations inside the exporters, optional
    torchvision ops) away from the user: they say nothing about the exported model."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch.fx")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _example(input_shape: Iterable[int], batch: int, seed: int = 0) -> torch.Tensor:
    """Raw float32 images in pixel units (0-255)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *input_shape), generator=g) * 255


def export_program(model: nn.Module, input_shape: Iterable[int]) -> torch.export.ExportedProgram:
    """``model`` (raw float32 images in, logits out) through ``torch.export`` with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1)
    with _quiet_torch():
        return torch.export.export(model, (_example(input_shape, 2),), dynamic_shapes=({0: batch},))


def write_onnx(model: nn.Module, input_shape: Iterable[int], path: Path, metadata: dict[str, str]) -> None:
    """``model`` as ONNX through torch's dynamo exporter, batch dimension ``batch``, ``metadata`` in the
    model's ``metadata_props``."""
    if not onnx_available():
        raise ImportError(ONNX_MISSING)
    with _quiet_torch():
        program = torch.onnx.export(model, (_example(input_shape, 2),), dynamo=True, input_names=[ONNX_INPUT],
                                    output_names=[ONNX_OUTPUT], dynamic_shapes=({0: "batch"},), verbose=False)
    assert program is not None
    program.model.metadata_props.update(metadata)
    program.save(str(path))


def write_torchscript(model: nn.Module, path: Path, extra_files: dict[str, str]) -> None:
    """Legacy TorchScript (``torch.jit.script``), its deprecation warning kept from the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        scripted.save(str(path), _extra_files=extra_files)


def _max_difference(expected: torch.Tensor, got: Any, what: str) -> float:
    got = torch.as_tensor(np.asarray(got))
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=CHECK_ATOL, rtol=CHECK_RTOL):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else f"shape {tuple(got.shape)}"
        raise RuntimeError(f"the exported {what} does not reproduce the trained model (difference {diff}); "
                           "please report this")
    return float((got - expected).abs().max())


# ---------------------------------------------------------------------------------------------- export
def export(path: str | Path, out: str | Path, trial: int | None = None, final: bool = False,
           formats: Iterable[str] | None = None) -> dict[str, Any]:
    """Write the best (or given, or final) model of the run in ``path`` into ``out``.

    ``formats`` chooses among ``FORMATS`` (default: all; then ONNX is skipped, with a warning, when the
    ``export`` extra is not installed, and TorchScript when torch no longer has it). architecture.json,
    weights.safetensors, model.py, labels.json and preprocessing.json are always written.
    Returns ``{"source", "files": {kind: path}, "skipped": {format: why}, "checked": {format: max |Δ logit|}}``.
    """
    chosen = tuple(FORMATS if formats is None else formats)
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; valid: {', '.join(FORMATS)}")
    if formats is not None and "onnx" in chosen and not onnx_available():
        raise ImportError(ONNX_MISSING)
    run = RunDir.open(path)
    try:
        config = stored_config(run)  # imports the run's plugins
        final = final or (config.mode == "train" and trial is None)  # a `morphnas train` run: its one model
        norm = run.normalization()
        if final:
            graph, source = run.load_final_model(), "final"
        else:
            record = pick_trial(run, trial)
            graph, source = run.load_model(record.id), f"trial {record.id}"
        model = classifier(run, trial, final=final)
    finally:
        run.close()
    labels = LabelEncoding.from_dict(norm, len(norm["class_names"]))
    label_info = {"class_names": list(norm["class_names"]), **labels.to_dict()}
    input_shape = tuple(int(d) for d in norm["input_shape"])
    preprocessing = {"mean": norm["mean"], "std": norm["std"], "input_shape": list(input_shape), **label_info,
                     "source": source,
                     "input": "raw images in pixel units, N x C x H x W = (N, *input_shape); float32 for model.pt2 "
                              "and model.onnx; the normalisation (x - mean) / std is part of every model",
                     "output": "logits N x classes; class i is label_values[i] (class_names[i] as text)"}
    extra = {LABELS_FILE: json.dumps(label_info, indent=1), PREPROCESSING_FILE: json.dumps(preprocessing, indent=1)}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    graph.save(out)
    (out / "model.py").write_text(standalone_code(graph, norm["mean"], norm["std"], norm["class_names"], labels))
    for name, text in extra.items():
        (out / name).write_text(text)
    files = {"architecture": str(out / "architecture.json"), "weights": str(out / "weights.safetensors"),
             "code": str(out / "model.py"), "labels": str(out / LABELS_FILE),
             "preprocessing": str(out / PREPROCESSING_FILE)}
    skipped: dict[str, str] = {}
    checked: dict[str, float] = {}
    probe = _example(input_shape, 3, seed=1)  # not the traced batch size: checks the dynamic batch dimension
    with torch.inference_mode():
        expected = model(probe)

    if "pt2" in chosen:
        program = export_program(model, input_shape)
        torch.export.save(program, str(out / "model.pt2"), extra_files=extra)
        files["pt2"] = str(out / "model.pt2")
        with torch.inference_mode():
            checked["pt2"] = _max_difference(expected, load_pt2(out / "model.pt2")(probe), "model.pt2")
    if "onnx" in chosen:
        if onnx_available():
            metadata = {k: json.dumps(v) for k, v in preprocessing.items() if k not in ("input", "output")}
            metadata.update(input=preprocessing["input"], output=preprocessing["output"])
            write_onnx(model, input_shape, out / "model.onnx", metadata)
            files["onnx"] = str(out / "model.onnx")
            if importlib.util.find_spec("onnxruntime") is not None:
                got = run_onnx(out / "model.onnx", probe.numpy())
                checked["onnx"] = _max_difference(expected, got, "model.onnx")
        else:
            skipped["onnx"] = ONNX_MISSING
            warnings.warn(f"model.onnx not written: {ONNX_MISSING}", UserWarning, stacklevel=2)
    if "torchscript" in chosen:
        if torchscript_available():
            write_torchscript(model, out / "model.pt", extra)
            files["torchscript"] = str(out / "model.pt")
        else:
            skipped["torchscript"] = f"torch {torch.__version__} has no TorchScript any more; use model.pt2"
    return {"source": source, "files": files, "skipped": skipped, "checked": checked}


# ---------------------------------------------------------------------------------------------- loading
def load_pt2(path: str | Path) -> nn.Module:
    """Load an exported ``model.pt2`` as a module taking float32 raw images (no morphnas code involved)."""
    with _quiet_torch():
        return torch.export.load(str(path)).module()


def read_extra(path: str | Path, name: str = LABELS_FILE) -> dict[str, Any]:
    """A JSON file stored inside ``model.pt2`` (``labels.json`` or ``preprocessing.json``)."""
    extra = {name: ""}
    with _quiet_torch():
        torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[name])


def run_onnx(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Logits of ``model.onnx`` on float32 raw images, with onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(images, dtype=np.float32)})[0]


def load_torchscript(path: str | Path) -> nn.Module:
    """Load an exported ``model.pt`` (legacy TorchScript; no morphnas code involved)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path)).eval()
