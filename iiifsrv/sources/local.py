"""Storage in a local folder: keys are paths relative to the folder (blocking os calls).

Imports the standard library, iiifsrv.errors and sources.storage.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
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


class _Open:
    """One open descriptor and the identity (inode, mtime, size) fstat gave when it was opened;
    closed once evicted and no reader holds it (so a number is never reused under a reader)."""

    __slots__ = ("fd", "identity", "users", "evicted")

    def __init__(self, fd: int, identity: tuple[int, int, int]) -> None:
        self.fd = fd
        self.identity = identity
        self.users = 0
        self.evicted = False


class OpenFiles:
    """Source files kept open between reads (an LRU of descriptors), so a stored tile costs one
    pread instead of open + pread + close.

    A descriptor is used only for the file version the caller expects — (inode, mtime_ns, size)
    as the caller's own stat of the path found them — else the path is opened again: a file
    replaced under its name (new inode) or rewritten in place (new mtime or size) is read anew;
    a replacement between the caller's stat and the read yields the bytes of the version the
    caller described while its descriptor is open (else the new file is read once, as a plain
    open would). A deleted file's space is freed at the first read at least ``sweep_every``
    seconds after the previous sweep (descriptors of files with no name left are closed), or when
    its descriptor is evicted (at most ``capacity`` files are held). Thread-safe (worker threads
    read too)."""

    def __init__(
        self,
        capacity: int = 64,
        sweep_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.sweep_every = sweep_every
        self._clock = clock
        self._swept = clock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # files opened (a reused descriptor does not count): for tests, metrics

    def sweep(self) -> None:
        """Close the descriptors of deleted files (no link left), so their space is freed."""
        with self._lock:
            self._swept = self._clock()
            for path, entry in list(self._open.items()):
                try:
                    gone = os.fstat(entry.fd).st_nlink == 0
                except OSError:
                    gone = True
                if gone:
                    del self._open[path]
                    self._evict(entry)

    def read(self, path: str, identity: tuple[int, int, int], offset: int, length: int) -> bytes:
        entry = self._acquire(path, identity)
        try:
            return os.pread(entry.fd, length, offset)
        finally:
            self._release(entry)

    def _acquire(self, path: str, identity: tuple[int, int, int]) -> _Open:
        if self._clock() - self._swept >= self.sweep_every:
            self.sweep()
        with self._lock:
            entry = self._open.get(path)
            if entry is not None and entry.identity == identity:
                self._open.move_to_end(path)
                entry.users += 1
                return entry
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        fresh = _Open(fd, (st.st_ino, st.st_mtime_ns, st.st_size))
        fresh.users = 1
        with self._lock:
            self.opened += 1
            if fresh.identity != identity:
                # Not the version the caller described (it changed after the caller's stat):
                # read this once, keep nothing; the caller's next stat sees the new version.
                fresh.evicted = True
                return fresh
            old = self._open.pop(path, None)
            if old is not None:
                self._evict(old)
            self._open[path] = fresh
            while len(self._open) > self.capacity:
                self._evict(self._open.popitem(last=False)[1])
        return fresh

    def _release(self, entry: _Open) -> None:
        with self._lock:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                os.close(entry.fd)

    def _evict(self, entry: _Open) -> None:
        """Under the lock: closed now, or by its last reader."""
        entry.evicted = True
        if entry.users == 0:
            os.close(entry.fd)

    def clear(self) -> None:
        with self._lock:
            while self._open:
                self._evict(self._open.popitem()[1])


# The process's descriptors for local source files (Source.read).
OPEN_FILES = OpenFiles()


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
