"""Benchmark suites end to end: a synthetic suite, a tiny real-training suite, kill -9 and re-run, bad suite files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from morphnas.cli import main
from morphnas.engine.suites import load_suite_dir, run_suite, suite_cells
from morphnas.storage.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent

SYNTHETIC = """
name = "syn"
seeds = [0, 1]
[budget]
trials = 6
[[objective]]
name = "stats-target"
[[strategy]]
name = "random-walk"
[[strategy]]
name = "hill-climbing"
label = "hc"
"""


def _write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _table(cell: Path) -> list[tuple]:
    run = RunDir.open(cell)
    try:
        return [(t.id, t.parent, t.arch_hash, t.status.value, t.metric, t.extra.get("clean"), t.finished_at)
                for t in run.trials()]
    finally:
        run.close()


def test_synthetic_suite_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    run_suite(_write(tmp_path, SYNTHETIC), out, say=lambda _: None)
    cells = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("cell.json"))
    assert cells == [f"stats-target/{lab}/b6/s{s}" for lab in ("hc", "random-walk") for s in (0, 1)]
    table = _table(out / "stats-target/hc/b6/s0")
    assert [row[0] for row in table] == list(range(6)) and all(row[5] is not None for row in table)
    assert not any((out / "stats-target/hc/b6/s0/models").iterdir())  # an objective's trials store no model
    assert main(["benchmark", "report", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    group = rep["groups"]["stats-target/b6"]
    assert group["paired_seeds"] == [0, 1] and set(group["strategies"]) == {"random-walk", "hc"}
    assert len(group["strategies"]["hc"]["curve_trials"]["median"]) == 6
    assert group["tests"][0]["p"] is None  # 2 pairs: no p-value
    text = (out / "report.md").read_text()
    assert "Too few paired seeds" in text and "- [ ] random-search baseline present" in text
    assert (out / "fig_stats-target_b6.png").stat().st_size > 0
    assert main(["report", str(out / "stats-target/hc/b6/s0"), "--no-plot"]) == 0  # every cell is an ordinary run


def test_tiny_real_training_suite(tmp_path):
    suite = _write(tmp_path, """
        name = "tiny"
        seeds = [0]
        [budget]
        trials = 2
        [final]
        epochs = 1
        [search]
        max_epochs = 1
        max_params = 30000
        generator_args = {filters = 8, dense_units = 16}
        [[dataset]]
        name = "demo"
        [[strategy]]
        name = "random"
        [[strategy]]
        name = "hill-climbing"
        """)
    out = tmp_path / "out"
    assert main(["benchmark", "run", str(suite), "--out", str(out)]) == 0
    for lab in ("random", "hill-climbing"):
        record = json.loads((out / f"demo/{lab}/b2/s0/cell.json").read_text())
        assert record["trials"] == 2 and 0.0 < record["final"]["test_accuracy"] <= 1.0
        assert record["cost"]["final_seconds"] > 0
        assert record["final"]["init"] == "scratch"  # a suite compares architectures at equal training
        # a cell starts from the CNN alone unless the suite says otherwise: the start its records compared from
        cell_config = json.loads((out / f"demo/{lab}/b2/s0/config.json").read_text())
        assert cell_config["generator"] == "cnn" and cell_config["amp"] == "auto"
    rep = json.loads((out / "report.json").read_text())
    assert rep["groups"]["demo/b2"]["score"] == "final test accuracy"
    assert rep["groups"]["demo/b2"]["strategies"]["random"]["test_accuracy"]["n"] == 1
    # a suite directory recorded before [final] init existed is the same suite (its finals were from scratch), and
    # one recorded before `amp_default` too: a cell run now takes the precision its started cells recorded ...
    redo = out / "demo/random/b2/s0"
    record = json.loads((out / "suite.json").read_text())
    del record["suite"]["final_init"], record["suite"]["amp_default"]
    (out / "suite.json").write_text(json.dumps(record))
    shutil.rmtree(redo)
    assert main(["benchmark", "run", str(suite), "--out", str(out)]) == 0
    assert json.loads((redo / "config.json").read_text())["amp"] == "auto"
    assert load_suite_dir(out)["amp_default"] == "auto"  # recorded now: the report and later re-runs agree
    # ... and, where they recorded none (before CPU autocast), what they ran with then: autocast on CUDA only
    for lab in ("random", "hill-climbing"):
        config = json.loads((out / f"demo/{lab}/b2/s0/config.json").read_text())
        del config["amp"]
        (out / f"demo/{lab}/b2/s0/config.json").write_text(json.dumps(config))
    record = json.loads((out / "suite.json").read_text())
    del record["suite"]["amp_default"]
    (out / "suite.json").write_text(json.dumps(record))
    shutil.rmtree(redo)
    assert main(["benchmark", "run", str(suite), "--out", str(out)]) == 0
    assert json.loads((redo / "config.json").read_text())["amp"] == "cuda"
    assert {c.config["amp"] for c in suite_cells(load_suite_dir(out), out)} == {"cuda"}


SLOW_OBJECTIVE = """
import time
from morphnas.searcher.objectives import StatsTarget, register_objective

