"""Caches: a byte-bounded in-memory LRU (memory.py) and a shared cache across replicas
(shared.py over a ByteCache backend such as redis.py).

This module holds the ByteCache Protocol; it imports only the standard library.
"""

from __future__ import annotations

from typing import Protocol


class ByteCache(Protocol):
    """A shared key → bytes store (Redis, memcached). Calls may raise on any failure: the
    caller (caches/shared.py) bounds them in time and turns every failure into a miss."""

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in one round trip (None for each absent key)."""
        ...

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds."""
        ...

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        """Store ``value`` only if ``key`` is absent (a lease); True when stored."""
        ...

    async def delete_if(self, key: str, value: bytes) -> None:
        """Delete ``key`` if it still holds ``value`` (release one's own lease, no one else's)."""
        ...

    async def close(self) -> None: ...
