"""Shared helpers for the tests that run searches in subprocesses: the CLI as a child, and reading its run's
progress without disturbing it (read-only SQLite)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path | None = None, threads: int | None = None, env: dict[str, str] | None = None,
        new_session: bool = False) -> subprocess.Popen:
    """``python -m morphnas.cli ARGS`` as a child process (unbuffered; ``threads`` caps its intra-op threads;
    ``env`` adds variables; ``new_session`` makes it lead its own process group, like a terminal's job, so that
    ``os.killpg`` reaches it and its workers as a Ctrl-C would)."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if threads is not None:
        environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.Popen([sys.executable, "-m", "morphnas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environ, cwd=cwd,
                            start_new_session=new_session, preexec_fn=_as_a_terminal_job if new_session else None)


def _as_a_terminal_job() -> None:
    """SIGINT as a shell gives a job: default action, unblocked (not whatever the test process inherited or set:
    an ignored or blocked SIGINT passes to children through exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def finished_trials(run: Path) -> int:
    """How many trials of the run in ``run`` have finished (0 while it has no database yet)."""
    db = run / "trials.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE status IN ('ok', 'failed', 'cut')").fetchone()[0]
    except sqlite3.Error:
        return 0