class Slow(StatsTarget):
    def clean(self, graph):
        time.sleep(0.04)
        return super().clean(graph)

register_objective("slow-stats", Slow, overwrite=True)
"""


def test_killed_suite_rerun_loses_and_repeats_nothing(tmp_path):
    _write(tmp_path, SLOW_OBJECTIVE, "slow.py")
    suite = _write(tmp_path, """
        seeds = [0, 1]
        plugins = ["slow.py"]
        [budget]
        trials = 12
        [[objective]]
        name = "slow-stats"
        [[strategy]]
        name = "random"
        [[strategy]]
        name = "hill-climbing"
        """)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "morphnas.cli", "benchmark", "run", str(suite), "--out", str(out), "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = out / "slow-stats/random/b12/s1"
    deadline = time.time() + 60
    try:  # kill once the first cell is finished and the second is half-way
        while time.time() < deadline:
            if (second / "trials.sqlite").is_file() and len([r for r in _table(second) if r[6]]) >= 4:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = out / "slow-stats/random/b12/s0"
    assert (first / "cell.json").is_file() and not (second / "cell.json").is_file()
    before_first, before_cell = _table(first), (first / "cell.json").read_bytes()
    before_second = [r for r in _table(second) if r[6]]  # the finished trials of the interrupted cell
    assert 4 <= len(before_second) < 12
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    assert _table(first) == before_first and (first / "cell.json").read_bytes() == before_cell  # not re-run
    after_second = _table(second)
    assert after_second[: len(before_second)] == before_second  # finished trials kept, not repeated
    assert [r[0] for r in after_second] == list(range(12))
    assert len(list(out.rglob("cell.json"))) == 4
    # and the resumed cell made the same choices and observed the same values as an uninterrupted run
    fresh = tmp_path / "fresh"
    run_suite(suite, fresh, say=lambda _: None)
    strip = lambda rows: [r[:6] for r in rows]  # noqa: E731
    assert strip(_table(fresh / "slow-stats/random/b12/s1")) == strip(after_second)


@pytest.mark.parametrize("body, message", [
    ('seeds = [0]\n[budget]\ntrials = 3\n[[objective]]\nname = "stats-target"\n[[strategy]]\nname = "nope"',
     "unknown strategy 'nope'"),
    ('seeds = [0]\n[[objective]]\nname = "stats-target"\n[[strategy]]\nname = "random"', "no [budget]"),
    ('seeds = [0]\n[budget]\ntrials = 3\n[search]\nmax_trials = 5\n[[objective]]\nname = "stats-target"\n'
     '[[strategy]]\nname = "random"', "budgets are equal for every cell"),
    ('seeds = [0]\n[budget]\ntrials = 3\nseconds = 60\n[[objective]]\nname = "stats-target"\n[[strategy]]\n'
     'name = "random"', "ONE budget kind"),
    ('seeds = []\n[budget]\ntrials = 3\n[[objective]]\nname = "stats-target"\n[[strategy]]\nname = "random"',
     "seeds is empty"),
    ('seeds = [0]\nbudgett = 3\n[budget]\ntrials = 3\n[[objective]]\nname = "stats-target"\n[[strategy]]\n'
     'name = "random"', "unknown key budgett"),
    ('seeds = [0]\n[budget]\ntrials = 3\n[[objective]]\nname = "stats-target"\n[[strategy]]\nname = "random"\n'
     'max_trials = 4', "unknown key max_trials in strategy"),
    ('seeds = [0]\n[budget]\ntrials = 3\n[final]\ninit = "warm"\n[[objective]]\nname = "stats-target"\n'
     '[[strategy]]\nname = "random"', "[final] init must be one of inherit, scratch, got 'warm'"),
    ('seeds = [0]\n[budget]\ntrials = 3\n[search]\nfinal_init = "inherit"\n[[objective]]\nname = "stats-target"\n'
     '[[strategy]]\nname = "random"', "the final protocol is set in [final]"),
    ('seeds = [0]\n[budget]\ntrials = 3\n[search]\ngenerator_args = { "resnet.width" = 8 }\n[[dataset]]\n'
     'name = "demo"\n[[strategy]]\nname = "random"', "addressed to 'resnet', which is not among the generators"),
])
def test_bad_suite_is_one_line_error_and_writes_nothing(tmp_path, capsys, body, message):
    suite = _write(tmp_path, body)
    out = tmp_path / "out"
    assert main(["benchmark", "run", str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
