"""IIIF Content Search 2.0 / 1.0 and autocomplete over annotation bodies, on both backends."""

from __future__ import annotations

import httpx

from iiifsrv.annotations import search_services
from iiifsrv.annotations.store import Scope
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.annotations.annotation_samples import CANVAS, CANVAS2, MANIFEST, anno, container, path
from tests.annotations.conftest import ALICE, BOB


async def fill(client: httpx.AsyncClient) -> None:
    await client.post(container(), json=anno("Ultraviolet reveals erased ink"), headers=ALICE)
    await client.post(
        container(), json=anno("Retouched area near the margin", region="5,5,40,40"), headers=BOB
    )
    other = anno("ultraviolet fluorescence of the varnish", canvas=CANVAS2, region="0,0,9,9")
    await client.post(container(CANVAS2), json=other, headers=ALICE)
    elsewhere = anno("ultraviolet elsewhere", canvas="http://other.example/c1")
    elsewhere["target"]["source"] = "http://other.example/c1"
    await client.post(container("http://other.example/c1"), json=elsewhere, headers=ALICE)


def services() -> tuple[str, str]:
    s2, s1 = search_services("http://test", MANIFEST)
    assert s2["type"] == "SearchService2" and s1["profile"] == "http://iiif.io/api/search/1/search"
    return path(str(s2["id"])), path(str(s1["@id"]))


async def test_search2_hits_target_canvas_xywh(client: httpx.AsyncClient) -> None:
    await fill(client)
    s2, _ = services()
    r = await client.get(s2, params={"q": "ultraviolet"})
    assert r.status_code == 200
    body = r.json()
    assert body["@context"] == "http://iiif.io/api/search/2/context.json"
    assert body["type"] == "AnnotationPage"
    assert [a["target"] for a in body["items"]] == [
        f"{CANVAS}#xywh=10,20,100,50",
        f"{CANVAS2}#xywh=0,0,9,9",
    ]
    hit = body["annotations"][0]["items"][0]
    assert hit["motivation"] == "highlighting"
    assert hit["target"]["selector"][0]["exact"].lower() == "ultraviolet"
    assert "ignored" not in body
    both = (await client.get(s2, params={"q": "ultraviolet ink"})).json()
    assert len(both["items"]) == 1


async def test_search2_lists_ignored_parameters_and_filters_user(client: httpx.AsyncClient) -> None:
    await fill(client)
    s2, _ = services()
    body = (await client.get(s2, params={"q": "area", "date": "2024", "user": "bob"})).json()
    assert body["ignored"] == ["date"]
    assert len(body["items"]) == 1
    assert (await client.get(s2, params={"q": "area", "user": "alice"})).json()["items"] == []


async def test_deleted_and_updated_annotations_leave_the_index(client: httpx.AsyncClient) -> None:
    r = await client.post(container(), json=anno("cinnabar pigment"), headers=ALICE)
    s2, _ = services()
    assert len((await client.get(s2, params={"q": "cinnabar"})).json()["items"]) == 1
    doc = r.json()
    doc["body"]["value"] = "lead white"
    await client.put(path(r.headers["location"]), json=doc, headers=ALICE)
    assert (await client.get(s2, params={"q": "cinnabar"})).json()["items"] == []
    assert len((await client.get(s2, params={"q": "lead"})).json()["items"]) == 1
    await client.delete(path(r.headers["location"]), headers=ALICE)
    assert (await client.get(s2, params={"q": "lead"})).json()["items"] == []


async def test_autocomplete2_and_1(client: httpx.AsyncClient) -> None:
    await fill(client)
    s2, s1 = services()
    terms = (await client.get(s2 + "/autocomplete", params={"q": "ult"})).json()
    assert terms["type"] == "TermPage"
    assert [(t["value"], t["total"]) for t in terms["items"]] == [("ultraviolet", 2)]
    old = (await client.get(s1 + "/autocomplete", params={"q": "re"})).json()
    assert [t["match"] for t in old["terms"]] == ["retouched", "reveals"]
    assert old["terms"][0]["url"].endswith("?q=retouched")


async def test_search1_annotation_list(client: httpx.AsyncClient) -> None:
    await fill(client)
    _, s1 = services()
    body = (await client.get(s1, params={"q": "margin", "motivation": "commenting"})).json()
    assert body["@type"] == "sc:AnnotationList"
    assert body["within"]["total"] == 1
    res = body["resources"][0]
    assert res["on"] == f"{CANVAS}#xywh=5,5,40,40"
    assert "margin" in res["resource"]["chars"]
    assert body["hits"][0]["annotations"] == [res["@id"]]


async def test_store_leaves_hidden_canvases_out_of_counts_pages_and_searches(
    backend_settings: Settings,
) -> None:
    """A scope's ``hidden`` canvases (those a reader may not see) are out of every count,
    page and search of the store, and ``search_canvases`` names the canvases hits are on."""
    app = create_app(backend_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await fill(client)
    store = app.state.annotation_store
    try:
        everywhere = Scope("all")
        hits = await store.search(everywhere, ["ultraviolet"])
        on = {r.canvas for r in hits}
        assert len(hits) == 3 and len(on) == 3
        assert await store.search_canvases(everywhere, ["ultraviolet"]) == on
        assert await store.search_canvases(everywhere, []) == on  # no words: every annotation
        first = hits[0].canvas  # the first canvas holds two annotations, one "ultraviolet"
        narrowed = Scope("all", hidden=(first,))
        assert first not in await store.search_canvases(narrowed, [])
        assert await store.search_total(narrowed, ["ultraviolet"]) == 2
        assert [r.canvas for r in await store.search(narrowed, ["ultraviolet"])] == [
            h.canvas for h in hits[1:]
        ]
        assert (await store.state(narrowed))[0] == 2
        assert all(r.canvas != first for r in await store.select(narrowed))
        manifest = Scope("manifest", hits[0].manifest, (first,))
        shown = await store.search_total(manifest, ["ultraviolet"])
        assert shown >= 1
        manifest = Scope("manifest", hits[0].manifest, (first,), hidden=(first,))
        assert await store.search_total(manifest, ["ultraviolet"]) == shown - 1
    finally:
        await store.close()
