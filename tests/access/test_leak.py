"""The leak test: for a restricted object, an authorised client first warms every cache by
walking every endpoint it is linked to (images at many sizes, regions, qualities and formats,
info.json of both API versions, bands, composites, computed images, spectra, media, objects,
the landing page, manifests, collection, activity, annotations and Content Search); then an
anonymous client asks for the same URLs, conditionally too, and gets nothing protected."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from tests.access.conftest import WRITER, sign_in
from tests.annotations.annotation_samples import anno

pytestmark = pytest.mark.anyio
Clients = Callable[..., httpx.AsyncClient]
SECRET_WORD = "zanzibarquill"
DENIED = (401, 403)


def image_urls(service: str, version: int) -> list[str]:
    fmts = ["jpg", "png", "webp", "tif", "gif"]
    out = [f"{service}/info.json", service]
    for size in ("max", "64,", "!32,32", "pct:10") if version == 3 else ("full", "64,", "pct:10"):
        out.append(f"{service}/full/{size}/0/default.jpg")
    out += [f"{service}/full/48,/0/default.{f}" for f in fmts]
    out += [
        f"{service}/0,0,256,256/256,/0/default.jpg",  # an aligned tile (raw passthrough)
        f"{service}/square/32,/90/gray.png",
        f"{service}/full/48,/!0/bitonal.png",
    ]
    return out


async def test_anonymous_client_gets_nothing_protected(clients: Clients) -> None:
    staff, anon = clients(), clients()
    await sign_in(staff)
    writer = {"Authorization": f"Bearer {WRITER}"}

    # -- the authorised client follows the links and warms every cache --------------------
    collection = (await staff.get("/iiif/collection")).json()
    manifest_id = next(m["id"] for m in collection["items"] if m["id"].endswith("/palimpsest"))
    manifest = (await staff.get(manifest_id)).json()
    canvas = manifest["items"][0]
    page_url = canvas["annotations"][0]["id"]
    container = page_url.removesuffix("page")
    made = await staff.post(container, json=anno(SECRET_WORD, canvas["id"]), headers=writer)
    assert made.status_code == 201, made.text
    services = set()
    for body in canvas["items"][0]["items"][0]["body"]["items"]:
        for s in body["service"]:
            if "ImageService" not in (s.get("type") or s.get("@type") or ""):
                continue  # the Auth 2.0 probe, which anyone may ask
            services.add((s.get("id") or s["@id"], 3 if "id" in s else 2))
    obj = (await staff.get("/objects/palimpsest")).json()
    for band in obj["bands"]:
        services.add((band["info"].removesuffix("/info.json"), 3))
    base3 = "http://test/iiif/3/"
    for computed in ("palimpsest/pca", "palimpsest/ratio:IR940,R650", "palimpsest/stretch:UV365"):
        services.add((base3 + quote(computed, safe=""), 3))
    urls: list[str] = []
    for service, version in sorted(services):
        urls += image_urls(service, version)
    search = next(s["id"] for s in manifest["service"] if s.get("type") == "SearchService2")
    search1 = next(s["@id"] for s in manifest["service"] if s.get("@type") == "SearchService1")
    urls += [
        obj["spectra"] + "?x=10&y=10",
        obj["spectra"] + "?x=10&y=10&format=svg",
        obj["spectra"] + "?x=10&y=10&format=png",
        page_url,
        container,
        made.json()["id"],
        f"{search}?q={SECRET_WORD}",
        f"{search1}?q={SECRET_WORD}",
        f"{search}/autocomplete?q={SECRET_WORD[:4]}",
        f"/annotot/pages?uri={quote(canvas['id'], safe='')}",
        f"/sas/search?uri={quote(canvas['id'], safe='')}",
        "/media/tone.wav",
    ]
    etags: dict[str, str] = {}
    for url in urls:
        r = await staff.get(url)
        assert r.status_code in (200, 303), (url, r.status_code, r.text[:200])
        if "etag" in r.headers:
            etags[url] = r.headers["etag"]
        if r.status_code == 200 and "/annotations/" in url and "autocomplete" not in url:
            assert SECRET_WORD in r.text or url.endswith("/page") or "search" in url, url
    assert "palimpsest" in (await staff.get("/objects")).text
    assert "palimpsest" in (await staff.get("/")).text
    assert len(urls) > 150

    # -- the anonymous client: same URLs, plain, HEAD and conditional ----------------------
    for url in urls:
        r = await anon.get(url)
        assert r.status_code in DENIED, (url, r.status_code)
        assert SECRET_WORD not in r.text
        assert r.headers.get("cache-control") == "no-store" or r.status_code == 401, url
        head = await anon.head(url)
        assert head.status_code in DENIED, url
        if url in etags:
            cond = await anon.get(url, headers={"If-None-Match": etags[url]})
            assert cond.status_code in DENIED, url
    for url in urls:
        if url.endswith("/info.json"):  # an info.json 401 carries the public description only
            r = await anon.get(url)
            assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    # listings: the object is not there for the anonymous client
    for url in ("/objects", "/"):
        r = await anon.get(url)
        assert r.status_code == 200 and "palimpsest" not in r.text, url
    assert (await anon.get("/objects/palimpsest")).status_code == 404
    # manifests and change discovery: the public description, never the annotations' text
    for url in (manifest_id, "/iiif/collection", "/iiif/activity", "/iiif/activity/page/0"):
        r = await anon.get(url)
        assert r.status_code == 200 and SECRET_WORD not in r.text, url
    # and the authorised client still sees everything (the anonymous walk cached nothing bad)
    assert (await staff.get(urls[0])).status_code == 200
