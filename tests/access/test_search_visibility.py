"""Search never returns hits from canvases the reader may not see: Content Search 2.0 and 1.0
(and autocomplete) of a public manifest, even for an annotation on a restricted canvas that
names the public manifest as its ``partOf``; and semantic search with and without a manifest.
Services and canvases are taken from the manifests the server publishes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from iiifsrv.semantic import encoder
from tests.access.conftest import WRITER, sign_in

pytestmark = pytest.mark.anyio
Clients = Callable[..., httpx.AsyncClient]
WORD = "zanzibarite"


async def manifest(client: httpx.AsyncClient, object_id: str) -> dict[str, Any]:
    collection = (await client.get("/iiif/collection")).json()
    found = [i["id"] for i in collection["items"] if i["id"].endswith("/" + object_id)]
    assert len(found) == 1
    return dict((await client.get(found[0])).json())


def service(doc: dict[str, Any], kind: str, semantic: bool = False) -> str:
    for s in doc.get("service", []):
        sid = str(s.get("id", s.get("@id")))
        if s.get("type", s.get("@type")) == kind and ("semantic" in sid) == semantic:
            return sid
    raise AssertionError(f"no {kind} in {doc.get('service')}")


async def write(client: httpx.AsyncClient, canvas: dict[str, Any], part_of: str, text: str) -> None:
    """Write on a canvas through its annotation page's container (the page's ``partOf``)."""
    page = (await client.get(canvas["annotations"][0]["id"])).json()
    container = (
        page["partOf"]["id"] if isinstance(page["partOf"], dict) else page["partOf"][0]["id"]
    )
    anno = {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text, "format": "text/plain"},
        "target": {"source": canvas["id"], "partOf": [{"id": part_of, "type": "Manifest"}]},
    }
    r = await client.post(container, json=anno, headers={"Authorization": f"Bearer {WRITER}"})
    assert r.status_code == 201, r.text


async def test_content_search_leaves_out_hits_on_restricted_canvases(clients: Clients) -> None:
    anon = clients()
    public = await manifest(anon, "sixteen-bit")
    restricted = await manifest(anon, "palimpsest")
    staff = clients()  # a reader of the restricted object writes on it (with a write token)
    await sign_in(staff)
    await write(staff, public["items"][0], public["id"], f"{WORD} on the public image")
    await write(staff, restricted["items"][0], public["id"], f"{WORD} on the restricted one")
    search2 = service(public, "SearchService2")
    seen = {
        who: [
            i["body"]["value"] for i in (await c.get(search2, params={"q": WORD})).json()["items"]
        ]
        for who, c in (("anonymous", anon), ("staff", staff))
    }
    assert seen["anonymous"] == [f"{WORD} on the public image"]
    assert sorted(seen["staff"]) == sorted([f"{WORD} on the public image",
                                            f"{WORD} on the restricted one"])  # fmt: skip
    search1 = service(public, "SearchService1")
    hits1 = (await anon.get(search1, params={"q": WORD})).json()["resources"]
    assert [h["resource"]["chars"] for h in hits1] == [f"{WORD} on the public image"]
    auto = (await anon.get(search2 + "/autocomplete", params={"q": WORD[:5]})).json()
    assert [t["value"] for t in auto["items"]] == [WORD]


@pytest.mark.skipif(not encoder.available(), reason="the [semantic] extra is not installed")
async def test_semantic_search_with_and_without_manifest_leaves_them_out(
    clients: Clients,
) -> None:
    anon = clients()
    public = await manifest(anon, "sixteen-bit")
    restricted = await manifest(anon, "palimpsest")
    staff = clients()  # a reader of the restricted object writes on it (with a write token)
    await sign_in(staff)
    await write(staff, public["items"][0], public["id"], "a violet library stamp")
    await write(staff, restricted["items"][0], public["id"], "a purple library stamp")
    everywhere = "/annotations/semantic"
    for url in (everywhere, service(public, "SearchService2", semantic=True)):
        for _ in range(400):  # embeddings are computed in the background after each write
            got = (await staff.get(url, params={"q": "library stamp"})).json()["items"]
            if len(got) == 2:
                break
            await anyio.sleep(0.05)
        assert len(got) == 2, got
        found = (await anon.get(url, params={"q": "library stamp"})).json()["items"]
        assert [i["body"]["value"] for i in found] == ["a violet library stamp"], url
