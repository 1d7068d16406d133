"""The shared cache across replicas: key format, per-item size limit and TTL, a lease so one
replica renders what many ask for at once, and outage tolerance (timeouts, circuit breaker).

Imports the standard library, iiifsrv.caches (the ByteCache Protocol) and, in ``open_shared``
only, the backend module for the URL's scheme. Every failure of the backend is a miss here:
nothing in this module raises to a request because the shared cache is slow or gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from iiifsrv.caches import ByteCache

log = logging.getLogger("iiifsrv.cache")

T = TypeVar("T")
KEY_VERSION = "1"  # bump when the meaning of a stored value changes


class _Failed:
    """The backend call failed or was skipped (breaker open): treat as a miss."""


FAILED = _Failed()


@dataclass
class SharedStats:
    """Counters of one process (read by tests and, later, /metrics)."""

    hits: int = 0  # values found (directly or after waiting for another replica)
    misses: int = 0  # values absent
    puts: int = 0  # values stored
    too_large: int = 0  # values over the per-item limit, not stored
    errors: int = 0  # calls that failed or timed out
    skipped: int = 0  # calls not made: the breaker was open
    leases: int = 0  # renders this process did while holding the lease
    waits: int = 0  # times this process waited for another replica's render


class Breaker:
    """After ``threshold`` consecutive failures, skip the backend for ``backoff_s`` seconds;
    then let calls through again: one success closes it, one failure opens it again."""

    def __init__(
        self, threshold: int, backoff_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = max(threshold, 1)
        self.backoff_s = backoff_s
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.tripped = False

    def allow(self) -> bool:
        return self.clock() >= self.open_until

    def success(self) -> None:
        if self.tripped:
            log.warning("shared cache reachable again: using it")
            self.tripped = False
        self.failures = 0

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            if not self.tripped:
                log.warning(
                    "shared cache unreachable: skipping it for %.1f s at a time", self.backoff_s
                )
            self.tripped = True
            self.open_until = self.clock() + self.backoff_s
            self.failures = self.threshold - 1  # after the back-off one failure re-opens it


How = Literal["shared", "waited", "made"]


class SharedCache:
    """A ByteCache guarded for use on the request path."""

    def __init__(
        self,
        backend: ByteCache,
        *,
        namespace: str,
        ttl_s: int,
        max_item: int,
        timeout_s: float,
        lease_ms: int,
        backoff_s: float,
        failures: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.max_item = max_item
        self.timeout_s = timeout_s
        self.lease_ms = lease_ms
        self.breaker = Breaker(failures, backoff_s, clock)
        self.clock = clock
        self.stats = SharedStats()

    def key(self, kind: str, *parts: str) -> str:
        """``<namespace>:<kind>:<sha256 of the parts, 40 hex>``: bounded length whatever the
        identifier, and a different key whenever any part (source version, request) differs."""
        digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.namespace}:{kind}:{digest[:40]}"

    async def _call(self, what: str, make: Callable[[], Awaitable[T]]) -> T | _Failed:
        if not self.breaker.allow():
            self.stats.skipped += 1
            return FAILED
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await make()
        except Exception as exc:  # any failure of the cache is a miss, never an error
            self.stats.errors += 1
            self.breaker.failure()
            log.debug("shared cache %s failed: %r", what, exc)
            return FAILED
        self.breaker.success()
        return result

    async def get(self, key: str) -> bytes | None:
        values = await self._call("get", lambda: self.backend.get_many([key]))
        value = None if isinstance(values, _Failed) else values[0]
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_item:
            self.stats.too_large += 1
            return
        done = await self._call("put", lambda: self.backend.put(key, value, self.ttl_s))
        if not isinstance(done, _Failed):
            self.stats.puts += 1

    async def get_or_make(
        self, key: str, make: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, How]:
        """The value under ``key``, else made once across replicas: the first to take the
        lease (``SET NX PX``) makes and stores it; the others poll for it, for at most the
        lease's lifetime, then make it themselves. A holder that dies blocks nobody longer
        than the lease; a backend that fails means making it here, at once."""
        found = await self.get(key)
        if found is not None:
            return found, "shared"
        lease = key + ":lease"
        token = os.urandom(16).hex().encode()
        won = await self._call("lease", lambda: self.backend.add(lease, token, self.lease_ms))
        if won is True:
            return await self._make_leased(key, lease, token, make)
        if isinstance(won, _Failed):
            return await self._make(key, make), "made"
        self.stats.waits += 1
        deadline = self.clock() + self.lease_ms / 1000
        delay = 0.005
        while self.clock() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
            values = await self._call("poll", lambda: self.backend.get_many([key, lease]))
            if isinstance(values, _Failed):
                break
            value, holder = values
            if value is not None:
                self.stats.hits += 1
                return value, "waited"
            if holder is None:  # released without a value (failed, too large) or expired
                won = await self._call(
                    "lease", lambda: self.backend.add(lease, token, self.lease_ms)
                )
                if won is True:
                    return await self._make_leased(key, lease, token, make)
                if isinstance(won, _Failed):
                    break
        return await self._make(key, make), "made"

    async def _make(self, key: str, make: Callable[[], Awaitable[bytes]]) -> bytes:
        value = await make()
        await self.put(key, value)
        return value

    async def _make_leased(
        self, key: str, lease: str, token: bytes, make: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, How]:
        try:
            # Another replica may have stored it and let go of the lease between our look-up
            # and our lease: look once more, or it would be made twice.
            values = await self._call("get", lambda: self.backend.get_many([key]))
            if not isinstance(values, _Failed) and values[0] is not None:
                self.stats.hits += 1
                return values[0], "shared"
            self.stats.leases += 1
            return await self._make(key, make), "made"
        finally:
            await self._call("release", lambda: self.backend.delete_if(lease, token))

    async def close(self) -> None:
        try:
            await self.backend.close()
        except Exception as exc:  # closing a broken connection must not fail shutdown
            log.debug("closing the shared cache: %r", exc)


def open_shared(
    url: str,
    *,
    namespace: str,
    ttl_s: int,
    max_item: int,
    timeout_ms: int,
    lease_ms: int,
    backoff_s: float,
) -> SharedCache | None:
    """The shared cache named by ``url`` (``redis://``, ``rediss://``, ``unix://`` or
    ``memcached://``), or None when ``url`` is empty. Connects lazily: a server that is down at
    start-up is a miss."""
    if not url:
        return None
    scheme = url.partition("://")[0].lower()
    backend: ByteCache
    if scheme in ("redis", "rediss", "unix"):
        from iiifsrv.caches.redis import RedisCache

        backend = RedisCache(url, timeout_ms / 1000)
    elif scheme == "memcached":
        from iiifsrv.caches.memcached import MemcachedCache

        backend = MemcachedCache(url, timeout_ms / 1000)
    else:
        raise ValueError(
            f"cache_url: unsupported scheme {scheme!r} (use redis://, rediss:// or memcached://)"
        )
    return SharedCache(
        backend,
        namespace=namespace,
        ttl_s=ttl_s,
        max_item=max_item,
        timeout_s=timeout_ms / 1000,
        lease_ms=lease_ms,
        backoff_s=backoff_s,
    )
