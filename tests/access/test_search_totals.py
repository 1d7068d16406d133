"""Totals and paging count only what the reader may see: annotations on a restricted canvas that
name a public manifest as their ``partOf`` are left out of Content Search 2.0 and 1.0 totals,
pages, ``next``/``last`` links, of the manifest's W3C annotation container and its viewer page,
and of semantic search totals, for an anonymous reader, while a reader of the restricted object
counts them all. Pages are two hits long; every URL is taken from what the server publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from iiifsrv.semantic import encoder
from iiifsrv.settings import Settings, replace
from tests.access.conftest import clients_of, sign_in
from tests.access.test_search_visibility import manifest, service, write

pytestmark = pytest.mark.anyio
WORD = "quillonwort"
PUBLIC_HITS, HIDDEN_HITS = 3, 4
SIZE = 2


@pytest.fixture
async def paged(protected: Settings) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Clients of one application whose annotation pages (and search pages) hold two items."""
    async for make in clients_of(replace(protected, annotation_page_size=SIZE)):
        yield make


async def seeded(paged: Callable[[], httpx.AsyncClient]) -> tuple[Any, Any, dict[str, Any]]:
    """(anonymous client, staff client, the public manifest) with PUBLIC_HITS annotations on
    the public canvas and HIDDEN_HITS on the restricted one, all naming the public manifest."""
    anon, staff = paged(), paged()
    await sign_in(staff)
    public = await manifest(anon, "sixteen-bit")
    restricted = await manifest(staff, "palimpsest")
    for i in range(PUBLIC_HITS):
        await write(staff, public["items"][0], public["id"], f"{WORD} public {i}")
    for i in range(HIDDEN_HITS):
        await write(staff, restricted["items"][0], public["id"], f"{WORD} secret {i}")
    return anon, staff, public


async def walk2(client: httpx.AsyncClient, url: str) -> tuple[int, list[str], list[int]]:
    """(the total the first page states, every item's text following ``next``, page sizes)."""
    first = (await client.get(url)).json()
    total = first["partOf"]["total"]
    texts: list[str] = []
    sizes: list[int] = []
    page: dict[str, Any] | None = first
    while page is not None:
        assert page["partOf"]["total"] == total
        texts += [i["body"]["value"] for i in page["items"]]
        sizes.append(len(page["items"]))
        nxt = page.get("next")
        page = (await client.get(nxt["id"])).json() if nxt else None
    last = first["partOf"]["last"]["id"]
    assert len((await client.get(last)).json()["items"]) == sizes[-1]
    return total, texts, sizes


async def test_content_search_totals_count_visible_hits_only(
    paged: Callable[[], httpx.AsyncClient],
) -> None:
    anon, staff, public = await seeded(paged)
    search2 = f"{service(public, 'SearchService2')}?q={WORD}"

    total, texts, sizes = await walk2(anon, search2)
    assert total == PUBLIC_HITS
    assert sorted(texts) == [f"{WORD} public {i}" for i in range(PUBLIC_HITS)]
    assert sizes == [2, 1]  # full pages of visible hits: nothing left out of a page
    beyond = (await anon.get(search2, params={"page": "2"})).status_code
    assert beyond == 404  # no page that would exist only for hidden hits

    total, texts, sizes = await walk2(staff, search2)
    assert total == PUBLIC_HITS + HIDDEN_HITS and len(texts) == total and sizes == [2, 2, 2, 1]

    search1 = f"{service(public, 'SearchService1')}?q={WORD}"
    first = (await anon.get(search1)).json()
    assert first["within"]["total"] == PUBLIC_HITS
    texts1 = [r["resource"]["chars"] for r in first["resources"]]
    second = (await anon.get(first["next"])).json()
    texts1 += [r["resource"]["chars"] for r in second["resources"]]
    assert "next" not in second
    assert sorted(texts1) == [f"{WORD} public {i}" for i in range(PUBLIC_HITS)]
    assert (await staff.get(search1)).json()["within"]["total"] == PUBLIC_HITS + HIDDEN_HITS


async def test_manifest_container_counts_visible_annotations_only(
    paged: Callable[[], httpx.AsyncClient],
) -> None:
    anon, staff, public = await seeded(paged)
    page = (await anon.get(public["items"][0]["annotations"][0]["id"])).json()
    canvas_container = page["partOf"][0]["id"]
    # The W3C container of the manifest: the canvas container's sibling (manifest/<b64 id>/).
    manifest_container = service(public, "SearchService2").replace("/search/2/", "/manifest/") + "/"
    for container in (manifest_container, canvas_container):
        body = (await anon.get(container)).json()
        texts: list[str] = []
        nxt: str | None = body["first"]["id"] if isinstance(body["first"], dict) else None
        assert body["total"] == PUBLIC_HITS, container
        while nxt:
            got = (await anon.get(nxt)).json()
            assert got["partOf"]["total"] == PUBLIC_HITS
            texts += [i["body"]["value"] for i in got["items"]]
            nxt = got.get("next")
        assert sorted(texts) == [f"{WORD} public {i}" for i in range(PUBLIC_HITS)], container
        assert (await anon.get(body["last"])).status_code == 200
        viewer = (await anon.get(container + "page")).json()
        assert viewer["partOf"][0]["total"] == PUBLIC_HITS
        assert all("secret" not in i["body"]["value"] for i in viewer["items"]), container
    staff_total = (await staff.get(manifest_container)).json()["total"]
    assert staff_total == PUBLIC_HITS + HIDDEN_HITS


@pytest.mark.skipif(not encoder.available(), reason="the [semantic] extra is not installed")
async def test_semantic_search_totals_count_visible_hits_only(
    paged: Callable[[], httpx.AsyncClient],
) -> None:
    anon, staff, public = await seeded(paged)
    for url in ("/annotations/semantic", service(public, "SearchService2", semantic=True)):
        for _ in range(400):  # embeddings are computed in the background after each write
            got = (await staff.get(url, params={"q": WORD})).json()
            if got["partOf"]["total"] == PUBLIC_HITS + HIDDEN_HITS:
                break
            await anyio.sleep(0.05)
        assert got["partOf"]["total"] == PUBLIC_HITS + HIDDEN_HITS, got
        total, texts, sizes = await walk2(anon, f"{url}?q={WORD}")
        assert total == PUBLIC_HITS, url
        assert sorted(texts) == [f"{WORD} public {i}" for i in range(PUBLIC_HITS)], url
        assert sizes == [2, 1], url


async def test_protected_annotations_are_private_to_their_reader(
    paged: Callable[[], httpx.AsyncClient],
) -> None:
    """What shows annotations of a protected canvas (its pages, or search hits on it) is
    ``private`` with ``Vary: Cookie``, as protected images are; what shows none stays shareable."""
    anon, staff, public = await seeded(paged)
    restricted = await manifest(staff, "palimpsest")
    page = restricted["items"][0]["annotations"][0]["id"]
    search2 = f"{service(public, 'SearchService2')}?q={WORD}"
    for url in (page, page.removesuffix("page"), search2):
        r = await staff.get(url)
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "private, no-cache", url
        assert "Cookie" in [v.strip() for v in r.headers["vary"].split(",")], url
    r = await anon.get(search2)  # the anonymous reader's answer holds nothing protected
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    assert "secret" not in r.text
