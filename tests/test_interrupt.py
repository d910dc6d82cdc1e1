"""Ctrl-C as a user at a terminal presses it: SIGINT to the search's whole process group (workers included).

The first says at once that the search is stopping and waits for the running trial, whose result is kept; the
second cuts the running trial now, leaving it pending, and ``morphnas resume`` runs it: nothing lost, nothing
repeated. A test plugin slows every optimizer step (by $MORPHNAS_TEST_STEP_SLEEP seconds) so that a trial is
surely running when the signal comes.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from pathlib import Path

from run_helpers import cli

from morphnas.storage import RunDir

CONFIG = """
[search]
dataset = "demo"
max_trials = 2
max_epochs = 3
fidelity = "single"  # three epochs a trial: ASHA's first rung (one) could end before the second Ctrl-C
patience = 100
batch_size = 64
seed = 4
max_params = 30000
max_width = 64
generator = "cnn"
generator_args = {{ filters = 8, dense_units = 16 }}
plugins = ["{plugin}"]
{extra}
"""

SLOW_STEPS = '''
"""Test plugin: every optimizer step sleeps $MORPHNAS_TEST_STEP_SLEEP seconds (in the driver or a worker)."""
import os
import time

from morphnas.trainer import trainer as _trainer

_fit = _trainer.Trainer.fit


def fit(self, module, **options):
    pause = float(os.environ.get("MORPHNAS_TEST_STEP_SLEEP", "0"))
    on_batch = options.get("on_batch")

    def slow(*args):
        time.sleep(pause)
        if on_batch is not None:
            on_batch(*args)

    options["on_batch"] = slow if pause else on_batch
    return _fit(self, module, **options)


_trainer.Trainer.fit = fit
'''

SLOW = {"MORPHNAS_TEST_STEP_SLEEP": "0.05"}


class Lines:
    """The child's output, read line by line in a thread (so waiting for a line never blocks on the pipe)."""

    def __init__(self, process) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process) -> None:
        for line in process.stdout:
            self.queue.put(line)

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until a line containing ``text`` appears (AssertionError after ``timeout``)."""
        start = time.time()
        if any(text in line for line in self.seen):
            return 0.0
        while time.time() - start < timeout:
            try:
                line = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return time.time() - start
        raise AssertionError(f"no line with {text!r} in {timeout} s; output so far:\n{''.join(self.seen)}")

    def rest(self) -> str:
        while not self.queue.empty():
            self.seen.append(self.queue.get())
        return "".join(self.seen)


def _setup(tmp_path: Path, extra: str = "") -> Path:
    plugin = tmp_path / "slow_steps.py"
    plugin.write_text(SLOW_STEPS)
    config = tmp_path / "search.toml"
    config.write_text(CONFIG.format(plugin=plugin, extra=extra))
    return config


def _rows(run: Path) -> list[tuple[int, str]]:
    r = RunDir.open(run)
    try:
        return [(t.id, str(t.status)) for t in r.trials()]
    finally:
        r.close()


def test_first_ctrl_c_says_it_stops_the_second_cuts_and_resume_loses_nothing(tmp_path):
    config, run = _setup(tmp_path), tmp_path / "run"
    child = cli("search", "--config", str(config), "--out", str(run), "--no-progress", threads=1, env=SLOW,
                new_session=True)
    lines = Lines(child)
    try:
        lines.wait_for("trial 0 epoch 1:", timeout=240)
        os.killpg(child.pid, signal.SIGINT)
        assert lines.wait_for("stopping: waiting for trial 0 to finish", timeout=30) < 30  # at once; slack for load
        assert "press Ctrl-C again to cut it now" in lines.rest()
        os.killpg(child.pid, signal.SIGINT)
        lines.wait_for("cutting trial 0 now", timeout=30)
        start = time.time()
        assert child.wait(timeout=60) == 130
        assert time.time() - start < 30, "the second Ctrl-C did not end the search promptly"
    finally:
        if child.poll() is None:
            child.kill()
    out = lines.rest()
    assert f"interrupted; continue with: morphnas resume {run}" in out, out
    rows = _rows(run)
    assert rows[0] == (0, "pending"), rows  # cut, so not recorded: it runs again on resume
    assert all(status == "pending" for _, status in rows)

    resumed = cli("resume", str(run), "--quiet", threads=1)
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    assert _rows(run) == [(0, "ok"), (1, "ok")]  # each trial once, none lost


def test_workers_survive_a_terminal_ctrl_c_and_the_running_trial_is_kept(tmp_path):
    config = _setup(tmp_path, extra='executor = "process"\nworkers = 1')
    run = tmp_path / "run"
    child = cli("search", "--config", str(config), "--out", str(run), "--no-progress", threads=1, env=SLOW,
                new_session=True)
    lines = Lines(child)
    try:
        lines.wait_for("trial 0 epoch 1:", timeout=240)
        os.killpg(child.pid, signal.SIGINT)  # the driver, its worker process and the resource tracker
        assert lines.wait_for("stopping: waiting for trial 0 to finish", timeout=30) < 30  # at once; slack for load
        assert child.wait(timeout=120) == 130  # the trial ends, is recorded, and the search stops by itself
    finally:
        if child.poll() is None:
            child.kill()
    rows = _rows(run)
    assert rows[0] == (0, "ok"), lines.rest()  # its worker did not die of the SIGINT: the result was kept
    assert "trial 0 ok" in lines.rest()
