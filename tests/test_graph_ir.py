"""The architecture IR: shapes, compilation, weight and file round trips, canonical hashing, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from graph_helpers import SMALL, inputs, logits, randomized

from morphnas.graph import Add, BatchNorm, Conv2d, Dense, Dropout, Graph, GraphError, MaxPool, ReLU, generators
from morphnas.graph.serialization import ARCHITECTURE_FILE, WEIGHTS_FILE


@pytest.mark.parametrize("name", sorted(generators.GENERATORS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_generators_build_valid_graphs_whose_param_count_is_torchs(name, shape):
    g = generators.get_generator(name)(shape, 10)
    module = g.to_module()
    assert g.n_params() == sum(p.numel() for p in module.parameters())
    out = module.eval()(torch.zeros(2, *shape))
    assert out.shape == (2, 10)


def test_default_cnn_is_the_auto_keras_architecture():
    g = generators.cnn((3, 32, 32), 10)
    kinds = [g.layers[lid].kind for lid in g.topological_layers()]
    block = ["batchnorm", "conv2d", "relu", "maxpool"]
    assert kinds == block * 3 + ["globalavgpool", "dropout", "dense", "relu", "dense"]
    convs = [g.layers[lid] for lid in g.layers_of_kind("conv2d")]
    assert all(c.out_channels == 64 and c.kernel_size == 3 for c in convs)


def test_module_weight_round_trip_is_exact_and_trained_weights_come_back():
    g = randomized(SMALL["resnet"]())
    module = g.to_module()
    back = g.with_weights_from(module)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(g.weight_tensors(), back.weight_tensors(), strict=True))
    # one SGD step on the module; the graph copied back computes exactly what the trained module computes
    x = inputs(g)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    module.train()
    module(x).square().mean().backward()
    opt.step()
    trained = g.with_weights_from(module)
    assert torch.equal(logits(trained, x), module.eval()(x).detach())
    assert not torch.equal(logits(trained, x), logits(g, x))
    assert g.weights is not None  # the parent graph is untouched


@pytest.mark.parametrize("name", sorted(SMALL))
def test_json_and_safetensors_round_trips_are_exact(name, tmp_path):
    g = randomized(SMALL[name]())
    again = Graph.from_json(g.to_json())
    assert again.to_json() == g.to_json()
    g.save(tmp_path)
    loaded = Graph.load(tmp_path)
    assert loaded.to_json() == g.to_json()
    names = [n for n, _ in g.weight_tensors()]
    assert names == [n for n, _ in loaded.weight_tensors()]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(g.weight_tensors(), loaded.weight_tensors(), strict=True))
    x = inputs(g)
    assert torch.equal(logits(g, x), logits(loaded, x))


def test_canonical_hash_ignores_ids_and_weights_but_not_architecture():
    a = generators.cnn((1, 28, 28), 10, seed=0)
    b = generators.cnn((1, 28, 28), 10, seed=None)
    assert a.canonical_hash() == b.canonical_hash()
    # same architecture built with other tensor/layer ids (an extra dead-end never added: renumbered via JSON)
    data = a.to_dict()
    shift = {lay["output"]: lay["output"] + 100 for lay in data["layers"]}
    for lay in data["layers"]:
        lay["id"] += 50
        lay["output"] = shift[lay["output"]]
        lay["inputs"] = [shift.get(n, n) for n in lay["inputs"]]
    data["output_node"] = shift[data["output_node"]]
    assert Graph.from_dict(data).canonical_hash() == a.canonical_hash()
    assert generators.cnn((1, 28, 28), 10, filters=32).canonical_hash() != a.canonical_hash()


def test_graph_queries():
    g = SMALL["resnet"]()
    assert g.n_skips() == 3
    assert g.depth() == 8
    assert g.max_width() == 32
    assert "parameters" in g.summary()


# ------------------------------------------------------------------------------------------------ bad input
def test_layer_shape_mismatch_is_a_clear_error():
    g = Graph((3, 8, 8))
    a = g.add_layer(Conv2d(3, 4, 3), g.input_node)
    b = g.add_layer(MaxPool(2, 2), a)
    with pytest.raises(GraphError, match="add needs equal shapes"):
        g.add_layer(Add(), a, b)
    with pytest.raises(GraphError, match="expects 4 input channels, got 3"):
        g.add_layer(Conv2d(4, 4, 3), g.input_node)
    with pytest.raises(GraphError, match="dense needs a flat"):
        g.add_layer(Dense(4, 2), a)
    with pytest.raises(GraphError, match="unknown tensor id 99"):
        g.add_layer(ReLU(), 99)
    with pytest.raises(GraphError, match="no output"):
        g.validate()
    with pytest.raises(GraphError, match="flat"):
        g.set_output(a)


def test_invalid_layer_arguments_are_rejected():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Conv2d(3, 4, 2)
    with pytest.raises(ValueError, match="out_channels must be a positive integer"):
        Conv2d(3, 0, 3)
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="ndim must be 1 or 3"):
        BatchNorm(4, ndim=2)


def _corrupt(tmp_path, edit):
    g = SMALL["cnn"]()
    g.save(tmp_path)
    path = tmp_path / ARCHITECTURE_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "'format' must be"),
        (lambda d: d.update(version=99), "schema version 99 is not supported"),
        (lambda d: d.pop("layers"), "missing key 'layers'"),
        (lambda d: d["layers"][2]["spec"].update(kind="lstm"), "unknown layer kind 'lstm'"),
        (lambda d: d["layers"][1]["spec"].update(in_channels=5), "expects 5 input channels"),
        (lambda d: d["layers"][3].update(inputs=[999]), "reads tensors \\[999\\]"),
        (lambda d: d.update(output_node=12345), "output_node 12345"),
        (lambda d: d["layers"][1]["spec"].update(filters=3), "unknown fields \\['filters'\\]"),
    ],
)
def test_malformed_architecture_file_names_the_problem(tmp_path, edit, message):
    directory = _corrupt(tmp_path, edit)
    with pytest.raises(GraphError, match=message):
        Graph.load(directory)


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(GraphError, match=r"no architecture\.json"):
        Graph.load(tmp_path)
    (tmp_path / ARCHITECTURE_FILE).write_text("{not json")
    with pytest.raises(GraphError, match="not valid JSON"):
        Graph.load(tmp_path)
    g = SMALL["cnn"]()
    g.save(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(GraphError, match="not a readable safetensors file"):
        Graph.load(tmp_path)
    other = SMALL["mlp"]()
    other.save(tmp_path / "other")
    (tmp_path / WEIGHTS_FILE).write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(GraphError, match="weights do not match the architecture"):
        Graph.load(tmp_path)
    assert Graph.load(tmp_path, weights=False).weights is None


def test_weights_from_a_foreign_module_are_rejected():
    g = SMALL["cnn"]()
    with pytest.raises(ValueError, match="not compiled from this graph"):
        g.with_weights_from(SMALL["mlp"]().to_module())
