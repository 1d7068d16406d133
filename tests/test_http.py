"""HTTP behaviour of the Image API: status codes, headers, caching, CORS, negotiation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import load
from iiifsrv.web.app import create_app

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"


async def test_base_uri_redirects_to_info(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/iiif/3/{TIF}")
    assert r.status_code == 303
    assert r.headers["location"] == f"http://testserver/iiif/3/{TIF}/info.json"
    r = await client.get(f"/iiif/2/{TIF}/")
    assert r.status_code == 303
    assert r.headers["location"] == f"http://testserver/iiif/2/{TIF}/info.json"


async def test_base_uri_of_unknown_identifier_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/iiif/3/no-such-image")).status_code == 404


@pytest.mark.parametrize(
    ("version", "accept", "ctype"),
    [
        (3, None, 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'),
        (3, "application/json", "application/json"),
        (
            3,
            "application/ld+json",
            'application/ld+json;profile="http://iiif.io/api/image/3/context.json"',
        ),
        (2, None, "application/json"),
        (
            2,
            "application/ld+json",
            'application/ld+json;profile="http://iiif.io/api/image/2/context.json"',
        ),
    ],
)
async def test_info_content_negotiation(
    client: httpx.AsyncClient, version: int, accept: str | None, ctype: str
) -> None:
    headers = {"Accept": accept} if accept else {}
    r = await client.get(f"/iiif/{version}/{TIF}/info.json", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    assert r.headers["vary"] == "Accept"


async def test_info_id_uses_host_and_public_url(image_root: Path, tmp_path: Path) -> None:
    app = create_app(
        load(overrides={"images": str(image_root), "public_url": "https://iiif.example.org/base/"})
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://internal:8182"
    ) as c:
        doc = (await c.get(f"/iiif/3/{TIF}/info.json")).json()
        assert doc["id"] == f"https://iiif.example.org/base/iiif/3/{TIF}"
        r = await c.get(f"/iiif/3/{TIF}/full/max/0/default.jpg")
        assert (
            f"<https://iiif.example.org/base/iiif/3/{TIF}/full/max/0/default.jpg>"
            in r.headers["link"]
        )


async def test_info_tiles_are_the_files_tiles(client: httpx.AsyncClient) -> None:
    doc = (
        await client.get("/iiif/3/tif-rgb-4lvl-1000x700-tiled128-deflate-subifd/info.json")
    ).json()
    assert doc["tiles"] == [{"width": 128, "scaleFactors": [1, 2, 4, 8]}]
    assert doc["sizes"][0] == {"width": 125, "height": 87}  # libvips floors SubIFD levels
    doc = (await client.get("/iiif/3/jp2-rgb-1000x700-tiled256/info.json")).json()
    assert doc["tiles"][0]["width"] == 256


async def test_image_headers(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/iiif/3/{TIF}/0,0,500,350/250,/0/default.jpg")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["link"] == (
        f'<http://testserver/iiif/3/{TIF}/0,0,500,350/250,175/0/default.jpg>;rel="canonical",'
        '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
    )
    assert int(r.headers["content-length"]) == len(r.content)


async def test_head_has_headers_and_no_body(client: httpx.AsyncClient) -> None:
    g = await client.get(f"/iiif/3/{TIF}/full/100,/0/default.jpg")
    h = await client.head(f"/iiif/3/{TIF}/full/100,/0/default.jpg")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-length"] == g.headers["content-length"]
    assert h.headers["etag"] == g.headers["etag"]


async def test_conditional_requests(client: httpx.AsyncClient) -> None:
    url = f"/iiif/3/{TIF}/full/100,/0/default.jpg"
    r = await client.get(url)
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    r = await client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag
    assert (await client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
    info = await client.get(f"/iiif/3/{TIF}/info.json")
    again = await client.get(
        f"/iiif/3/{TIF}/info.json", headers={"If-None-Match": info.headers["etag"]}
    )
    assert again.status_code == 304


async def test_equivalent_requests_share_the_etag(client: httpx.AsyncClient) -> None:
    a = await client.get(f"/iiif/3/{TIF}/full/500,/0/default.jpg")
    b = await client.get(f"/iiif/3/{TIF}/full/500,350/0/color.jpg")
    c = await client.get(f"/iiif/2/{TIF}/full/500,/0/default.jpg")
    assert a.headers["etag"] == b.headers["etag"] == c.headers["etag"]
    assert a.content == b.content == c.content


async def test_changed_file_is_never_served_stale(image_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(image_root / f"{TIF}.tif", root / "changing.tif")
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.get("/iiif/3/changing/full/100,/0/default.png")
        shutil.copy(image_root / "png-rgb-flat-1000x700.png", root / "changing.tif.tmp")
        # Replace with a different picture (mirrored PNG content) and a new mtime.
        import pyvips

        pyvips.Image.new_from_file(str(root / "changing.tif.tmp")).fliphor().tiffsave(
            str(root / "changing.tif"), tile=True, pyramid=True
        )
        later = time.time() + 5
        os.utime(root / "changing.tif", (later, later))
        second = await c.get("/iiif/3/changing/full/100,/0/default.png")
        assert second.status_code == 200
        assert second.headers["etag"] != first.headers["etag"]
        assert second.content != first.content


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/iiif/3/{TIF}/nonsense/max/0/default.jpg", 400),
        (f"/iiif/3/{TIF}/full/nonsense/0/default.jpg", 400),
        (f"/iiif/3/{TIF}/full/max/nonsense/default.jpg", 400),
        (f"/iiif/3/{TIF}/full/max/0/nonsense.jpg", 400),
        (f"/iiif/3/{TIF}/full/max/0/default.xyz", 400),
        (f"/iiif/3/{TIF}/full/full/0/default.jpg", 400),
        (f"/iiif/3/{TIF}/2000,0,10,10/max/0/default.jpg", 400),
        (f"/iiif/3/{TIF}/full/2000,/0/default.jpg", 400),
        (f"/iiif/3/{TIF}/full/max/400/default.jpg", 400),
        ("/iiif/3/unknown-image/full/max/0/default.jpg", 404),
        ("/iiif/3/unknown-image/info.json", 404),
        ("/iiif/3/%5Bfrob%5D/full/max/0/default.jpg", 404),
        ("/iiif/3/%FF%FE/info.json", 400),
        ("/iiif/3/", 404),
    ],
)
async def test_error_statuses_are_plain_one_line_messages(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    r = await client.get(path)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.text.count("\n") == 1 and 0 < len(r.text) < 300
    assert "Traceback" not in r.text


async def test_unsupported_methods(client: httpx.AsyncClient) -> None:
    r = await client.post(f"/iiif/3/{TIF}/info.json")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_cors_preflight(client: httpx.AsyncClient) -> None:
    r = await client.options(
        f"/iiif/3/{TIF}/info.json",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]
    r = await client.options(
        "/health", headers={"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"


async def test_health_and_landing(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await client.get("/")
    assert r.status_code == 200
    assert f'/iiif/3/{TIF}/info.json"' in r.text
    assert "collection%2Fbox%201%2Fpage-0001" in r.text


async def test_debug_server_timing(image_root: Path) -> None:
    app = create_app(load(overrides={"images": str(image_root), "debug": True}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get(f"/iiif/3/{TIF}/full/90,/0/default.jpg")
        assert "render;dur=" in r.headers["server-timing"]
        r = await c.get(f"/iiif/3/{TIF}/full/90,/0/default.jpg")
        assert "cache;desc=hit" in r.headers["server-timing"]


async def test_new_derivative_replaces_the_master_at_once(image_root: Path, tmp_path: Path) -> None:
    """An extensionless identifier served from a JPEG switches to a pyramid added beside it."""
    import pyvips

    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(image_root / "jpeg-rgb-flat-1000x700.jpg", root / "page.jpg")
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        url = "/iiif/3/page/full/100,/0/default.png"
        first = await c.get(url)
        again = await c.get(url)
        assert again.content == first.content
        flipped = pyvips.Image.new_from_file(str(root / "page.jpg")).fliphor()
        flipped.tiffsave(
            str(root / "page.tif"), tile=True, pyramid=True, tile_width=256, tile_height=256
        )
        later = time.time() + 5
        os.utime(root, (later, later))
        second = await c.get(url)
        assert second.status_code == 200 and second.content != first.content
        assert (await c.get("/iiif/3/page/info.json")).json()["tiles"][0]["width"] == 256


async def test_hot_responses_answer_conditionals_and_head(client: httpx.AsyncClient) -> None:
    url = f"/iiif/3/{TIF}/0,0,512,512/256,/0/default.jpg"
    first = await client.get(url)
    hot = await client.get(url)
    assert hot.content == first.content and hot.headers["etag"] == first.headers["etag"]
    assert hot.headers["link"] == first.headers["link"]
    assert (
        await client.get(url, headers={"If-None-Match": first.headers["etag"]})
    ).status_code == 304
    head = await client.head(url)
    assert head.content == b"" and head.headers["content-length"] == first.headers["content-length"]
