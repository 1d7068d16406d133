"""The memcached backend of the shared cache: one key per item with its own expiry (``set``),
leases with ``add``, and a compare-and-expire (``gets`` then ``cas`` with a negative expiry).

Imports the standard library only (memcached's text protocol over asyncio streams). Errors are
raised to the caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

# memcached reads an expiry above 30 days as a Unix time, not a number of seconds.
RELATIVE_LIMIT = 30 * 24 * 3600
TOO_LARGE = b"SERVER_ERROR object too large"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class MemcachedError(Exception):
    """memcached answered something other than what the command expects."""


def _check(key: str) -> bytes:
    raw = key.encode()
    if len(raw) > 250 or any(b <= 32 or b == 127 for b in raw):
        raise MemcachedError(f"not a memcached key: {key!r}")
    return raw


def _expiry(seconds: int) -> int:
    return seconds if seconds <= RELATIVE_LIMIT else int(time.time()) + seconds


class MemcachedCache:
    """A ByteCache on one memcached server (``memcached://host:port``, port 11211 by default).

    Each call borrows a connection and gives it back only when the call completed: a call
    abandoned at its timeout closes its connection, so its late reply is never read as another
    call's. At most ``max_idle`` connections are kept; a server that went away and came back is
    reached again by the next call (a new connection)."""

    def __init__(self, url: str, timeout_s: float, max_idle: int = 8) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 11211
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: list[Streams] = []

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Streams]:
        streams = None
        while self._idle and streams is None:
            streams = self._idle.pop()
            if streams[0].at_eof():  # closed by the server (a restart) while idle
                streams[1].close()
                streams = None
        if streams is None:
            async with asyncio.timeout(self.timeout_s):
                streams = await asyncio.open_connection(self.host, self.port)
        try:
            yield streams
        except BaseException:
            streams[1].close()
            raise
        if len(self._idle) < self.max_idle and not streams[0].at_eof():
            self._idle.append(streams)
        else:
            streams[1].close()

    async def _store(
        self, verb: bytes, key: str, value: bytes, expiry: int, *extra: bytes
    ) -> bytes:
        head = b" ".join([verb, _check(key), b"0", str(expiry).encode(), str(len(value)).encode()])
        async with self._connection() as (reader, writer):
            writer.write(b" ".join([head, *extra]) + b"\r\n" + value + b"\r\n")
            await writer.drain()
            return (await reader.readuntil(b"\r\n"))[:-2]

    async def _values(self, verb: bytes, keys: list[str]) -> dict[bytes, tuple[bytes, bytes]]:
        """key → (value, cas unique or b"") of the keys present."""
        found: dict[bytes, tuple[bytes, bytes]] = {}
        async with self._connection() as (reader, writer):
            writer.write(b" ".join([verb, *map(_check, keys)]) + b"\r\n")
            await writer.drain()
            while True:
                line = (await reader.readuntil(b"\r\n"))[:-2]
                if line == b"END":
                    return found
                fields = line.split()
                if len(fields) < 4 or fields[0] != b"VALUE":
                    raise MemcachedError(f"unexpected reply {line[:80]!r}")
                data = await reader.readexactly(int(fields[3]) + 2)
                found[fields[1]] = (data[:-2], fields[4] if len(fields) > 4 else b"")

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        found = await self._values(b"get", keys)
        return [found[k][0] if k in found else None for k in (key.encode() for key in keys)]

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        reply = await self._store(b"set", key, value, _expiry(ttl_s))
        # Larger than the server's item size (-I): not stored, as over cache_shared_max_item.
        if reply != b"STORED" and not reply.startswith(TOO_LARGE):
            raise MemcachedError(f"set: {reply[:80]!r}")

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        # memcached counts whole seconds: a lease lasts ttl_ms rounded up (at least 1 s).
        reply = await self._store(b"add", key, value, max(1, math.ceil(ttl_ms / 1000)))
        if reply not in (b"STORED", b"NOT_STORED"):
            raise MemcachedError(f"add: {reply[:80]!r}")
        return reply == b"STORED"

    async def delete_if(self, key: str, value: bytes) -> None:
        found = (await self._values(b"gets", [key])).get(key.encode())
        if found is None or found[0] != value:
            return
        # A negative expiry ends the item at once; cas makes it only if nobody wrote it since.
        await self._store(b"cas", key, value, -1, found[1])

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
