"""Replays of the exact requests Mirador's annotation editor adapters send (AnnototAdapter and
SimpleAnnotationServerV2Adapter), on both backends; all dialects share one store."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx

from tests.annotations.annotation_samples import CANVAS, MANIFEST, SVG, container, path
from tests.annotations.conftest import ALICE, BOB

# What the adapters send: no Authorization header, so the token rides in the endpoint path.
ANNOTOT = "/annotot/key/alice-token"
SAS = "/sas/key/alice-token"
ADAPTER_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def mae_annotation(text: str = "Palimpsest text", uuid: str = "2f1c9a") -> dict[str, Any]:
    """An annotation as mirador-annotation-editor builds it before calling adapter.create."""
    return {
        "body": {"type": "TextualBody", "value": f"<p>{text}</p>"},
        "id": f"{CANVAS}/annotation/{uuid}",
        "motivation": "commenting",
        "target": {
            "selector": [
                {"type": "FragmentSelector", "value": "xywh=10,20,100,50"},
                {"type": "SvgSelector", "value": SVG},
            ],
            "source": {
                "id": CANVAS,
                "partOf": {"id": MANIFEST, "type": "Manifest"},
                "type": "Canvas",
            },
        },
        "type": "Annotation",
        "creator": "Anonymous User",
        "maeData": {"templateType": "textCommentTemplate"},
    }


def served(annotation: dict[str, Any], user: str = "alice") -> dict[str, Any]:
    """An annotation as Annotot serves it: the client's document, the server's creator (its
    name, and the full provenance beside it)."""
    person = {"id": f"http://test/users/{user}", "type": "Person", "name": user, "nickname": user}
    return {**annotation, "creator": user, "provenance": {"creator": person}}


def annotot_create_body(annotation: dict[str, Any]) -> bytes:
    # JSON.stringify({annotation: {canvas, data: JSON.stringify(annotation), uuid: annotation.id}})
    inner = {"canvas": CANVAS, "data": json.dumps(annotation), "uuid": annotation["id"]}
    return json.dumps({"annotation": inner}).encode()


def annotot_update_body(annotation: dict[str, Any]) -> bytes:
    return json.dumps(
        {"annotation": {"data": json.dumps(annotation), "uuid": annotation["id"]}}
    ).encode()


def encode_component(value: str) -> str:
    """JavaScript's encodeURIComponent."""
    return quote(value, safe="-_.!~*'()")


async def annotot_all(client: httpx.AsyncClient) -> dict[str, Any]:
    # adapter.all(): fetch(`${endpointUrl}/pages?uri=${canvasId}`) — the canvas id unencoded.
    r = await client.get(f"{ANNOTOT}/pages?uri={CANVAS}")
    assert r.status_code == 200
    page: dict[str, Any] = r.json()
    return page


async def test_annotot_create_update_delete_cycle(client: httpx.AsyncClient) -> None:
    annotation = mae_annotation()
    r = await client.post(ANNOTOT, content=annotot_create_body(annotation), headers=ADAPTER_HEADERS)
    assert r.status_code == 200
    page = await annotot_all(client)
    assert page["type"] == "AnnotationPage"
    # Returned as the client stored it, except the creator: the server names the writer.
    assert page["items"] == [served(annotation)]

    annotation["body"]["value"] = "<p>Palimpsest text, corrected</p>"
    url = f"{ANNOTOT}/{encode_component(annotation['id'])}"
    assert "%2F" in url
    r = await client.patch(url, content=annotot_update_body(annotation), headers=ADAPTER_HEADERS)
    assert r.status_code == 200
    assert (await annotot_all(client))["items"] == [served(annotation)]
    got = await client.get(url, headers=ADAPTER_HEADERS)
    assert got.json() == served(annotation)

    r = await client.delete(url, headers=ADAPTER_HEADERS)
    assert r.status_code == 200
    assert (await annotot_all(client))["items"] == []


