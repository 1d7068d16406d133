"""The shared cache on memcached (``cache_url = memcached://…``), a private server per test: the
same guarantees as on Redis — per-item TTL and size limit, one make across replicas, a dead
holder blocks nobody longer than its lease, a failed make frees the lease, a stalled or
restarted server is a miss and is used again by itself — and two apps share info.json and
rendered tiles through it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from iiifsrv.caches.memcached import MemcachedCache
from iiifsrv.caches.shared import SharedCache, open_shared
from iiifsrv.settings import load
from iiifsrv.web.app import create_app
from tests.cache.conftest import PrivateMemcached

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"
TILE = "/iiif/3/page.tif/100,100,300,300/150,/0/default.jpg"  # not a stored tile


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
    assert cache is not None and isinstance(cache.backend, MemcachedCache)
    return cache


async def test_put_get_with_ttl_and_size_limit(private_memcached: PrivateMemcached) -> None:
    cache = _shared(private_memcached.url, ttl_s=77, max_item=1000)
    key = cache.key("img", "v1")
    await cache.put(key, b"x" * 1000)
    assert await cache.get(key) == b"x" * 1000
    left = private_memcached.command(f"mg {key} t\r\n".encode(), end=b"\r\n")  # HD t<secs>
    assert left.startswith(b"HD t") and 0 < int(left.split(b" t")[1]) <= 77
    big = cache.key("img", "v2")
    await cache.put(big, b"x" * 1001)
    assert await cache.get(big) is None
    assert cache.stats.too_large == 1
    assert cache.stats.errors == 0
    await cache.close()


async def test_an_item_over_the_servers_limit_is_not_an_error(
    private_memcached: PrivateMemcached,
) -> None:
    """memcached refuses items over its item size (1 MiB by default, ``-I``): not stored, as
    one over cache_shared_max_item; the connection and the breaker stay good."""
    cache = _shared(private_memcached.url, max_item=4 * 1024 * 1024)
    big, small = cache.key("img", "big"), cache.key("img", "small")
    await cache.put(big, b"x" * (2 * 1024 * 1024))
    await cache.put(small, b"small")
    assert await cache.get(big) is None
    assert await cache.get(small) == b"small"
    assert cache.stats.errors == 0 and not cache.breaker.tripped
    await cache.close()


async def test_two_replicas_one_make_and_the_lease_released(
    private_memcached: PrivateMemcached,
) -> None:
    namespace = "iiifsrv-test:" + secrets.token_hex(6)
    a, b = (_shared(private_memcached.url, namespace=namespace) for _ in range(2))
    key = a.key("img", "tile")
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
    assert private_memcached.command(f"get {key}:lease\r\n".encode()) == b"END\r\n"
    await a.close()
    await b.close()


async def test_a_lease_is_released_only_by_its_holder(private_memcached: PrivateMemcached) -> None:
    backend = MemcachedCache(private_memcached.url, 1.0)
    assert await backend.add("lease", b"mine", 5000) is True
    assert await backend.add("lease", b"theirs", 5000) is False
    await backend.delete_if("lease", b"theirs")
    assert await backend.get_many(["lease"]) == [b"mine"]
    await backend.delete_if("lease", b"mine")
    assert await backend.get_many(["lease"]) == [None]
    assert await backend.add("lease", b"theirs", 5000) is True
    await backend.close()


async def test_a_dead_holder_blocks_nobody_longer_than_its_lease(
    private_memcached: PrivateMemcached,
) -> None:
    cache = _shared(private_memcached.url, lease_ms=400)  # memcached: whole seconds, so 1 s
    key = cache.key("img", "orphan")
    private_memcached.command(f"add {key}:lease 0 1 4\r\ndead\r\n".encode(), end=b"STORED\r\n")

    async def make() -> bytes:
        return b"made-by-waiter"

    loop = asyncio.get_running_loop()
    start = loop.time()
    body, how = await cache.get_or_make(key, make)
    assert (body, how) == (b"made-by-waiter", "made")
    assert loop.time() - start < 3.0
    assert await cache.get(key) == b"made-by-waiter"
    await cache.close()


async def test_failed_make_releases_the_lease(private_memcached: PrivateMemcached) -> None:
    cache = _shared(private_memcached.url)
    key = cache.key("img", "fails")

    async def make() -> bytes:
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        await cache.get_or_make(key, make)
    assert private_memcached.command(f"get {key}:lease\r\n".encode()) == b"END\r\n"
    assert await cache.get(key) is None  # errors are never cached
    await cache.close()


async def test_a_timed_out_call_never_leaves_its_reply_for_the_next(
    private_memcached: PrivateMemcached,
) -> None:
    cache = _shared(private_memcached.url, timeout_ms=100)
    one, two = cache.key("img", "one"), cache.key("img", "two")
    await cache.put(one, b"bytes of one")
    await cache.put(two, b"bytes of two")
    private_memcached.pause(True)  # stalled: replies wait
    try:
        assert await cache.get(one) is None
    finally:
        private_memcached.pause(False)
    assert cache.stats.errors == 1
    assert await cache.get(two) == b"bytes of two"
    assert await cache.get(one) == b"bytes of one"
    await cache.close()


async def test_stopped_and_restarted_is_used_again(private_memcached: PrivateMemcached) -> None:
    cache = _shared(private_memcached.url, timeout_ms=200, backoff_s=0.2)
    key = cache.key("img", "restart")
    await cache.put(key, b"v")
    assert await cache.get(key) == b"v"
    private_memcached.stop()
    for _ in range(5):
        assert await cache.get(key) is None
    assert cache.breaker.tripped
    private_memcached.start()  # empty
    deadline = asyncio.get_running_loop().time() + 5
    await cache.put(key, b"w")  # may be skipped while the breaker is open
    while await cache.get(key) != b"w":
        assert asyncio.get_running_loop().time() < deadline, "the cache did not come back"
        await asyncio.sleep(0.05)
        await cache.put(key, b"w")
    assert not cache.breaker.tripped
    await cache.close()


async def test_two_apps_share_info_json_and_tiles(
    tmp_path: Path, fixture_files: dict[str, Path], private_memcached: PrivateMemcached
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(fixture_files[TIF], images / "page.tif")
    clients = []
    for n in range(2):
        settings = load(
            overrides={
                "images": str(images),
                "data": str(tmp_path / f"data{n}"),
                "cache_url": private_memcached.url,
                "debug": True,
            }
        )
        app = create_app(settings)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a")
        clients.append((client, app.app.state.service))
    (a, sa), (b, sb) = clients
    try:
        info = [await c.get("/iiif/3/page.tif/info.json") for c in (a, b)]
        assert [r.status_code for r in info] == [200, 200] and info[0].content == info[1].content
        ra, rb = await a.get(TILE), await b.get(TILE)
        assert ra.status_code == rb.status_code == 200 and ra.content == rb.content
        assert "shared;dur=" in rb.headers["server-timing"]
        assert sa.renders == 1 and sb.renders == 0
        assert sb.shared.stats.hits >= 2  # info.json, then the tile
    finally:
        for client, service in clients:
            await client.aclose()
            await service.close()
