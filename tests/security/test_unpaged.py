"""Security review #11: unpaged dumps of the whole annotation store.

The attack: the manifest scope matched canvases by URI prefix, so
/annotations/manifest/<b64("http:")>/page returned every annotation on the server (49.5 MB),
and /annotot/pages, /sas/search and …/page had no bound. Now a manifest scope is a manifest
the server knows (its canvas list), search results are paged, and unpaged lists stop at
``annotation_list_cap`` with the full size and the paged container in the headers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from iiifsrv.annotations.urls import encode_uri
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.annotations.conftest import backend_settings, pg_schema  # noqa: F401 (fixtures)
from tests.security.attack_support import ALICE, BOB, Links, manifest

CAP, PAGE = 5, 2


@pytest.fixture
async def http(backend_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    settings = dataclasses.replace(
        backend_settings,
        annotation_canvases="known",
        annotation_list_cap=CAP,
        annotation_page_size=PAGE,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await app.state.annotation_store.close()


def annotot(canvas: str, text: str) -> dict[str, Any]:
    data = {
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text},
        "target": canvas,
    }
    return {"annotation": {"canvas": canvas, "data": json.dumps(data)}}


async def _setup(http: httpx.AsyncClient) -> Links:
    r = await http.put(
        "/iiif/manifests/dump", json=manifest("http://test", "dump", 2), headers=ALICE
    )
    assert r.status_code == 201, r.text
    links = Links((await http.get(r.headers["location"])).json())
    for n in range(7):
        body = annotot(links.canvases[0], f"word number {n}")
        assert (await http.post("/annotot", json=body, headers=BOB)).status_code == 200
    body = annotot(links.canvases[1], "word on the second canvas")
    assert (await http.post("/annotot", json=body, headers=BOB)).status_code == 200
    return links


async def test_a_prefix_is_not_a_manifest(http: httpx.AsyncClient) -> None:
    await _setup(http)
    # The review's request: the scope "http:" matched every canvas on the server.
    for uri in ("http:", "http://test/", "http://test/iiif/manifests/du"):
        segment = encode_uri(uri)
        for path in (
            f"/annotations/manifest/{segment}/page",
            f"/annotations/manifest/{segment}/",
            f"/annotations/search/2/{segment}?q=word",
            f"/annotations/search/1/{segment}?q=word",
        ):
            r = await http.get(path)
            assert r.status_code == 404, (path, r.status_code)
            assert r.text == f"no manifest {uri} on this server\n"


async def test_unpaged_lists_stop_at_the_cap(http: httpx.AsyncClient) -> None:
    links = await _setup(http)
    canvas = links.canvases[0]
    links_to: set[str] = set()
    for path in ("/annotot/pages", "/annotot", "/sas/search"):
        r = await http.get(path, params={"uri": canvas})
        assert r.status_code == 200
        listed = r.json() if path != "/annotot/pages" else r.json()["items"]
        assert len(listed) == CAP
        assert r.headers["x-total-count"] == "7"
        assert "X-Total-Count" in r.headers["access-control-expose-headers"]
        found = re.fullmatch(r'<([^>]+)>; rel="collection"', r.headers["link"])
        assert found is not None
        links_to.add(found[1])
    # The Link leads to the paged W3C container, which holds every annotation of the canvas.
    assert len(links_to) == 1
    container = (await http.get(links_to.pop())).json()
    assert container["total"] == 7
    page: dict[str, Any] = container["first"]
    ids = [a["id"] for a in page["items"]]
    while "next" in page:
        page = (await http.get(page["next"])).json()
        assert len(page["items"]) <= PAGE
        ids += [a["id"] for a in page["items"]]
    assert len(ids) == len(set(ids)) == 7
    # Below the cap: no Link, the whole list.
    r = await http.get("/sas/search", params={"uri": links.canvases[1]})
    assert len(r.json()) == 1 and "link" not in r.headers and r.headers["x-total-count"] == "1"


async def test_search_results_are_paged(http: httpx.AsyncClient) -> None:
    links = await _setup(http)
    r = await http.get(links.search2, params={"q": "word"})
    assert r.status_code == 200
    page = r.json()
    assert page["partOf"]["total"] == 8 and page["startIndex"] == 0
    ids = [a["id"] for a in page["items"]]
    while "next" in page:
        assert len(page["items"]) == PAGE
        page = (await http.get(page["next"]["id"])).json()
        ids += [a["id"] for a in page["items"]]
    assert len(ids) == len(set(ids)) == 8
    assert page["startIndex"] == 6 and page["prev"]["id"].endswith("page=2")
    # Content Search 1.0: next at the top level, total in within.
    r = await http.get(links.search1, params={"q": "word"})
    listing = r.json()
    assert listing["within"]["total"] == 8
    resources = list(listing["resources"])
    while "next" in listing:
        listing = (await http.get(listing["next"])).json()
        resources += listing["resources"]
    assert len({a["@id"] for a in resources}) == 8
    # A page past the end is 404, a bad page number 400.
    assert (await http.get(links.search2, params={"q": "word", "page": "4"})).status_code == 404
    assert (await http.get(links.search2, params={"q": "word", "page": "x"})).status_code == 400
