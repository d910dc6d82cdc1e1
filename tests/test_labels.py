"""ImageClassifier takes the labels users have — strings, integers of any values — and gives them back from
predict, takes them in evaluate, keeps them in the run and in every export; anything else is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import morphnas
from morphnas.engine.export import read_extra
from morphnas.trainer.arrays import LabelEncoding, label_array
from morphnas.trainer.datasets import FASHION_MNIST_CLASSES, load_demo

SMALL = {"max_trials": 1, "max_epochs": 1, "final_epochs": 1, "generator": "cnn",
         "generator_args": {"filters": 8, "dense_units": 16}, "batch_size": 64, "max_params": 30_000}


@pytest.fixture(scope="module")
def demo():
    data = load_demo()
    return (data.train.x[:600].numpy(), data.train.y[:600].numpy(), data.test.x[:150].numpy(),
            data.test.y[:150].numpy())


# ---------------------------------------------------------------------------------------------- encoding
def test_label_encoding_maps_sorted_values_to_indices_and_back_in_the_users_type():
    enc = LabelEncoding.fit(np.array([42, 3, 7, 3], dtype=np.int32))
    assert enc.values == (3, 7, 42) and enc.label_type == "int32" and enc.class_names == ("3", "7", "42")
    assert enc.encode([7, 42.0, 3]).tolist() == [1, 2, 0]  # whole floats are the same integers
    back = enc.decode([2, 0])
    assert back.dtype == np.int32 and back.tolist() == [42, 3]
    enc = LabelEncoding.fit(["dog", "cat"], np.array(["bird"]))  # test labels join the classes
    assert enc.values == ("bird", "cat", "dog") and enc.decode(np.array([2])).dtype.kind == "U"
    assert LabelEncoding.from_dict(enc.to_dict()) == enc
    assert LabelEncoding.from_dict({"class_names": ["a", "b", "c"]}) == LabelEncoding.identity(3)
    assert label_array([3.0, 7.0])[1] == "int64" and label_array(torch.tensor([1, 2]))[1] == "int64"
    assert label_array(np.array(["a", "b"], dtype=object))[1] == "str"


@pytest.mark.parametrize(("labels", "found"), [
    ([0.5, 1.0], "the non-integer value 0.5 at index 0"),
    ([1.0, float("nan")], "the non-integer value nan at index 1"),
    (["a", 1], "a mix of number and str"),
    ([1, None], "None at index 1"),
    ([True, False], "True \\(bool\\)"),
    ([object(), object()], "<object object at .*> \\(object\\) at index 0"),
    (np.array([b"a", b"b"]), "dtype \\|S1"),
    (np.array([1 + 2j, 2j]), "dtype complex128"),
])
def test_other_label_types_are_clear_errors(labels, found):
    with pytest.raises(ValueError, match=f"labels must be all strings or all integers.*found {found}"):
        label_array(labels)


def test_a_label_fit_never_saw_or_of_another_kind_is_a_clear_error():
    enc = LabelEncoding.fit(["cat", "dog"])
    with pytest.raises(ValueError, match="label 'emu' was not among the labels the classifier was fit on"):
        enc.encode(["cat", "emu"])
    with pytest.raises(ValueError, match="the labels are int64 but the classifier was fit on str labels"):
        enc.encode([0, 1])
    with pytest.raises(ValueError, match="training labels are str but other labels are int64"):
        LabelEncoding.fit(["cat", "dog"], [1, 2])


def test_fit_refuses_bad_labels_before_writing_anything(tmp_path, demo):
    x, y, _, _ = demo
    for bad in (y + 0.5, [None] * len(y), ["a"] * (len(y) - 1) + [1]):
        clf = morphnas.ImageClassifier(directory=tmp_path / "bad", **SMALL)
        with pytest.raises(ValueError, match="labels must be all strings or all integers"):
            clf.fit(x, bad)
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------- end to end
def test_string_labels_round_trip_through_fit_predict_evaluate_and_export(tmp_path, demo):
    x, y, xt, yt = demo
    names = np.array(FASHION_MNIST_CLASSES)
    clf = morphnas.ImageClassifier(directory=tmp_path / "run", **SMALL).fit(x, list(names[y]), xt, names[yt])
    pred = clf.predict(xt)
    assert pred.dtype.kind == "U" and pred.shape == (150,) and set(pred) <= set(names)
    scores = clf.evaluate(xt, names[yt])
    assert scores["accuracy"] == pytest.approx(float((pred == names[yt]).mean()))
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert scores["accuracy"] == pytest.approx(final["test_accuracy"]) and set(final["classes"]) == set(names)
    norm = json.loads((tmp_path / "run" / "normalization.json").read_text())
    assert norm["label_values"] == sorted(names) == norm["class_names"] and norm["label_type"] == "str"
    with pytest.raises(ValueError, match="label 'cat' was not among the labels"):
        clf.evaluate(xt[:2], ["cat", "Bag"])

    files = clf.export(tmp_path / "exported")["files"]
    labels = json.loads(open(files["labels"]).read())
    assert labels["label_values"] == sorted(names)
    images = torch.from_numpy(xt).float()
    net = torch.export.load(files["pt2"]).module()
    index = net(images).argmax(1).tolist()
    assert [labels["label_values"][i] for i in index] == pred.tolist()  # a loaded export gives the same strings
    assert read_extra(files["pt2"])["label_values"] == labels["label_values"]
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
    values = json.loads(session.get_modelmeta().custom_metadata_map["label_values"])
    logits = session.run(None, {"images": images.numpy()})[0]
    assert [values[i] for i in logits.argmax(1)] == pred.tolist()


def test_integer_labels_of_any_values_round_trip_in_their_dtype(tmp_path, demo):
    x, y, xt, yt = demo
    keep, keep_t = y < 3, yt < 3
    to_user = np.array([3, 7, 42], dtype=np.int32)
    clf = morphnas.ImageClassifier(directory=tmp_path / "run", **SMALL).fit(x[keep], to_user[y[keep]])  # no test
    assert clf.labels == LabelEncoding((3, 7, 42), "int32")
    pred = clf.predict(xt[keep_t])
    assert pred.dtype == np.int32 and set(pred.tolist()) <= {3, 7, 42}
    truth = to_user[yt[keep_t]]
    scores = clf.evaluate(xt[keep_t], truth.astype(np.float64))  # whole floats are the same labels
    assert scores["accuracy"] == pytest.approx(float((pred == truth).mean()))  # one mapping both ways
    with pytest.raises(ValueError, match="label 5 was not among the labels the classifier was fit on \\[3, 7, 42\\]"):
        clf.evaluate(xt[:2], [3, 5])
    files = clf.export(tmp_path / "exported")["files"]
    labels = json.loads(open(files["labels"]).read())
    assert labels == {"class_names": ["3", "7", "42"], "label_values": [3, 7, 42], "label_type": "int32"}
    net = torch.export.load(files["pt2"]).module()
    index = net(torch.from_numpy(xt[keep_t]).float()).argmax(1).tolist()
    assert [labels["label_values"][i] for i in index] == pred.tolist()
