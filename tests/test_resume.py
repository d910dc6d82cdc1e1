"""kill -9 a real search process, resume it, and compare with an uninterrupted search of the same seed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from run_helpers import cli, finished_trials

from morphnas.cli import main
from morphnas.storage import RunDir

CONFIG = """
[search]
dataset = "demo"
strategy = "{strategy}"
max_trials = 4
max_epochs = 1
max_params = 30000
max_width = 64
batch_size = 64
seed = 11
generator = "cnn"
generator_args = {{ filters = 8, dense_units = 16 }}
{extra}
"""

# A user's plugin file: registers a kernel under a new name (a resumed search must import it again to go on).
PLUGIN = """
from morphnas.searcher.kernels import ExpDistanceKernel, register_kernel


def scaled_exp_kernel(cache, **options):
    return ExpDistanceKernel(cache, **options)


register_kernel("plugin-exp", scaled_exp_kernel)
"""


def _signature(run: Path) -> list[tuple]:
    r = RunDir.open(run)
    try:
        return [(t.id, t.parent, t.ops, t.inherit, t.arch_hash, t.status, t.metric, t.epochs) for t in r.trials()]
    finally:
        r.close()


@pytest.mark.parametrize("strategy", ["bayesian"])
def test_kill_minus_nine_then_resume_equals_an_uninterrupted_search(tmp_path, strategy):
    """With a user's kernel from a plugin file named by a relative path: the resume, started in a fresh process
    from another working directory, must import the plugin again to rebuild the strategy."""
    (tmp_path / "my_kernel.py").write_text(PLUGIN)
    config = tmp_path / "search.toml"
    config.write_text(CONFIG.format(strategy=strategy,
                                    extra='kernel = "plugin-exp"\nplugins = ["./my_kernel.py"]'))
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    ref = cli("search", "--config", str(config), "--out", str(whole), "--quiet", cwd=tmp_path, threads=1)
    victim = cli("search", "--config", str(config), "--out", str(killed), "--quiet", cwd=tmp_path, threads=1)
    deadline = time.time() + 240
    while finished_trials(killed) < 2 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, f"the search ended before it could be killed:\n{victim.stdout.read()}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before = finished_trials(killed)
    assert 2 <= done_before < 4
    before = _signature(killed)[:done_before]

    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    resumed = cli("resume", str(killed), "--quiet", threads=1)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()

    after = _signature(killed)
    assert after[:done_before] == before, "finished trials were changed by the resume"
    assert len(after) == 4 and all(t[5] in ("ok", "failed") for t in after)
    assert after == _signature(whole), "the resumed search made other choices than the uninterrupted one"
    assert RunDir.open(killed).config["plugins"] == [str(tmp_path / "my_kernel.py")]


@pytest.fixture
def forget_plugin_gone():
    """The in-process plugin registers a kernel for this process: unregister it after the test."""
    yield
    from morphnas.searcher.kernels import KERNELS

    if "plugin-gone" in KERNELS:
        KERNELS.unregister("plugin-gone")


def test_resume_names_a_plugin_that_has_gone_missing(tmp_path, capsys, forget_plugin_gone):
    plugin = tmp_path / "gone.py"
    plugin.write_text(PLUGIN.replace("plugin-exp", "plugin-gone"))
    run = tmp_path / "run"
    assert main(["search", "--max-trials", "1", "--max-epochs", "1", "--kernel", "plugin-gone",
                 "--plugin", str(plugin), "--out", str(run), "-q"]) == 0
    plugin.unlink()
    before = _signature(run)
    assert main(["resume", str(run), "--max-trials", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"plugin file {plugin} does not exist" in err and "Traceback" not in err
    assert _signature(run) == before, "a failed resume changed the run"


def test_a_kernel_set_for_a_strategy_without_a_gp_is_an_error(tmp_path, capsys):
    assert main(["search", "--strategy", "random", "--kernel", "wl", "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "strategy 'random' uses no kernel, but the configuration sets kernel = 'wl'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_of_a_foreign_directory_is_a_clear_error_and_changes_nothing(tmp_path, capsys):
    (tmp_path / "data.csv").write_text("1,2,3\n")
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a morphnas run directory" in err
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]
