"""The landing page, the viewer pages and the static viewer assets, in-process (the browser
tests are in test_viewers_e2e.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Band, Catalogue, CatalogueObject
from iiifsrv.errors import Unavailable
from iiifsrv.settings import Settings
from iiifsrv.web import viewers
from iiifsrv.web.app import create_app

pytestmark = pytest.mark.anyio
BUILT = viewers.VITE_MANIFEST.is_file() and (viewers.BUILD / "uv" / "umd" / "UV.js").is_file()
needs_build = pytest.mark.skipif(not BUILT, reason="viewers not built (scripts/setup)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    images = tmp_path / "images"
    (images / "folio").mkdir(parents=True)
    grey = (pyvips.Image.black(120, 160) + 90).cast("uchar")
    for name in ("plain", "folio/IR940", "folio/R650", "loose"):
        grey.pngsave(str(images / f"{name}.png"))
    settings = Settings(images=str(images), data=str(tmp_path / "data"))
    cat = Catalogue(settings.data_path / "catalogue.sqlite3")
    size = {"width": 120, "height": 160}
    cat.upsert(CatalogueObject("plain", "A <plain> image", "image", image="plain", **size))
    bands = (
        Band("IR940", 940.0, "folio/IR940", "940 nm infrared"),
        Band("R650", 650.0, "folio/R650", "650 nm red"),
    )
    cat.upsert(
        CatalogueObject("folio", "Folio", "multispectral", image="folio/IR940", bands=bands, **size)
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_landing_lists_objects_with_thumbnails_and_viewer_links(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    manifest = quote("http://testserver/iiif/manifests/plain", safe="")
    assert f'href="http://testserver/viewer/mirador?manifest={manifest}"' in page
    assert f'href="http://testserver/viewer/uv?manifest={manifest}"' in page
    assert 'href="http://testserver/iiif/manifests/plain"' in page
    assert 'src="http://testserver/iiif/3/plain/full/' in page  # the manifest's thumbnail
    assert "A &lt;plain&gt; image" in page and "<plain>" not in page
    folio = quote("http://testserver/iiif/manifests/folio", safe="")
    assert f"/viewer/mirador?manifest={folio}&amp;panel=layers" in page  # opens the layers panel
    assert "(multispectral, 2 bands)" in page
    # Every image under the root is listed with its info.json, as before.
    assert 'href="http://testserver/iiif/3/loose/info.json"' in page
    thumb = await client.get("/iiif/3/plain/full/120,/0/default.jpg")
    assert thumb.status_code == 200


@needs_build
async def test_mirador_page_loads_the_hashed_bundle(client: httpx.AsyncClient) -> None:
    manifest = "http://testserver/iiif/manifests/folio"
    r = await client.get("/viewer/mirador", params={"manifest": manifest, "panel": "layers"})
    assert r.status_code == 200
    assert f'data-manifest="{manifest}"' in r.text and 'data-panel="layers"' in r.text
    assert 'data-base="http://testserver"' in r.text and "id=sign-in" in r.text
    scripts = [p.split('"')[0] for p in r.text.split('<script type=module src="')[1:]]
    assert scripts and scripts[0].startswith("/static/build/assets/mirador-")
    js = await client.get(scripts[0])
    assert js.status_code == 200
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = await client.get(scripts[0], headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304
    css = r.text.split('<link rel=stylesheet href="')[1].split('"')[0]
    assert (await client.get(css)).headers["content-type"] == "text/css; charset=utf-8"


@needs_build
async def test_uv_page_and_its_assets(client: httpx.AsyncClient) -> None:
    manifest = "http://testserver/iiif/manifests/plain"
    r = await client.get("/viewer/uv", params={"manifest": manifest})
    assert r.status_code == 200
    assert 'data-manifest="http://testserver/iiif/manifests/plain"' in r.text
    assert "id=sign-in" not in r.text and "token" not in r.text  # this page never writes
    module = r.text.split('<script type=module src="')[1].split('"')[0]
    assert module.startswith("/static/build/assets/uv-")
    js = await client.get(module)
    assert js.status_code == 200 and "shareManifestsEnabled" in js.text
    uv = await client.get("/static/build/uv/umd/UV.js")
    assert uv.status_code == 200 and uv.headers["content-type"].startswith("text/javascript")
    assert uv.headers["cache-control"] == "public, max-age=300"  # not hashed: short cache
    assert (
        (await client.get("/static/build/uv/uv.css")).headers["content-type"].startswith("text/css")
    )


@pytest.mark.parametrize("path", ["/viewer/mirador", "/viewer/uv"])
@pytest.mark.parametrize(
    "manifest", ["javascript:alert(1)", "/iiif/manifests/plain", "ftp://x/m", "http://"]
)
async def test_viewer_pages_refuse_a_manifest_that_is_not_an_http_url(
    client: httpx.AsyncClient, path: str, manifest: str
) -> None:
    r = await client.get(path, params={"manifest": manifest})
    assert r.status_code == 400 and "manifest" in r.text


async def test_mirador_refuses_an_unknown_panel(client: httpx.AsyncClient) -> None:
    r = await client.get("/viewer/mirador", params={"panel": "<script>"})
    assert r.status_code == 400


@needs_build
async def test_viewer_page_escapes_the_manifest_url(client: httpx.AsyncClient) -> None:
    evil = 'http://x/m?a="><script>alert(1)</script>'
    for path in ("/viewer/mirador", "/viewer/uv"):
        r = await client.get(path, params={"manifest": evil})
        assert r.status_code == 200
        assert "<script>alert(1)" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../settings.py",
        "/static/%2e%2e/settings.py",
        "/static/build/.vite/manifest.json",
        "/static/build/nothing-here.js",
    ],
)
async def test_static_serves_nothing_outside_the_assets(
    client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 404


def test_missing_build_is_a_503_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="scripts/setup"):
        viewers.Assets(tmp_path / "manifest.json").entry(viewers.MIRADOR_ENTRY)


@pytest.mark.parametrize(
    ("path", "hashed"),
    [
        ("build/assets/mirador-DjE6UCUB.js", True),
        ("build/uv/umd/1000.bef5c329c0fd159c772a.js", True),
        ("build/uv/umd/UV.js", False),
        ("build/uv/uv.css", False),
        ("build/uv/umd/pdfobject.d6d5dba06f71bde89133.js", True),
    ],
)
def test_long_caching_only_for_hashed_names(path: str, hashed: bool) -> None:
    assert viewers.is_hashed(path) is hashed


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


@needs_build
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/viewer/mirador",
        "/viewer/uv",
        "/viewer/uv?manifest=http%3A%2F%2Fx%2Fm",
        "/viewer/compare?manifest=http%3A%2F%2Fx%2Fa&manifest=http%3A%2F%2Fx%2Fb",
    ],
)
async def test_every_html_page_has_the_strict_policy_and_no_inline_script(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert csp["script-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert not INLINE_SCRIPT.search(r.text), "an inline <script>"
    assert not INLINE_HANDLER.search(r.text), "an inline event handler"


async def test_static_files_are_not_sniffed(client: httpx.AsyncClient) -> None:
    if not BUILT:
        pytest.skip("viewers not built")
    r = await client.get("/static/build/uv/uv.css")
    assert r.headers["x-content-type-options"] == "nosniff"
