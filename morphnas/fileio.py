"""Atomic file writes: the one helper every part of morphnas uses to put a file on disk.

A file is written under a temporary name in its own directory, flushed and fsynced, then renamed over the
final name (``os.replace`` is atomic on POSIX and Windows), and the directory entry is fsynced where the OS
allows it. A crash or ``kill -9`` at any moment leaves either the old file or the new one, never a torn one.
It lives at the top of the package, importing nothing of morphnas, so the graph (architecture and weights
files) and storage (the run directory) share it without breaking their one-way dependency.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``data`` to ``path`` atomically: bytes, text (UTF-8), or a callable that writes a file at the
    temporary path it is given (e.g. ``numpy.savez`` or safetensors' ``save_file``)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path
