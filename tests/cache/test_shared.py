"""caches/shared.py: keys, size limit, TTL, leases across processes, and that a broken, slow
or vanished backend is a miss (Cantaloupe's MockBrokenDerivativeCache, and its #900)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis
import redis.asyncio

from iiifsrv.caches.shared import Breaker, SharedCache, open_shared
from tests.cache.conftest import PrivateRedis


def _shared(url: str, **kw: object) -> SharedCache:
    options: dict[str, object] = {
        "namespace": "iiifsrv-test:" + secrets.token_hex(6),
        "ttl_s": 60,
        "max_item": 1000,
        "timeout_ms": 500,
        "lease_ms": 3000,
        "backoff_s": 0.2,
    }
    options.update(kw)
    cache = open_shared(url, **options)  # type: ignore[arg-type]
    assert cache is not None
    return cache


class Broken:
    """A backend whose every call fails (or, with ``hang``, never answers)."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls = 0

    async def _fail(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("down")

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        await self._fail()
        return []

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._fail()

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        await self._fail()
        return False

    async def delete_if(self, key: str, value: bytes) -> None:
        await self._fail()

    async def close(self) -> None:
        await self._fail()


def _guarded(backend: Broken, clock: list[float]) -> SharedCache:
    return SharedCache(
        backend,
        namespace="t",
        ttl_s=60,
        max_item=1000,
        timeout_s=0.05,
        lease_ms=1000,
        backoff_s=5,
        clock=lambda: clock[0],
    )


def test_key_format_is_bounded_and_changes_with_every_part() -> None:
    cache = _guarded(Broken(), [0.0])
    key = cache.key("img", "a.tif|1:2:3", "0,0,256,256/256,256/0/default.jpg")
    kind_and_digest = key.split(":")
    assert kind_and_digest[0] == "t" and kind_and_digest[1] == "img"
    assert len(kind_and_digest[2]) == 40
    assert cache.key("img", "a.tif|1:2:4", "0,0,256,256/256,256/0/default.jpg") != key
    assert cache.key("info", "a.tif|1:2:3", "0,0,256,256/256,256/0/default.jpg") != key
    assert len(cache.key("img", "x" * 10000)) == len(key)


async def test_broken_backend_is_a_miss_and_the_value_is_made_here() -> None:
    clock = [0.0]
    backend = Broken()
    cache = _guarded(backend, clock)
    assert await cache.get("k") is None
    made: list[int] = []

    async def make() -> bytes:
        made.append(1)
        return b"body"

    assert await cache.get_or_make("k2", make) == (b"body", "made")
    assert made == [1]
    await cache.put("k3", b"x")
    await cache.close()  # no exception either


async def test_hanging_backend_is_bounded_by_the_timeout() -> None:
    cache = _guarded(Broken(hang=True), [0.0])
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await cache.get("k") is None
    assert loop.time() - start < 1.0  # timeout_s = 0.05, not the backend's hour
    assert cache.stats.errors == 1


async def test_breaker_skips_the_backend_then_tries_again() -> None:
    clock = [100.0]
    backend = Broken()
    cache = _guarded(backend, clock)
    for _ in range(3):
        assert await cache.get("k") is None
    assert backend.calls == 3 and cache.breaker.tripped
    for _ in range(10):  # open: no call reaches the backend
        assert await cache.get("k") is None
    assert backend.calls == 3 and cache.stats.skipped == 10
    clock[0] += 5.1  # back-off over: one attempt; it fails, so open again at once
    assert await cache.get("k") is None
    assert backend.calls == 4
    assert await cache.get("k") is None
    assert backend.calls == 4


def test_breaker_closes_after_one_success() -> None:
    clock = [0.0]
    breaker = Breaker(3, 5, lambda: clock[0])
    for _ in range(3):
        breaker.failure()
    assert not breaker.allow()
    clock[0] = 5.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.tripped and breaker.failures == 0
    breaker.failure()
    assert breaker.allow()  # one failure after recovery does not open it


async def test_put_get_with_ttl_and_size_limit(redis_url: str) -> None:
    cache = _shared(redis_url, ttl_s=77, max_item=1000)
    key = cache.key("img", "v1")
    await cache.put(key, b"x" * 1000)
    assert await cache.get(key) == b"x" * 1000
    ttl = redis.Redis.from_url(redis_url).ttl(key)
    assert 0 < ttl <= 77
    big = cache.key("img", "v2")
    await cache.put(big, b"x" * 1001)
    assert await cache.get(big) is None
    assert cache.stats.too_large == 1
    await cache.close()


async def test_two_processes_one_make(redis_url: str) -> None:
    """Two SharedCache objects (as two replicas) asked at once: one makes, one waits."""
    namespace = "iiifsrv-test:" + secrets.token_hex(6)
    a, b = (_shared(redis_url, namespace=namespace) for _ in range(2))
    key = a.key("img", "tile")
    assert key == b.key("img", "tile")
    made: list[str] = []

    def maker(who: str) -> object:
        async def make() -> bytes:
            made.append(who)
            await asyncio.sleep(0.2)
            return b"tile-bytes"

        return make

    results = await asyncio.gather(
        a.get_or_make(key, maker("a")),  # type: ignore[arg-type]
        b.get_or_make(key, maker("b")),  # type: ignore[arg-type]
    )
    assert len(made) == 1
    assert sorted(how for _, how in results) == ["made", "waited"]
    assert all(body == b"tile-bytes" for body, _ in results)
    lease = redis.Redis.from_url(redis_url).exists(key + ":lease")
    assert lease == 0  # released once stored
    await a.close()
    await b.close()


async def test_a_dead_holder_blocks_nobody_longer_than_its_lease(redis_url: str) -> None:
    cache = _shared(redis_url, lease_ms=400)
    key = cache.key("img", "orphan")
    # A holder that took the lease and died: nobody will ever release it.
    redis.Redis.from_url(redis_url).set(key + ":lease", b"dead", px=400, nx=True)

    async def make() -> bytes:
        return b"made-by-waiter"

    loop = asyncio.get_running_loop()
    start = loop.time()
    body, how = await cache.get_or_make(key, make)
    assert (body, how) == (b"made-by-waiter", "made")
    assert loop.time() - start < 2.0
    assert await cache.get(key) == b"made-by-waiter"
    await cache.close()


async def test_failed_make_releases_the_lease(redis_url: str) -> None:
    cache = _shared(redis_url)
    key = cache.key("img", "fails")

    async def make() -> bytes:
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        await cache.get_or_make(key, make)
    assert redis.Redis.from_url(redis_url).exists(key + ":lease") == 0
    assert await cache.get(key) is None  # errors are never cached
    await cache.close()


async def test_redis_stopped_and_restarted_is_used_again(private_redis: PrivateRedis) -> None:
    cache = _shared(private_redis.url, timeout_ms=200, backoff_s=0.2)
    key = cache.key("img", "restart")
    await cache.put(key, b"v")
    assert await cache.get(key) == b"v"
    private_redis.stop()
    for _ in range(5):
        assert await cache.get(key) is None
    assert cache.breaker.tripped
    private_redis.start()  # empty: no persistence
    await cache.put(key, b"w")  # may be skipped while the breaker is open
    deadline = asyncio.get_running_loop().time() + 5
    while await cache.get(key) != b"w":
        assert asyncio.get_running_loop().time() < deadline, "the cache did not come back"
        await asyncio.sleep(0.05)
        await cache.put(key, b"w")
    assert not cache.breaker.tripped
    await cache.close()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        _shared("mongodb://127.0.0.1:27017")
    assert (
        open_shared("", namespace="n", ttl_s=1, max_item=1, timeout_ms=1, lease_ms=1, backoff_s=1)
        is None
    )


async def test_a_timed_out_call_never_leaves_its_reply_for_the_next(
    private_redis: PrivateRedis,
) -> None:
    """A call abandoned at its timeout must not leave its answer on a pooled connection,
    where the next call would read it as its own (another key's bytes)."""
    cache = _shared(private_redis.url, timeout_ms=100)
    one, two = cache.key("img", "one"), cache.key("img", "two")
    await cache.put(one, b"bytes of one")
    await cache.put(two, b"bytes of two")
    blocker = redis.asyncio.Redis.from_url(private_redis.url)
    stall = asyncio.create_task(blocker.execute_command("DEBUG", "SLEEP", "0.5"))
    await asyncio.sleep(0.05)  # the server is now asleep: the next call times out
    assert await cache.get(one) is None
    assert cache.stats.errors == 1
    await stall
    await blocker.aclose()
    assert await cache.get(two) == b"bytes of two"
    assert await cache.get(one) == b"bytes of one"
    await cache.close()
