"""A search's initial architectures: by default the CNN and the ResNet, each generator's arguments routed to
it, both trained before any morphism; one network for `morphnas train`; suites keep their recorded start."""

from __future__ import annotations

import json

import pytest

import morphnas
from morphnas.cli import main
from morphnas.engine.config import DEFAULT_GENERATORS, SearchConfig
from morphnas.engine.setup import generator_arguments, initial_architectures, stored_config
from morphnas.graph.generators import cnn, resnet
from morphnas.storage import RunDir
from morphnas.trainer.datasets import load_demo


def _stored_generators(path) -> list[str]:
    rd = RunDir.open(path)
    try:
        return stored_config(rd).generators
    finally:
        rd.close()


SMALL_BOTH = {"filters": 8, "dense_units": 16, "resnet.depth": 8, "resnet.width": 4}


def test_a_search_defaults_to_the_cnn_and_the_resnet_and_train_to_one_cnn() -> None:
    assert SearchConfig().generators == list(DEFAULT_GENERATORS) == ["cnn", "resnet"]
    assert SearchConfig(generator="resnet").generator == "resnet"
    assert SearchConfig(generator="cnn, resnet").generator == ["cnn", "resnet"]
    assert SearchConfig(mode="train", max_trials=None, final_epochs=1).generator == "cnn"
    with pytest.raises(ValueError, match="trains one network"):
        SearchConfig(mode="train", max_trials=None, final_epochs=1, generator="cnn,resnet")
    with pytest.raises(ValueError, match="twice"):
        SearchConfig(generator=["resnet", "resnet"])
    with pytest.raises(ValueError, match="list of names"):
        SearchConfig(generator="")


def test_arguments_go_to_the_generator_named_or_to_each_that_takes_them() -> None:
    args = generator_arguments(SearchConfig(generator_args={**SMALL_BOTH, "densenet": {"growth": 4}},
                                            generator=["cnn", "resnet", "densenet"]))
    assert args == {"cnn": {"filters": 8, "dense_units": 16}, "resnet": {"depth": 8, "width": 4},
                    "densenet": {"growth": 4}}
    # a plain key taken by several goes to each of them
    shared = generator_arguments(SearchConfig(generator=["cnn", "mlp", "resnet"], generator_args={"dropout": 0.1}))
    assert shared == {"cnn": {"dropout": 0.1}, "mlp": {"dropout": 0.1}, "resnet": {}}
    # one generator: the table is its own, as before, and may address it too
    assert generator_arguments(SearchConfig(generator="cnn", generator_args={"filters": 4})) == {"cnn": {"filters": 4}}
    assert generator_arguments(SearchConfig(generator="resnet", generator_args={"resnet.depth": 32})) == {
        "resnet": {"depth": 32}}
    with pytest.raises(ValueError, match="addressed to 'resnet', which is not among the generators"):
        generator_arguments(SearchConfig(generator="cnn", generator_args={"resnet.depth": 32}))
    with pytest.raises(ValueError, match="a table for 'densenet', which is not among"):
        generator_arguments(SearchConfig(generator_args={"densenet": {"growth": 4}}))
    with pytest.raises(ValueError, match="'filtres' is taken by none of the generators"):
        generator_arguments(SearchConfig(generator_args={"filtres": 8}))
    with pytest.raises(ValueError, match="unknown generator 'vgg'"):
        generator_arguments(SearchConfig(generator="cnn,vgg"))
    data = load_demo()
    with pytest.raises(ValueError, match="generator 'resnet': bad generator arguments"):
        initial_architectures(SearchConfig(generator_args={"resnet.filters": 8}), data)


def test_the_search_trains_each_initial_architecture_first_and_resumes_with_them(tmp_path) -> None:
    out = tmp_path / "run"
    run = morphnas.search(dataset="demo", generator_args=SMALL_BOTH, max_trials=3, max_epochs=1, batch_size=64,
                          seed=1, quiet=True, out=str(out), max_params=30_000)
    data = load_demo()
    want = [cnn(data.input_shape, data.n_classes, filters=8, dense_units=16, seed=None).canonical_hash(),
            resnet(data.input_shape, data.n_classes, depth=8, width=4, seed=None).canonical_hash()]
    trials = run.trials
    assert [t.arch_hash for t in trials[:2]] == want
    assert [t.parent for t in trials[:2]] == [None, None]
    assert trials[2].parent in (0, 1), "the third trial morphs one of the two trained starts"
    assert json.loads((out / "config.json").read_text())["generator"] == ["cnn", "resnet"]
    assert _stored_generators(out) == ["cnn", "resnet"]
    # resuming rebuilds the same two starts (the strategy's state refuses others) and goes on morphing
    resumed = morphnas.resume(str(out), max_trials=4)
    assert len(resumed.trials) == 4 and resumed.trials[3].parent is not None


def test_a_run_directory_from_before_keeps_its_single_cnn(tmp_path) -> None:
    out = tmp_path / "old"
    morphnas.search(dataset="demo", generator="cnn", generator_args={"filters": 8, "dense_units": 16},
                    max_trials=1, max_epochs=1, batch_size=64, quiet=True, out=str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["generator"] == "cnn"  # what every run directory written before stored
    assert _stored_generators(out) == ["cnn"]
    resumed = morphnas.resume(str(out), max_trials=2)  # under today's default it still grows from the CNN alone
    assert [t.parent for t in resumed.trials] == [None, 0]


def test_cli_takes_several_generators_and_addressed_arguments(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["search", "--dataset", "demo", "--generator", "resnet,cnn", "--generator-args",
                 "resnet.depth=8,resnet.width=4", "--generator-args", "cnn.filters=8", "--max-trials", "2",
                 "--max-epochs", "1", "--amp", "off", "--quiet", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["generator"] == ["resnet", "cnn"] and config["amp"] == "off"
    assert config["generator_args"] == {"resnet.depth": 8, "resnet.width": 4, "cnn.filters": 8}
    data = load_demo()
    rd = RunDir.open(out)
    try:
        hashes = [rd.trial(i).arch_hash for i in (0, 1)]
    finally:
        rd.close()
    assert hashes == [resnet(data.input_shape, data.n_classes, depth=8, width=4, seed=None).canonical_hash(),
                      cnn(data.input_shape, data.n_classes, filters=8, seed=None).canonical_hash()]
    assert main(["train", "--generator", "cnn,resnet", "--epochs", "1", "--out", str(tmp_path / "t")]) == 2
    assert "trains one network" in capsys.readouterr().err


def test_train_takes_a_search_configuration_and_trains_one_network(tmp_path) -> None:
    search_config = SearchConfig(dataset="demo", time_budget=60, generator_args={"filters": 8, "dense_units": 16})
    run = morphnas.train(search_config, epochs=1, out=str(tmp_path / "t"), quiet=True)
    assert 0.0 < json.loads((run.path / "final.json").read_text())["test_accuracy"] <= 1.0
    assert json.loads((run.path / "config.json").read_text())["generator"] == "cnn"
    with pytest.raises(ValueError, match="trains one network"):
        morphnas.train(SearchConfig(dataset="demo", max_trials=2, generator=["resnet", "densenet"]), epochs=1,
                       out=str(tmp_path / "u"), quiet=True)
