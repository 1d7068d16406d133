"""W3C Web Annotation Protocol, in the order of the spec's MUSTs and SHOULDs, on both backends;
plus tokens, validation, the viewer page and the lost-update guard."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from iiifsrv.annotations import annotation_page_ref, manifest_container_url
from tests.annotations.annotation_samples import (
    ANNO_TYPE,
    CANVAS,
    CANVAS2,
    MANIFEST,
    anno,
    container,
    path,
)
from tests.annotations.conftest import ALICE, BOB, EDITOR

PREFER = 'return=representation;include="{}"'


async def post(client: httpx.AsyncClient, body: object, **headers: str) -> httpx.Response:
    return await client.post(container(), json=body, headers={**ALICE, **headers})


# ---- 4. Annotation retrieval -------------------------------------------------------------


async def test_get_annotation_has_profile_type_link_etag_allow(client: httpx.AsyncClient) -> None:
    created = await post(client, anno())
    r = await client.get(path(created.headers["location"]))
    assert r.status_code == 200
    assert r.headers["content-type"] == ANNO_TYPE
    assert '<http://www.w3.org/ns/ldp#Resource>; rel="type"' in r.headers["link"]
    assert r.headers["etag"].startswith('"') and r.headers["etag"] == created.headers["etag"]
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} <= set(r.headers["allow"].split(", "))
    assert r.headers["vary"] == "Accept"
    body = r.json()
    assert body["@context"] == "http://www.w3.org/ns/anno.jsonld"
    assert body["id"] == created.headers["location"] and body["type"] == "Annotation"
    assert body["creator"]["nickname"] == "alice"
    head = await client.head(path(body["id"]))
    assert (
        head.status_code == 200
        and head.content == b""
        and head.headers["etag"] == r.headers["etag"]
    )
    again = await client.get(path(body["id"]), headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


# ---- 5. Annotation containers ------------------------------------------------------------


async def test_container_url_ends_in_slash_and_describes_itself(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await post(client, anno(f"note {i}"))
    r = await client.get(container())
    assert container().endswith("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == ANNO_TYPE
    link = r.headers["link"]
    assert '<http://www.w3.org/ns/ldp#BasicContainer>; rel="type"' in link
    assert 'rel="http://www.w3.org/ns/ldp#constrainedBy"' in link
    assert r.headers["etag"]
    assert set(r.headers["allow"].split(", ")) >= {"GET", "HEAD", "OPTIONS", "POST"}
    assert r.headers["vary"] == "Accept, Prefer"
    assert r.headers["accept-post"] == ANNO_TYPE
    body = r.json()
    assert r.headers["content-location"] == body["id"]
    assert body["type"] == ["BasicContainer", "AnnotationCollection"]
    assert body["total"] == 3
    assert body["first"]["type"] == "AnnotationPage"
    assert [a["body"]["value"] for a in body["first"]["items"]] == [
        f"<p>note {i}</p>" for i in range(3)
    ]
    assert body["last"] == body["first"]["id"]
    head = await client.head(container())
    assert (
        head.status_code == 200
        and head.content == b""
        and head.headers["etag"] == r.headers["etag"]
    )


async def test_prefer_minimal_iris_and_descriptions(client: httpx.AsyncClient) -> None:
    ids = [(await post(client, anno(f"n{i}"))).headers["location"] for i in range(2)]
    minimal = await client.get(
        container(),
        headers={"Prefer": PREFER.format("http://www.w3.org/ns/ldp#PreferMinimalContainer")},
    )
    body = minimal.json()
    assert isinstance(body["first"], str) and isinstance(body["last"], str)
    assert minimal.headers["preference-applied"] == "return=representation"
    iris = await client.get(
        container(),
        headers={"Prefer": PREFER.format("http://www.w3.org/ns/oa#PreferContainedIRIs")},
    )
    body = iris.json()
    assert body["first"]["items"] == ids
    assert iris.headers["content-location"] == body["id"] and body["id"].endswith("?iris=1")
    descriptions = await client.get(
        container(),
        headers={"Prefer": PREFER.format("http://www.w3.org/ns/oa#PreferContainedDescriptions")},
    )
    assert [a["id"] for a in descriptions.json()["first"]["items"]] == ids
    etags = {minimal.headers["etag"], iris.headers["etag"], descriptions.headers["etag"]}
    assert len(etags) == 3


async def test_pages_have_part_of_next_prev_start_index(backend_settings) -> None:  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette

    from iiifsrv.annotations.store import open_store
    from iiifsrv.web.annotations import routes

    store = open_store(backend_settings)
    app = Starlette(routes=routes(backend_settings, store=store, page_size=2))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        ids = [(await post(c, anno(f"n{i}"))).headers["location"] for i in range(5)]
        top = (await c.get(container())).json()
        assert top["total"] == 5 and top["last"].endswith("?page=2")
        seen, url, index = [], top["first"]["id"], 0
        while url:
            page = (await c.get(path(url))).json()
            assert page["type"] == "AnnotationPage" and page["startIndex"] == index
            assert page["partOf"]["id"] == top["id"] and page["partOf"]["total"] == 5
            assert ("prev" in page) == (index > 0)
            seen += [a["id"] for a in page["items"]]
            index += len(page["items"])
            url = page.get("next")
        assert seen == ids
        iris = (await c.get(container() + "?iris=1&page=1")).json()
        assert iris["items"] == ids[2:4]
    await store.close()


# ---- 5.2 Create --------------------------------------------------------------------------


async def test_post_creates_with_location_etag_slug_and_via(client: httpx.AsyncClient) -> None:
    r = await post(client, anno(id="http://elsewhere.example/anno/1"), Slug="uv word")
    assert r.status_code == 201
    assert r.headers["location"].endswith("/uv-word")
    assert r.headers["etag"].startswith('"')  # strong
    body = r.json()
    assert body["id"] == r.headers["location"]
    assert body["via"] == "http://elsewhere.example/anno/1"
    assert r.headers["content-type"] == ANNO_TYPE
    again = await post(client, anno(), Slug="uv word")
    assert again.status_code == 201 and again.headers["location"] != r.headers["location"]


# ---- 5.3 Update --------------------------------------------------------------------------


async def test_put_with_matching_or_absent_if_match_and_412(client: httpx.AsyncClient) -> None:
    created = await post(client, anno())
    url = path(created.headers["location"])
    doc = created.json()
    doc["body"]["value"] = "retouched area"
    r = await client.put(url, json=doc, headers={**ALICE, "If-Match": created.headers["etag"]})
    assert r.status_code == 200 and r.json()["body"]["value"] == "retouched area"
    assert r.headers["etag"] != created.headers["etag"]
    stale = await client.put(url, json=doc, headers={**ALICE, "If-Match": created.headers["etag"]})
    assert stale.status_code == 412
    doc["body"]["value"] = "no precondition"
    assert (await client.put(url, json=doc, headers=ALICE)).status_code == 200
    assert (await client.get(url)).json()["body"]["value"] == "no precondition"


async def test_lost_update_one_wins_other_412(client: httpx.AsyncClient) -> None:
    created = await post(client, anno())
    url, tag = path(created.headers["location"]), created.headers["etag"]
    edits = []
    for who in ("first", "second"):
        doc = created.json()
        doc["body"]["value"] = who
        edits.append(client.put(url, json=doc, headers={**EDITOR, "If-Match": tag}))
    results = await asyncio.gather(*edits)
    assert sorted(r.status_code for r in results) == [200, 412]
    winner = next(r for r in results if r.status_code == 200).json()["body"]["value"]
    assert (await client.get(url)).json()["body"]["value"] == winner


# ---- 5.4 Delete --------------------------------------------------------------------------


async def test_delete_then_gone_everywhere(client: httpx.AsyncClient) -> None:
    keep = await post(client, anno("keep"))
    gone = await post(client, anno("gone"))
    url = path(gone.headers["location"])
    r = await client.delete(url, headers=ALICE)
    assert r.status_code == 204
    assert (await client.get(url)).status_code in (404, 410)
    items = (await client.get(container())).json()["first"]["items"]
    assert [a["id"] for a in items] == [keep.headers["location"]]
    page = (await client.get(container() + "page")).json()
    assert [a["id"] for a in page["items"]] == [keep.headers["location"]]
    sas = (await client.get("/sas/search", params={"uri": CANVAS})).json()
    assert [a["@id"] for a in sas] == [keep.headers["location"]]
    assert (await client.delete(url, headers=ALICE)).status_code in (404, 410)


# ---- CORS preflight ----------------------------------------------------------------------


async def test_options_preflight(client: httpx.AsyncClient) -> None:
    for url in (container(), container() + "somekey", "/annotot/pages", "/sas/create"):
        r = await client.options(
            url, headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "PUT"}
        )
        assert r.status_code == 204
        allow_headers = r.headers["access-control-allow-headers"]
        for name in ("Content-Type", "Authorization", "If-Match", "Slug", "Prefer"):
            assert name in allow_headers
        assert "PUT" in r.headers["access-control-allow-methods"]
        expose = r.headers["access-control-expose-headers"]
        for name in ("ETag", "Location", "Content-Location", "Link", "Allow"):
            assert name in expose


# ---- tokens and validation ---------------------------------------------------------------


async def test_writes_need_token_reads_are_public(client: httpx.AsyncClient) -> None:
    r = await client.post(container(), json=anno())
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    bad = await client.post(container(), json=anno(), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    created = await post(client, anno())
    url = path(created.headers["location"])
    assert (await client.get(url)).status_code == 200
    doc = created.json()
    assert (await client.put(url, json=doc, headers=BOB)).status_code == 403
    assert (await client.delete(url, headers=BOB)).status_code == 403
    assert (await client.put(url, json=doc, headers=EDITOR)).status_code == 200
    assert (await client.delete(url, headers=EDITOR)).status_code == 204


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "Note"}, "Annotation"),
        ({"target": None}, "target"),
        ({"target": "urn:x:canvas"}, "http"),
        (
            {
                "target": {
                    "source": CANVAS,
                    "selector": {"type": "FragmentSelector", "value": "xywh=a"},
                }
            },
            "FragmentSelector",
        ),
        (
            {
                "target": {
                    "source": CANVAS,
                    "selector": {"type": "SvgSelector", "value": "<svg><path"},
                }
            },
            "SVG",
        ),
        ({"target": {"source": CANVAS2}}, "container"),
    ],
)
async def test_invalid_annotations_get_400_with_a_message(
    client: httpx.AsyncClient, change: dict[str, object], reason: str
) -> None:
    doc = {**anno(), **change}
    if change.get("target") is None and "target" in change:
        doc.pop("target")
    r = await post(client, doc)
    assert r.status_code == 400
    assert reason.lower() in r.text.lower() or (reason == "container" and "not" in r.text)
    assert not (await client.post(container(), content=b"{nope", headers=ALICE)).is_success


async def test_too_large_is_413(client: httpx.AsyncClient) -> None:
    huge = anno("x" * (10 * 1024 * 1024 + 10))
    r = await post(client, huge)
    assert r.status_code == 413


async def test_unknown_canvas_refused_by_hook(backend_settings) -> None:  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette

    from iiifsrv.annotations.store import open_store
    from iiifsrv.web.annotations import routes

    async def known(uri: str) -> bool:
        return uri == CANVAS

    store = open_store(backend_settings)
    app = Starlette(routes=routes(backend_settings, store=store, canvas_known=known))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as c:
        assert (await post(c, anno())).status_code == 201
        r = await c.post(container(CANVAS2), json=anno(canvas=CANVAS2), headers=ALICE)
        assert r.status_code == 400 and "not known" in r.text
    await store.close()


# ---- what viewers read -------------------------------------------------------------------


async def test_viewer_page_embeds_everything_and_changes_etag(client: httpx.AsyncClient) -> None:
    ref = annotation_page_ref("http://test", CANVAS)
    assert set(ref) == {"id", "type"} and ref["type"] == "AnnotationPage"
    empty = await client.get(path(ref["id"]))
    assert empty.status_code == 200 and empty.json()["items"] == []
    assert "presentation/3" in empty.headers["content-type"]
    created = await post(client, anno("fresh"))
    page = await client.get(path(ref["id"]), headers={"If-None-Match": empty.headers["etag"]})
    assert page.status_code == 200 and page.headers["etag"] != empty.headers["etag"]
    body = page.json()
    assert body["id"] == ref["id"] and body["type"] == "AnnotationPage"
    assert [a["id"] for a in body["items"]] == [created.headers["location"]]
    assert "@context" not in body["items"][0]
    cached = await client.get(path(ref["id"]), headers={"If-None-Match": page.headers["etag"]})
    assert cached.status_code == 304


async def test_manifest_container_lists_annotations_of_its_canvases(
    client: httpx.AsyncClient,
) -> None:
    await post(client, anno("one"))
    await client.post(container(CANVAS2), json=anno("two", canvas=CANVAS2), headers=ALICE)
    r = await client.get(path(manifest_container_url("http://test", MANIFEST)))
    assert r.json()["total"] == 2
    assert r.headers["content-location"] == r.json()["id"]
