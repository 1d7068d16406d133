"""A byte-bounded LRU cache of encoded responses, keyed so a changed source is never served stale.

Imports cachetools; no I/O. Keys must include the source's identity (inode, mtime, size).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")
_OVERHEAD = 200  # bytes of bookkeeping per entry, so many tiny entries still count


class ByteLRU(Generic[V]):
    def __init__(self, max_bytes: int, max_item: int) -> None:
        self.max_item = max_item
        self.enabled = max_bytes > 0
        self._cache: LRUCache[Hashable, tuple[int, V]] = LRUCache(
            maxsize=max(max_bytes, 1), getsizeof=lambda entry: entry[0]
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        entry = self._cache.get(key) if self.enabled else None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, value: V, nbytes: int) -> None:
        if not self.enabled or nbytes > self.max_item:
            return
        self._cache[key] = (nbytes + _OVERHEAD, value)

    @property
    def currsize(self) -> int:
        return int(self._cache.currsize)

    def __len__(self) -> int:
        return len(self._cache)
