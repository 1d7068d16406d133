"""Storage in a local folder: keys are paths relative to the folder (blocking os calls).

Imports the standard library, iiifsrv.errors and sources.storage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from iiifsrv.errors import NotFound
from iiifsrv.sources.storage import Version


def version_of(st: os.stat_result) -> Version:
    return Version(f"{st.st_mtime_ns}:{st.st_size}", st.st_size, st.st_mtime_ns / 1e9)


def read_file(path: str, offset: int, length: int) -> bytes:
    """One positioned read (pread) of ``length`` bytes at ``offset``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


class LocalStorage:
    """A folder: keys are "/"-separated relative paths; nothing resolving outside is read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root_real = os.path.realpath(self.root)

    def path(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise NotFound("no such object")
        full = os.path.realpath(os.path.join(self.root_real, *parts))
        if not full.startswith(self.root_real + os.sep):
            raise NotFound("no such object")
        return full

    def stat(self, key: str) -> Version:
        try:
            st = os.stat(self.path(key))
        except OSError:
            raise NotFound("no such object") from None
        return version_of(st)

    def read(self, key: str, offset: int, length: int, *, etag: str = "") -> bytes:
        """``etag`` is not checked: a local file's version is checked by its stat."""
        try:
            return read_file(self.path(key), offset, length)
        except OSError:
            raise NotFound("no such object") from None

    def list(self, prefix: str) -> Iterator[tuple[str, Version]]:
        folder, _, start = prefix.rpartition("/")
        try:
            base = self.path(folder) if folder else self.root_real
            names = sorted(os.listdir(base))
        except (OSError, NotFound):
            return
        for name in names:
            if not name.startswith(start):
                continue
            try:
                st = os.stat(os.path.join(base, name))
            except OSError:
                continue
            if os.path.isfile(os.path.join(base, name)):
                yield (f"{folder}/{name}" if folder else name), version_of(st)

    def exists(self, key: str) -> bool:
        try:
            return os.path.isfile(self.path(key))
        except NotFound:
            return False
