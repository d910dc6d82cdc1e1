"""What a user sees around a search: architecture pictures, TensorBoard images, progress output."""

from __future__ import annotations

import io
import os
import pty
import threading
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

import morphnas
from morphnas.engine.config import SearchConfig
from morphnas.engine.loop import create_search
from morphnas.engine.progress import Progress
from morphnas.engine.results import report
from morphnas.graph import generators, morphisms
from morphnas.storage.draw import INPUT, architecture_layout, save_architecture
from morphnas.storage.tensorboard import ARCHITECTURE_IMAGE

TINY = {"dataset": "demo", "generator": "cnn", "generator_args": {"filters": 8, "dense_units": 16}, "max_epochs": 1,
        "batch_size": 64, "seed": 3, "max_params": 30_000, "max_width": 64}


@pytest.fixture
def parent_and_child():
    g = generators.cnn(input_shape=(1, 28, 28), n_classes=10, filters=16, seed=None)
    parent = morphisms.add_skip(g, 2, 6)  # relu of block 1 -> relu of block 2, through a pool and a 1x1 conv
    child = morphisms.deeper(parent, 6, "conv")
    child = morphisms.wider(child, 9, 8)
    child = morphisms.concat_skip(child, 3, 10)
    return parent, child


def test_layout_has_a_box_per_layer_skips_marked_and_exactly_the_new_layers_highlighted(parent_and_child):
    parent, child = parent_and_child
    layout = architecture_layout(child, parent)
    assert set(layout.boxes) == {INPUT, *child.layers}
    assert layout.boxes[INPUT].label == "input 1x28x28"
    assert layout.boxes[1].label == "conv 3x3 16" and layout.boxes[16].label == "dense 10"
    assert layout.boxes[9].label == "conv 3x3 24"  # widened by 8
    # every layer reads what it reads: one edge per (producer, layer) input
    assert len(layout.edges) == sum(len(ins) for ins in child.layer_inputs.values())
    # skip connections: each merge has one main-chain input, the others come along skip edges
    merges = [lid for lid, lay in child.layers.items() if lay.merge]
    assert {child.layers[m].kind for m in merges} == {"add", "concat"}
    for m in merges:
        into = [e for e in layout.edges if e.target == m]
        assert len(into) == 2 and sum(e.skip for e in into) == 1
        assert layout.boxes[m].main
    branch = {e.target for e in layout.skip_edges} | {e.source for e in layout.skip_edges}
    assert all(not layout.boxes[n].main for n in branch - {*merges, 2, 3})  # the branches' pools and 1x1 conv
    assert all(b.x == 0 for b in layout.boxes.values() if b.main)  # the main chain reads straight down
    assert all(b.x != 0 for b in layout.boxes.values() if not b.main)
    assert len({b.y for b in layout.boxes.values() if b.main}) == sum(b.main for b in layout.boxes.values())
    # new: exactly the layers the parent lacks (deeper's conv, concat_skip's pool, concat and 1x1 conv)
    assert layout.new_layers == set(child.layers) - set(parent.layers)
    assert len(layout.new_layers) == 4
    assert {n for n, b in layout.boxes.items() if b.new} == layout.new_layers
    assert layout.changed_layers == {9}  # the widened conv; its readers are not "changed"
    # no parent: nothing highlighted
    plain = architecture_layout(child)
    assert not plain.new_layers and not any(b.new or b.changed for b in plain.boxes.values())


def test_architecture_png_is_written(parent_and_child, tmp_path):
    parent, child = parent_and_child
    path = save_architecture(child, tmp_path / "arch.png", parent, title="trial 5: deeper, wider, concat_skip")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob("*.tmp*"))


