"""The Redis backend of the shared cache: one key per item, each with its own TTL (``SET EX``),
leases with ``SET NX PX`` and a compare-and-delete script.

Imports redis (its asyncio client) and the standard library. Errors are raised to the caller.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# Delete the lease only if it is still ours (a slow holder must not free someone else's).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisCache:
    """A ByteCache on one Redis server (``redis://host:port/db``, ``rediss://`` or
    ``unix://``). The client reconnects by itself: a command after an outage opens a new
    connection. Every socket operation is bounded by ``timeout_s``; no retries (the caller
    treats a failure as a miss, which is cheaper than waiting)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._release: Any = self._client.register_script(_RELEASE)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if len(keys) == 1:
            return [await self._client.get(keys[0])]
        values: list[bytes | None] = await self._client.mget(keys)
        return values

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._client.set(key, value, ex=ttl_s)

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        return bool(await self._client.set(key, value, nx=True, px=ttl_ms))

    async def delete_if(self, key: str, value: bytes) -> None:
        await self._release(keys=[key], args=[value])

    async def close(self) -> None:
        await self._client.aclose()
