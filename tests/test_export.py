"""Exports for today's PyTorch: .pt2 (torch.export) and ONNX reproduce the trained model's logits on real
images, with a dynamic batch dimension; normalisation and labels travel with every format; TorchScript is
legacy and quiet; without the ONNX packages the rest still exports."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import morphnas
from morphnas.engine import export as export_module
from morphnas.engine.export import load_torchscript
from morphnas.trainer.datasets import FASHION_MNIST_CLASSES, load_demo

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "max_epochs": 1,
        "batch_size": 64, "quiet": True, "seed": 3, "max_params": 30_000, "max_width": 64}
ATOL = 1e-4

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = morphnas.search(out=str(root / "run"), max_trials=1, **TINY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run.export(root / "out")
    return run, result, caught


@pytest.fixture(scope="module")
def demo_images():
    """The demo test images as float32 pixel values, and the trained model's float32 logits on them."""
    return load_demo().test.x.float()


def reference_logits(run, images):
    with torch.inference_mode():
        return run.classifier()(images)


def test_pt2_reproduces_the_logits_on_the_demo_test_images_at_any_batch_size(exported, demo_images):
    run, result, _ = exported
    path = result["files"]["pt2"]
    assert path.endswith("model.pt2")
    program = torch.export.load(path)  # plain torch: no morphnas code involved
    net = program.module()
    expected = reference_logits(run, demo_images)
    with torch.inference_mode():
        got = net(demo_images)
        assert (got - expected).abs().max().item() <= ATOL
        for n in (1, 7):  # the batch dimension is dynamic
            assert (net(demo_images[:n]) - expected[:n]).abs().max().item() <= ATOL
    assert got.argmax(1).eq(expected.argmax(1)).all()
    extra = {"labels.json": "", "preprocessing.json": ""}
    torch.export.load(path, extra_files=extra)
    assert json.loads(extra["labels.json"])["class_names"] == list(FASHION_MNIST_CLASSES)
    pre = json.loads(extra["preprocessing.json"])
    assert pre["input_shape"] == [1, 28, 28] and len(pre["mean"]) == len(pre["std"]) == 1
    assert result["checked"]["pt2"] <= ATOL


def test_onnx_reproduces_the_logits_on_the_demo_test_images_with_onnxruntime(exported, demo_images):
    run, result, _ = exported
    session = onnxruntime.InferenceSession(result["files"]["onnx"], providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name, inp.type) == ("images", "logits", "tensor(float)")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 28, 28]  # dynamic batch
    expected = reference_logits(run, demo_images).numpy()
    images = demo_images.numpy()
    got = session.run(None, {"images": images})[0]
    assert np.abs(got - expected).max() <= ATOL
    assert np.abs(session.run(None, {"images": images[:1]})[0] - expected[:1]).max() <= ATOL
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == list(FASHION_MNIST_CLASSES)
    assert json.loads(meta["label_values"]) == list(range(10))
    assert json.loads(meta["mean"]) == json.loads((run.path / "normalization.json").read_text())["mean"]
    assert result["checked"]["onnx"] <= ATOL


def test_every_format_carries_labels_and_normalisation_and_torchscript_is_legacy_and_quiet(exported, demo_images):
    run, result, caught = exported
    files = result["files"]
    assert set(files) == {"architecture", "weights", "code", "labels", "preprocessing", "pt2", "onnx",
                          "torchscript"}
    assert result["skipped"] == {}
    labels = json.loads(open(files["labels"]).read())
    assert labels == {"class_names": list(FASHION_MNIST_CLASSES), "label_values": list(range(10)),
                      "label_type": "int64"}
    pre = json.loads(open(files["preprocessing"]).read())
    assert pre["class_names"] == labels["class_names"] and pre["source"] == f"trial {run.best.id}"
    # no deprecation warning from TorchScript (or the exporters' internals) reaches the user
    noisy = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not noisy, [str(w.message) for w in noisy]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        scripted = load_torchscript(files["torchscript"])
    expected = reference_logits(run, demo_images[:50])
    assert (scripted(demo_images[:50]) - expected).abs().max().item() <= ATOL
    extra = {"labels.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(files["torchscript"], _extra_files=extra)
    assert json.loads(extra["labels.json"]) == labels
    # the standalone model.py: same logits, labels of its own
    spec = importlib.util.spec_from_file_location("exported_model_py", files["code"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        logits = module.load()(demo_images[:50])
    assert (logits - expected).abs().max().item() <= ATOL
    assert module.labels(logits) == expected.argmax(1).tolist()
    assert module.CLASS_NAMES == list(FASHION_MNIST_CLASSES)


def test_the_cli_lists_the_new_formats_and_marks_torchscript_legacy(exported, tmp_path, capsys):
    from morphnas.cli import main

    run, _, _ = exported
    assert main(["export", str(run.path), "--out", str(tmp_path / "cli")]) == 0
    text = capsys.readouterr().out
    for name in ("model.pt2", "model.onnx", "model.py", "labels.json", "preprocessing.json", "weights.safetensors"):
        assert name in text
    assert "model.pt  (legacy" in text and "checked against the trained model" in text


def test_without_the_onnx_packages_the_other_formats_are_exported(exported, tmp_path, monkeypatch):
    run, _, _ = exported
    monkeypatch.setattr(export_module, "onnx_available", lambda: False)
    with pytest.warns(UserWarning, match=r"morphnas\[export\]"):
        result = run.export(tmp_path / "no-onnx")
    assert "onnx" not in result["files"] and "pt2" in result["files"] and "torchscript" in result["files"]
    assert "pip install 'morphnas[export]'" in result["skipped"]["onnx"]
    assert not (tmp_path / "no-onnx" / "model.onnx").exists()
    with pytest.raises(ImportError, match=r"morphnas\[export\]"):
        export_module.export(run.path, tmp_path / "onnx-only", formats=["onnx"])
    with pytest.raises(ValueError, match="unknown export formats \\['tflite'\\]"):
        export_module.export(run.path, tmp_path / "x", formats=["tflite"])


def test_morphnas_imports_without_the_onnx_packages():
    code = ("import sys\n"
            "for m in ('onnx', 'onnxscript', 'onnxruntime', 'onnx_ir'):\n"
            "    sys.modules[m] = None\n"
            "import morphnas, morphnas.engine.export as e\n"
            "assert not e.onnx_available()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
