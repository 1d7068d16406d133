"""Security review #6: the Annotot dialect parsed its inner ``data`` leniently.

The attack: ``"data": "{…\"x\":NaN…}"`` was stored, and every page, container and search of
that canvas became invalid JSON (Mirador broke); deep nesting and a 5000-digit int gave 500.
Now ``data`` is parsed as strictly as a body, every response is serialised with
allow_nan=False, and NaN already in an old store reads as null. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from iiifsrv.annotations import model
from iiifsrv.annotations.urls import Urls, encode_uri
from tests.annotations.annotation_samples import CANVAS, MANIFEST, anno, container
from tests.annotations.conftest import ALICE, BOB, backend_settings, client, pg_schema  # noqa: F401


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response")

    return json.loads(text, parse_constant=refuse)


def annotot(data: str, uuid: str = "urn:nan") -> dict[str, Any]:
    return {"annotation": {"canvas": CANVAS, "uuid": uuid, "data": data}}


def data_with(value: str) -> str:
    return (
        '{"type":"Annotation","body":{"type":"TextualBody","value":"hi there","x":'
        + value
        + '},"target":"'
        + CANVAS
        + '"}'
    )


async def _every_view(http: httpx.AsyncClient) -> list[httpx.Response]:
    manifest = encode_uri(MANIFEST)
    return [
        await http.get("/annotot/pages", params={"uri": CANVAS}),
        await http.get("/annotot", params={"uri": CANVAS}),
        await http.get("/sas/search", params={"uri": CANVAS}),
        await http.get(container() + "page"),
        await http.get(container()),
        await http.get(container() + "?page=0"),
        await http.get(f"/annotations/search/2/{manifest}?q=hi"),
        await http.get(f"/annotations/search/1/{manifest}?q=hi"),
        await http.get(f"/annotations/search/2/{manifest}"),
    ]


async def test_inner_data_is_strict_json(client: httpx.AsyncClient) -> None:  # noqa: F811
    # The review's requests: NaN (and its cousins) inside data, deep nesting, a 5000-digit int.
    hostile = [
        "NaN",
        "Infinity",
        "-Infinity",
        "[" * 5000 + "]" * 5000,
        "1" * 5000,
        "[" * 150 + "]" * 150,
    ]
    for value in hostile:
        for method, path in (("POST", "/annotot"), ("PATCH", "/annotot/urn:nan")):
            r = await client.request(method, path, json=annotot(data_with(value)), headers=BOB)
            assert r.status_code in (400, 404), (value[:12], method, r.status_code, r.text)
            if method == "POST":
                assert r.status_code == 400 and r.text.startswith("the body is")
    # The annotation written without the poison, then the same PATCH attempts: still 400.
    assert (
        await client.post("/annotot", json=annotot(data_with("1")), headers=BOB)
    ).status_code == 200
    for value in hostile:
        r = await client.patch("/annotot/urn:nan", json=annotot(data_with(value)), headers=BOB)
        assert r.status_code == 400, (value[:12], r.status_code)
    await client.post(container(), json=anno("hi neighbour"), headers=ALICE)
    for r in await _every_view(client):
        assert r.status_code == 200, (r.url, r.status_code)
        _strict(r.text)
    assert "hi there" in (await client.get("/annotot/pages", params={"uri": CANVAS})).text


async def test_nan_in_an_old_store_reads_as_null(client: httpx.AsyncClient) -> None:  # noqa: F811
    # A row the previous version stored from lenient input (written here below the checks).
    store = client._transport.app.state.annotation_store  # type: ignore[attr-defined]
    poisoned = anno("hi old poison", x=float("nan"), y=[float("inf")])
    keys = Urls("http://test")  # the store holds canvases of ours by their key (path)
    checked = model.Checked(
        poisoned, keys.key(CANVAS), keys.key(MANIFEST), "hi old poison", "10,20,100,50"
    )
    await store.create("legacy", checked, "", "bob")
    for r in await _every_view(client):
        assert r.status_code == 200, (r.url, r.status_code)
        _strict(r.text)
    page = (await client.get(container() + "page")).json()
    assert page["items"][0]["x"] is None and page["items"][0]["y"] == [None]
