"""Downloading dataset files: MD5-verified, atomic, trying each mirror in turn.

Kept apart from the dataset table (`registry`) so that what is fetched, from where, is data there and how
it is fetched is code here. A file that fails its checksum or arrives partial is never left behind.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DownloadError", "Remote", "download_file", "extract_members", "md5sum"]


class DownloadError(OSError):
    """A dataset could not be downloaded, or a downloaded file failed its checksum."""


@dataclass(frozen=True)
class Remote:
    """One file to download: its local name, the URLs to try in order, and its MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


def md5sum(path: Path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download `url` to `target` atomically, verifying its MD5; a bad or partial file is never left behind."""
    tmp = target.with_name(target.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if h.hexdigest() != md5:
            raise DownloadError(f"{url}: checksum mismatch (md5 {h.hexdigest()}, expected {md5}); file discarded")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download_file(remote: Remote, directory: Path) -> Path:
    """`remote` as a verified file in `directory` (kept if already there with the right MD5)."""
    target = directory / remote.filename
    if target.is_file() and md5sum(target) == remote.md5:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        try:
            _fetch(url, target, remote.md5)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors))


def extract_members(archive: Path, out: Path, wanted: Iterable[str]) -> Path:
    """Extract the regular files named exactly in `wanted` from a .tar.gz into `out` (flat, atomically)."""
    names = set(wanted)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name in names and member.isfile():
                src = tar.extractfile(member)
                assert src is not None
                tmp = out / (Path(member.name).name + ".part")
                tmp.write_bytes(src.read())
                os.replace(tmp, out / Path(member.name).name)
    return out
