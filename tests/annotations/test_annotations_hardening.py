"""Hostile input to the annotation store (found by review and fuzzing): always a 4xx, never a
500, and one user cannot take over another's annotation. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import httpx

from tests.annotations.annotation_samples import CANVAS, anno, container, published_search
from tests.annotations.conftest import ALICE, BOB

DEEP = b"[" * 5000 + b"]" * 5000
HUGE_INT = b'{"a":' + b"1" * 5000 + b"}"


async def test_hostile_json_bodies_are_400(client: httpx.AsyncClient) -> None:
    for body in (DEEP, HUGE_INT, b'{"type":"Annotation","x":NaN}', b"\xff\xfe", b"{"):
        headers = {**ALICE, "Content-Type": "application/json"}
        r = await client.post(container(), content=body, headers=headers)
        assert r.status_code == 400, (body[:20], r.status_code, r.text)
        r = await client.post("/annotot", content=body, headers=headers)
        assert r.status_code == 400, (body[:20], r.status_code)
        r = await client.post("/sas/create", content=body, headers=headers)
        assert r.status_code == 400, (body[:20], r.status_code)


async def test_bad_svg_numbers_do_not_break_search(client: httpx.AsyncClient) -> None:
    doc = anno("poisoned")
    doc["target"]["selector"] = {
        "type": "SvgSelector",
        "value": "<svg><rect x='abc' y='inf'/></svg>",
    }
    r = await client.post(container(), json=doc, headers=ALICE)
    assert r.status_code in (201, 400)
    await client.post(container(), json=anno("a healthy poisoned neighbour"), headers=ALICE)
    for version in (2, 1):
        search = await published_search(client, ALICE, version)
        r = await client.get(search, params={"q": "poisoned"})
        assert r.status_code == 200, r.text
        r = await client.get(search)
        assert r.status_code == 200, r.text


async def test_client_id_cannot_be_taken_over(client: httpx.AsyncClient) -> None:
    def annotot(text: str) -> dict[str, object]:
        data = {
            "type": "Annotation",
            "id": "uuid-A",
            "body": {"type": "TextualBody", "value": text},
            "target": CANVAS,
        }
        return {"annotation": {"canvas": CANVAS, "uuid": "uuid-A", "data": json.dumps(data)}}

    r = await client.post("/annotot", json=annotot("alice original"), headers=ALICE)
    assert r.status_code in (200, 201), r.text
    r = await client.post("/annotot", json=annotot("forged"), headers=BOB)
    assert r.status_code == 409
    r = await client.get("/annotot/uuid-A")
    assert "alice original" in r.text and "forged" not in r.text
    r = await client.patch("/annotot/uuid-A", json=annotot("alice edit"), headers=ALICE)
    assert r.status_code == 200, r.text


async def test_odd_query_values_are_400_not_500(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{container()}?page=%C2%B2")).status_code == 400
    assert (await client.get("/annotot/pages?uri=https%3A%2F%2Fx.org%2Fc%00")).status_code == 400
    assert (await client.get("/sas/search?uri=%00")).status_code == 400
    doc = anno("nul \x00 inside")
    assert (await client.post(container(), json=doc, headers=ALICE)).status_code == 400
