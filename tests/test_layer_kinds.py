"""A layer kind lives in one place: a kind defined and registered only here compiles, serialises, widens and
exports, and the graph package's modules import each other without cycles."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import networkx as nx
import pytest
import torch
from torch import nn

import morphnas.graph
from morphnas.engine.export import standalone_code
from morphnas.graph import Conv2d, Dense, GlobalAvgPool, Graph, Layer, ReLU, ShapeError
from morphnas.graph.layers import LAYER_KINDS, Shape, register_layer
from morphnas.graph.morphisms import replay, wider
from morphnas.searcher.distance import SEQUENCE_KINDS, describe, edit_distance
from morphnas.searcher.kernels.wl import node_label


@register_layer
@dataclass(frozen=True)
class ChannelPReLU(Layer):
    """PReLU with one learned slope per channel: a weighted, channel-wise kind known only to this test."""

    kind: ClassVar[str] = "test_channel_prelu"
    channelwise: ClassVar[bool] = True
    size_attributes: ClassVar[tuple[str, ...]] = ("num_features",)
    num_features: int

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = self._one(inputs)
        if shape[0] != self.num_features:
            raise ShapeError(f"channel prelu expects {self.num_features} channels, got {shape[0]}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.num_features,)}

    def init_weights(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"weight": 0.1 + 0.4 * torch.rand(self.num_features, generator=generator)}

    def module(self) -> nn.Module:
        return nn.PReLU(self.num_features)

    def module_code(self) -> str:
        return f"nn.PReLU({self.num_features})"

    def widened(self, in_width: int, out_width: int) -> Layer:
        return ChannelPReLU(out_width)

    def n_params(self) -> int:
        return self.num_features


def _net() -> Graph:
    g = Graph((3, 8, 8))
    x = g.add_layer(Conv2d(3, 4), 0)  # layer 0: the one widened below
    x = g.add_layer(ChannelPReLU(4), x)
    x = g.add_layer(Conv2d(4, 6, stride=2), x)
    x = g.add_layer(ReLU(), x)
    x = g.add_layer(GlobalAvgPool(), x)
    g.set_output(g.add_layer(Dense(6, 5), x))
    return g.init_weights(seed=3)


def test_a_kind_registered_in_one_place_compiles_serialises_widens_and_exports(tmp_path: Path) -> None:
    g = _net()
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    module = g.to_module().eval()
    assert g.n_params() == sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        expected = module(images)

    # JSON round trip and files on disk
    again = Graph.from_json(g.to_json())
    assert again.layers[1] == ChannelPReLU(4) and again.canonical_hash() == g.canonical_hash()
    g.save(tmp_path / "parent")
    loaded = Graph.load(tmp_path / "parent")
    with torch.no_grad():
        assert torch.equal(loaded.to_module().eval()(images), expected)

    # wider on the conv before it propagates through it (per-channel slopes copied), function preserved
    child = wider(g, 0, 3, seed=7, noise=0.0)
    assert child.layers[1] == ChannelPReLU(7) and child.shape(child.layer_output[1])[0] == 7
    assert child.layers[2].in_channels == 7
    slopes = child.weights[1]["weight"]
    assert set(slopes[4:].tolist()) <= set(g.weights[1]["weight"].tolist())
    with torch.no_grad():
        widened = child.to_module().eval()(images)
    torch.testing.assert_close(widened, expected, rtol=0, atol=1e-4)
    noisy = wider(g, 0, 3, seed=7)
    rebuilt = replay(g, noisy.history[len(g.history):])
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rebuilt.weight_tensors(), noisy.weight_tensors(),
                                                           strict=True))

    # the searcher sees it through its flags: in the edit distance's sequence with its size, a WL label
    assert ChannelPReLU.kind in SEQUENCE_KINDS
    assert (ChannelPReLU.kind, (4.0,)) in describe(g).layers
    assert node_label(g, 1) == ChannelPReLU.kind
    assert edit_distance(g, child) > 0

    # standalone model.py: generated code rebuilds it with torch alone and gives the same logits
    out = tmp_path / "export"
    child.save(out)
    (out / "model.py").write_text(standalone_code(child, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], list("abcde")))
    assert "nn.PReLU(7)" in (out / "model.py").read_text()
    spec = importlib.util.spec_from_file_location("exported_prelu_model", out / "model.py")
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    with torch.no_grad():
        torch.testing.assert_close(exported.load(out)(images), widened, rtol=1e-5, atol=1e-5)


def test_registering_a_second_class_under_a_taken_kind_fails() -> None:
    @dataclass(frozen=True)
    class Impostor(ReLU):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_layer(Impostor)
    assert LAYER_KINDS["relu"] is ReLU


def test_graph_package_modules_import_without_cycles() -> None:
    package = Path(morphnas.graph.__file__).parent
    imports = nx.DiGraph()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("morphnas.graph."):
                imports.add_edge(path.stem, node.module.rpartition(".")[2])
    assert imports.number_of_edges() > 5
    assert list(nx.simple_cycles(imports)) == []
