"""Real replicas: three ``iiifsrv serve --workers 1`` processes on one Redis (or one memcached)
render a burst of one uncached tile once; two replicas under load survive their Redis being
killed and restarted (no 5xx) and use it again by themselves (a cross-process hit after
recovery)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cache.conftest import PrivateMemcached, PrivateRedis
from tests.conftest import LiveServer, start_server, stop_server

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"


@pytest.fixture
def images(tmp_path: Path, fixture_files: dict[str, Path]) -> Path:
    root = tmp_path / "images"  # a private copy: new inode and mtime, so fresh keys
    root.mkdir()
    shutil.copy(fixture_files[TIF], root / "page.tif")
    return root


def _replicas(images: Path, tmp: Path, count: int, cache_url: str) -> Iterator[list[LiveServer]]:
    env = {
        "IIIFSRV_CACHE_URL": cache_url,
        "IIIFSRV_DEBUG": "true",  # Server-Timing: render, shared, renders (process total)
        "IIIFSRV_CACHE_TIMEOUT_MS": "200",
        "IIIFSRV_CACHE_BACKOFF": "1",
        "IIIFSRV_LIMIT_CONCURRENCY": "0",
    }
    servers: list[LiveServer] = []
    try:
        for n in range(count):
            servers.append(start_server(images, tmp / f"data{n}", "--workers", "1", env=env))
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture(params=["redis", "memcached"])
def three(
    request: pytest.FixtureRequest, images: Path, tmp_path: Path, redis_url: str
) -> Iterator[list[LiveServer]]:
    if request.param == "redis":
        yield from _replicas(images, tmp_path, 3, redis_url)
        return
    memcached = PrivateMemcached()
    memcached.start()
    try:
        yield from _replicas(images, tmp_path, 3, memcached.url)
    finally:
        memcached.stop()


def _renders(response: httpx.Response) -> int:
    found = re.search(r"renders;desc=(\d+)", response.headers["server-timing"])
    assert found, response.headers["server-timing"]
    return int(found.group(1))


async def test_burst_over_three_replicas_renders_once(three: list[LiveServer]) -> None:
    tile = "/iiif/3/page.tif/130,70,410,390/205,/0/default.jpg"  # no stored tile: a render
    async with httpx.AsyncClient(timeout=30) as client:
        before = [
            _renders(await client.get(s.url + "/iiif/3/page.tif/full/64,/0/default.png"))
            for s in three
        ]
        responses = await asyncio.gather(*(client.get(three[i % 3].url + tile) for i in range(50)))
        assert [r.status_code for r in responses] == [200] * 50
        assert len({r.content for r in responses}) == 1
        rendered_here = [r for r in responses if "render;dur=" in r.headers["server-timing"]]
        assert len(rendered_here) == 1
        after = [_renders(await client.get(s.url + tile)) for s in three]
    renders = sum(after) - sum(before)
    print(f"\n50 requests over 3 replicas: {renders} render(s); counters {before} -> {after}")
    assert renders == 1


async def _load(client: httpx.AsyncClient, urls: list[str], statuses: list[int]) -> None:
    queue = list(urls)

    async def worker() -> None:
        while queue:
            url = queue.pop()
            statuses.append((await client.get(url)).status_code)

    await asyncio.gather(*(worker() for _ in range(8)))


def _tiles(base: str, start: int, count: int) -> list[str]:
    return [
        f"{base}/iiif/3/page.tif/{(n * 37) % 700},{(n * 53) % 400},233,211/117,/0/default.jpg"
        for n in range(start, start + count)
    ]


async def test_redis_killed_and_restarted_under_load(
    images: Path, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    servers = _replicas(images, tmp_path, 2, private_redis.url)
    a, b = next(servers)
    statuses: list[int] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # Before: new tiles on A, the same ones again on B (shared hits), info.json.
            urls = _tiles(a.url, 0, 40) + _tiles(b.url, 0, 40)
            urls += [f"{s.url}/iiif/3/page.tif/info.json" for s in (a, b)] * 10
            await _load(client, urls, statuses)
            hit = await client.get(_tiles(b.url, 5, 1)[0])
            assert (
                "shared;dur=" in hit.headers["server-timing"]
                or "cache;desc=hit" in (hit.headers["server-timing"])
            )
            # Redis killed: repeated tiles (own caches), new tiles (the source), info.json.
            private_redis.stop()
            t0 = time.monotonic()
            urls = _tiles(a.url, 0, 40) + _tiles(b.url, 40, 60) + _tiles(a.url, 100, 60)
            urls += [f"{s.url}/iiif/3/page.tif/info.json" for s in (a, b)] * 10
            await _load(client, urls, statuses)
            outage = time.monotonic() - t0
            # Restarted on the same port, empty: the replicas find it again by themselves.
            private_redis.start()
            recovered_after = None
            t1 = time.monotonic()
            n = 1000
            while time.monotonic() - t1 < 15:
                n += 1
                first = await client.get(_tiles(a.url, n, 1)[0])
                second = await client.get(_tiles(b.url, n, 1)[0])
                statuses += [first.status_code, second.status_code]
                if "shared;dur=" in second.headers["server-timing"]:
                    recovered_after = time.monotonic() - t1
                    break
                await asyncio.sleep(0.2)
            urls = _tiles(a.url, 200, 40) + _tiles(b.url, 200, 40)
            await _load(client, urls, statuses)
    finally:
        servers.close()  # stops both replicas
    bad = [s for s in statuses if not 200 <= s < 300]
    print(
        f"\n{len(statuses)} requests, {len(bad)} not 2xx; outage phase {outage:.1f}s; "
        f"cross-replica hit {recovered_after}s after the restart"
    )
    assert bad == []
    assert len(statuses) >= 360
    assert recovered_after is not None, "no cross-process hit after Redis came back"