def _drain(fd: int, sink: bytearray) -> threading.Thread:
    def run() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            sink.extend(chunk)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_search_on_a_terminal_draws_bars_and_logs_an_architecture_image_per_trial(tmp_path, monkeypatch):
    """A tiny search whose output is a pseudo-terminal: live bars (control characters, batches, images/s), and
    TensorBoard holds an architecture picture in every trial's sub-run; report draws the best and trial 1."""
    monkeypatch.delenv("MORPHNAS_PROGRESS", raising=False)
    master, slave = pty.openpty()
    out = bytearray()
    reader = _drain(master, out)
    with os.fdopen(slave, "w", encoding="utf-8", closefd=True) as terminal:
        assert terminal.isatty()
        config = SearchConfig.from_dict({**TINY, "max_trials": 3, "out": str(tmp_path / "run")})
        search = create_search(config, progress=Progress(stream=terminal))
        search.run()
        search.run_dir.close()
    reader.join(timeout=5)
    os.close(master)
    text = out.decode("utf-8", "replace")
    assert "\x1b[" in text  # cursor movement and colours: a live display
    assert "img/s" in text and "batch " in text and "trials" in text
    assert "trial 2 epoch 1:" in text  # the plain lines are still printed above the bars

    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "run" / "tb"))
    mux.Reload()
    for i in range(3):
        images = mux.Images(f"trial-{i:04d}", ARCHITECTURE_IMAGE)
        assert len(images) == 1 and images[0].width > 100 and images[0].height > 300

    rep = report(tmp_path / "run", trial=1)
    assert (tmp_path / "run" / "best_architecture.png").stat().st_size > 5000
    assert rep["trial_plot"].endswith("architecture-0001.png")
    assert (tmp_path / "run" / "architecture-0001.png").stat().st_size > 5000


def _drive(progress: Progress) -> None:
    """The calls a search makes, without training."""
    progress.start_search(max_trials=2, time_budget=60.0, max_epochs=1, done=0, elapsed=lambda: 1.0)
    progress.say("trial 0: initial")
    for step in range(1, 11):
        progress.on_batch(0, 1, step, 10, 64)
    record = SimpleNamespace(epoch=1, train_loss=1.0, train_accuracy=0.5, val_loss=0.9, val_accuracy=0.6,
                             seconds=1.0)
    progress(0, record)
    progress.trial_done(0, 1, (0, 0.6))
    progress.stop()


def test_progress_is_silent_with_quiet(capsys, monkeypatch):
    monkeypatch.setenv("MORPHNAS_PROGRESS", "1")  # even forced on, quiet wins
    _drive(Progress(quiet=True))
    assert capsys.readouterr() == ("", "")


def test_progress_is_plain_lines_when_not_a_terminal(capsys, monkeypatch):
    monkeypatch.delenv("MORPHNAS_PROGRESS", raising=False)
    _drive(Progress())  # stdout is captured: not a TTY
    out = capsys.readouterr().out
    assert out.splitlines() == ["trial 0: initial", "  trial 0 epoch 1: train loss 1.000 acc 50.0% | val loss 0.900 "
                                                     "acc 60.0% (1.0 s)"]
    assert "\x1b" not in out and "\r" not in out
    stream = io.StringIO()
    _drive(Progress(stream=stream))
    assert stream.getvalue() == out


def test_progress_bars_on_a_forced_terminal_and_off_by_environment(monkeypatch):
    stream = io.StringIO()
    _drive(Progress(stream=stream, live=True))
    assert "\x1b[" in stream.getvalue() and "trial 0: initial" in stream.getvalue()
    monkeypatch.setenv("MORPHNAS_PROGRESS", "0")
    assert not Progress(stream=stream).wants_live()
    monkeypatch.setenv("MORPHNAS_PROGRESS", "1")
    assert Progress(stream=io.StringIO()).wants_live()


def test_cli_search_quiet_prints_only_the_run_directory(tmp_path, capsys):
    from morphnas.cli import main

    out = tmp_path / "q"
    (tmp_path / "tiny.toml").write_text("[search]\ngenerator = \"cnn\"\n"
                                        "generator_args = { filters = 8, dense_units = 16 }\n")
    assert main(["search", "-q", "--config", str(tmp_path / "tiny.toml"), "--max-trials", "1", "--max-epochs", "1",
                 "--batch-size", "128", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert morphnas.Run(out).best is not None