async def test_annotot_large_data_url_body_round_trips(client: httpx.AsyncClient) -> None:
    pixels = base64.b64encode(bytes(range(256)) * (3 * 1024 * 1024 // 256)).decode()
    annotation = mae_annotation()
    annotation["body"] = [
        annotation["body"],
        {"type": "Image", "id": f"data:image/png;base64,{pixels}", "format": "image/png"},
    ]
    body = annotot_create_body(annotation)
    assert len(body) > 4 * 1024 * 1024
    r = await client.post(ANNOTOT, content=body, headers=ADAPTER_HEADERS)
    assert r.status_code == 200
    items = (await annotot_all(client))["items"]
    assert items[0]["body"][1]["id"] == annotation["body"][1]["id"]
    assert items == [served(annotation)]


async def test_annotot_writes_need_a_token_and_ownership(client: httpx.AsyncClient) -> None:
    body = annotot_create_body(mae_annotation())
    assert (await client.post("/annotot", content=body, headers=ADAPTER_HEADERS)).status_code == 401
    r = await client.post("/annotot", content=body, headers={**ADAPTER_HEADERS, **ALICE})
    assert r.status_code == 200
    url = f"/annotot/key/bob-token/{encode_component(mae_annotation()['id'])}"
    assert (await client.delete(url)).status_code == 403
    assert (await client.delete(url.replace("/key/bob-token", ""), headers=BOB)).status_code == 403


async def test_sas_create_search_update_destroy(client: httpx.AsyncClient) -> None:
    # SimpleAnnotationServerV2Adapter.createV2Anno(mae_annotation()): what create() POSTs.
    v2 = {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@type": "oa:Annotation",
        "motivation": "oa:commenting",
        "on": {
            "@type": "oa:SpecificResource",
            "selector": {
                "@type": "oa:Choice",
                "default": {"@type": "oa:FragmentSelector", "value": "xywh=10,20,100,50"},
                "item": {"@type": "oa:SvgSelector", "value": SVG},
            },
            "full": CANVAS,
            "within": {"@id": MANIFEST, "@type": "sc:Manifest"},
        },
        "@id": f"{CANVAS}/annotation/2f1c9a",
        "resource": {"chars": "<p>ink under UV</p>", "@type": "dctypes:Text"},
    }
    r = await client.post(f"{SAS}/create", content=json.dumps(v2), headers=ADAPTER_HEADERS)
    assert r.status_code == 201
    # all(): fetch(`${endpointUrl}/search?uri=${canvasId}`) → array of OA annotations
    found = (await client.get(f"{SAS}/search?uri={CANVAS}")).json()
    assert isinstance(found, list) and len(found) == 1
    a = found[0]
    assert a["@type"] == "oa:Annotation" and a["resource"]["chars"] == "<p>ink under UV</p>"
    on = a["on"][0]
    assert on["full"] == CANVAS and on["within"]["@id"] == MANIFEST
    assert on["selector"]["@type"] == "oa:Choice"
    assert on["selector"]["default"]["value"] == "xywh=10,20,100,50"
    assert on["selector"]["item"]["@type"] == "oa:SvgSelector"

    # update(): createV2Anno of the v3 form of what search returned; @id kept (starts with http)
    v2["@id"] = a["@id"]
    v2["resource"] = {"chars": "<p>ink under UV, 365 nm</p>", "@type": "dctypes:Text"}
    r = await client.post(f"{SAS}/update", content=json.dumps(v2), headers=ADAPTER_HEADERS)
    assert r.status_code == 200
    found = (await client.get(f"{SAS}/search?uri={CANVAS}")).json()
    assert [x["resource"]["chars"] for x in found] == ["<p>ink under UV, 365 nm</p>"]

    # delete(): fetch(`${endpointUrl}/destroy?uri=${encodeURIComponent(annoId)}`, DELETE)
    r = await client.delete(
        f"{SAS}/destroy?uri={encode_component(a['@id'])}", headers=ADAPTER_HEADERS
    )
    assert r.status_code == 204
    assert (await client.get(f"{SAS}/search?uri={CANVAS}")).json() == []


async def test_one_store_three_dialects(client: httpx.AsyncClient) -> None:
    w3c = await client.post(container(), json=mae_annotation("from W3C", "w3c"), headers=ALICE)
    assert w3c.status_code == 201
    await client.post(
        ANNOTOT,
        content=annotot_create_body(mae_annotation("from Annotot", "tot")),
        headers=ADAPTER_HEADERS,
    )
    sas = {
        "@type": "oa:Annotation",
        "motivation": "oa:commenting",
        "on": {
            "@type": "oa:SpecificResource",
            "full": CANVAS,
            "selector": {"@type": "oa:FragmentSelector", "value": "xywh=1,2,3,4"},
        },
        "resource": {"chars": "from SAS", "@type": "dctypes:Text"},
    }
    await client.post(f"{SAS}/create", json=sas, headers=ADAPTER_HEADERS)

    texts = ["<p>from W3C</p>", "<p>from Annotot</p>", "from SAS"]
    assert [a["body"]["value"] for a in (await annotot_all(client))["items"]] == texts
    assert [
        a["resource"]["chars"] for a in (await client.get(f"{SAS}/search?uri={CANVAS}")).json()
    ] == texts
    container_items = (await client.get(container())).json()["first"]["items"]
    assert [a["body"]["value"] for a in container_items] == texts
    viewer = (await client.get(container() + "page")).json()["items"]
    assert [a["body"]["value"] for a in viewer] == texts

    # an annotation made through the protocol is editable through Annotot by the id it lists
    listed = (await annotot_all(client))["items"][0]
    listed["body"]["value"] = "<p>edited in Mirador</p>"
    r = await client.patch(
        f"{ANNOTOT}/{encode_component(listed['id'])}",
        content=annotot_update_body(listed),
        headers=ADAPTER_HEADERS,
    )
    assert r.status_code == 200
    got = await client.get(path(w3c.headers["location"]))
    assert got.json()["body"]["value"] == "<p>edited in Mirador</p>"
