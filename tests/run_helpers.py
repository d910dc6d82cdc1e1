"""Shared helpers for the tests that run searches in subprocesses: the CLI as a child, and reading its run's
progress without disturbing it (read-only SQLite)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path | None = None, threads: int | None = None) -> subprocess.Popen:
    """``python -m morphnas.cli ARGS`` as a child process (unbuffered; ``threads`` caps its intra-op threads)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.Popen([sys.executable, "-m", "morphnas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)


def finished_trials(run: Path) -> int:
    """How many trials of the run in ``run`` have finished (0 while it has no database yet)."""
    db = run / "trials.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE status IN ('ok', 'failed')").fetchone()[0]
    except sqlite3.Error:
        return 0
