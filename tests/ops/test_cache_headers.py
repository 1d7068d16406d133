"""What HTTP caches in front need: validators and Cache-Control on what may be shared, no-store
on every error whatever route made it, private for anything answered to credentials."""

from __future__ import annotations

import httpx
import pytest

from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
TILE = f"/iiif/3/{TIF}/0,0,256,256/256,/0/default.jpg"
TOKEN = "alice-Zq8vN2kLx4Rw7TyPm3Hc"


async def test_images_and_info_carry_what_a_shared_cache_needs(client: httpx.AsyncClient) -> None:
    tile = await client.get(TILE)
    info = await client.get(f"/iiif/3/{TIF}/info.json")
    for r in (tile, info):
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=86400"
        assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")
        assert r.headers["last-modified"].endswith(" GMT")
        assert "set-cookie" not in r.headers
    assert "vary" not in tile.headers  # one representation per URL
    assert info.headers["vary"] == "Accept"  # JSON or JSON-LD by Accept
    again = await client.get(TILE, headers={"If-None-Match": tile.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == tile.headers["etag"]


ERRORS = [
    ("GET", f"/iiif/3/{TIF}/full/max/0/default.xyz", 400),
    ("GET", f"/iiif/3/{TIF}/nonsense/max/0/default.jpg", 400),
    ("GET", "/iiif/3/no-such-image/info.json", 404),
    ("GET", "/iiif/2/no-such-image/full/max/0/default.jpg", 404),
    ("DELETE", f"/iiif/3/{TIF}/info.json", 405),
    ("GET", "/iiif/manifests/no-such-manifest", 404),
    ("POST", "/iiif/manifests", 401),
    ("GET", "/objects/no-such-object", 404),
    ("GET", "/spectra/no-such-object?x=1&y=1", 404),
    ("GET", "/media/no-such-file.wav", 404),
    ("GET", "/annotations/no-such-container/no-such-annotation", 404),
    ("POST", "/annotations/", 404),
    ("POST", "/session", 400),
    ("GET", "/viewer/mirador?manifest=javascript:alert(1)", 400),
    ("GET", "/no/route/here", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), ERRORS)
async def test_every_error_is_no_store(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"


async def test_an_unexpected_500_is_no_store(settings: Settings) -> None:
    app = create_app(settings)

    async def boom(*args: object) -> None:
        raise RuntimeError("boom")

    app.state.service.source = boom  # info.json asks the service first
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get(f"/iiif/3/{TIF}/info.json")
    assert r.status_code == 500 and r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "credentials",
    [
        {"Authorization": f"Bearer {TOKEN}"},
        {"Cookie": "theme=dark; iiifsrv_session=anything"},
    ],
)
async def test_responses_to_credentials_are_private(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    r = await client.get(TILE, headers=credentials)
    assert r.status_code == 200 and r.headers["cache-control"] == "private, max-age=86400"
    health = await client.get("/health", headers=credentials)
    assert health.headers["cache-control"] == "no-store"  # stays no-store


async def test_other_cookies_do_not_make_a_response_private(client: httpx.AsyncClient) -> None:
    r = await client.get(TILE, headers={"Cookie": "_ga=GA1.2.3"})
    assert r.headers["cache-control"] == "public, max-age=86400"


async def test_a_response_setting_a_cookie_is_no_store(settings: Settings) -> None:
    app = create_app(replace(settings, tokens=f"{TOKEN}=alice"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/session", json={"token": TOKEN})
    assert r.status_code == 200 and "iiifsrv_session=" in r.headers["set-cookie"]
    assert r.headers["cache-control"] == "no-store"
