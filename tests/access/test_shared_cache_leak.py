"""Two replicas sharing one Redis cache: what an authorised client made one replica put in the
shared cache (info.json bodies, rendered images) is never served to an anonymous client of the
other replica."""

from __future__ import annotations

import httpx
import pytest
import redis

from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app
from tests.access.conftest import sign_in
from tests.cache.conftest import REDIS_URL

pytestmark = pytest.mark.anyio


async def test_shared_cache_never_answers_anonymous_with_a_protected_body(
    protected: Settings,
) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"the test Redis at {REDIS_URL} is not reachable: {exc}")
    settings = replace(protected, cache_url=REDIS_URL)
    apps = [create_app(settings), create_app(settings)]
    a = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://test")
    b = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[1]), base_url="http://test")
    try:
        await sign_in(a)
        urls = [
            "/iiif/3/palimpsest%2FIR850/info.json",
            "/iiif/3/palimpsest%2FIR850/full/72,/0/default.jpg",
            "/iiif/2/palimpsest%2FIR850/full/72,/0/default.png",
            "/iiif/3/large/full/max/0/default.jpg",
        ]
        for url in urls:
            assert (await a.get(url)).status_code == 200, url
        for url in urls:
            r = await b.get(url)
            assert r.status_code in (302, 401), (url, r.status_code)
            if r.status_code == 401 and url.endswith("info.json"):
                assert r.headers["cache-control"] == "no-store"
        await sign_in(b)
        assert (await b.get(urls[1])).status_code == 200  # replica B serves the staff too
    finally:
        for client in (a, b):
            await client.aclose()
        for app in apps:
            await app.state.annotation_store.close()
            await app.state.service.close()
