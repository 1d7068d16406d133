"""Security review #12: attribution spoofing and key shadowing.

The attacks: bob stored an annotation with ``"creator": {"nickname": "alice"}`` and Annotot
served it as alice's; bob created an annotation whose ``uuid`` was alice's key, and alice's
Annotot calls by key then hit bob's record (403), while an editor acting by key changed bob's.
Now the server owns ``creator``/``generator`` in every representation, an exact key wins over a
client id, and a client id equal to an existing key is refused. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.annotations.annotation_samples import CANVAS, anno, container, published_search
from tests.annotations.conftest import ALICE, BOB, EDITOR, backend_settings, client, pg_schema  # noqa: F401

SPOOF = {"type": "Person", "nickname": "alice", "name": "alice"}
GENERATOR = {"type": "Software", "name": "alice's own editor"}


def annotot(doc: dict[str, Any], uuid: str) -> dict[str, Any]:
    return {"annotation": {"canvas": CANVAS, "uuid": uuid, "data": json.dumps(doc)}}


async def test_creator_is_the_writer_everywhere(client: httpx.AsyncClient) -> None:  # noqa: F811
    doc = anno("spoofed words", creator=SPOOF, generator=GENERATOR, id="urn:bob:spoof")
    assert (
        await client.post("/annotot", json=annotot(doc, "urn:bob:spoof"), headers=BOB)
    ).status_code == 200
    w3c_doc = anno("more spoofed words", creator=SPOOF, generator=GENERATOR)
    assert (await client.post(container(), json=w3c_doc, headers=BOB)).status_code == 201

    served = (await client.get("/annotot/pages", params={"uri": CANVAS})).json()["items"]
    assert [a["creator"] for a in served] == ["bob", "bob"]
    assert (await client.get("/annotot/urn:bob:spoof")).json()["creator"] == "bob"
    assert [
        a["annotatedBy"]["name"]
        for a in (await client.get("/sas/search", params={"uri": CANVAS})).json()
    ] == ["bob", "bob"]
    search2 = await published_search(client, ALICE)
    for items in (
        (await client.get(container() + "page")).json()["items"],
        (await client.get(container())).json()["first"]["items"],
        (await client.get(search2, params={"q": "spoofed"})).json()["items"],
    ):
        bob = {"id": "http://test/users/bob", "type": "Person", "name": "bob", "nickname": "bob"}
        assert [a["creator"] for a in items] == [bob] * 2
    for r in (
        await client.get("/annotot/pages", params={"uri": CANVAS}),
        await client.get(container() + "page"),
        await client.get(search2, params={"q": "spoofed"}),
    ):
        assert "alice" not in r.text and "generator" not in r.text


async def test_a_client_id_cannot_shadow_a_key(client: httpx.AsyncClient) -> None:  # noqa: F811
    r = await client.post(container(), json=anno("alice's note"), headers=ALICE)
    assert r.status_code == 201
    key = r.headers["location"].rsplit("/", 1)[1]
    # The review's attack: bob's annotation with uuid = alice's key.
    r = await client.post("/annotot", json=annotot(anno("bob's"), key), headers=BOB)
    assert r.status_code == 409
    assert r.text == "that annotation id is an existing annotation's key\n"
    r = await client.post("/sas/create", json={"@id": key, "@type": "oa:Annotation",
                                                 "resource": {"chars": "bob's"},
                                                 "on": {"full": CANVAS}}, headers=BOB)  # fmt: skip
    assert r.status_code == 409
    # Alice's calls by key reach her annotation.
    r = await client.patch(
        f"/annotot/key/alice-token/{key}", json=annotot(anno("alice, edited"), key)
    )
    assert r.status_code == 200, r.text
    assert "alice, edited" in (await client.get(f"/annotot/{key}")).text


async def test_a_key_wins_over_a_client_id(client: httpx.AsyncClient) -> None:  # noqa: F811
    # Bob's client id first, then alice asks for that very key with a Slug: she gets another
    # key, so neither can shadow the other.
    r = await client.post("/annotot", json=annotot(anno("bob's"), "shared-name"), headers=BOB)
    assert r.status_code == 200
    r = await client.post(
        container(), json=anno("alice's"), headers={**ALICE, "Slug": "shared-name"}
    )
    assert r.status_code == 201
    assert not r.headers["location"].endswith("/shared-name")
    assert "bob's" in (await client.get("/annotot/shared-name")).text
    # The editor acting by the name changes the record the name is: bob's.
    r = await client.patch(
        "/annotot/shared-name", json=annotot(anno("bob's, edited"), "shared-name"), headers=EDITOR
    )
    assert r.status_code == 200
    assert "bob's, edited" in (await client.get("/annotot/shared-name")).text


async def test_an_exact_key_wins_in_an_old_store(client: httpx.AsyncClient) -> None:  # noqa: F811
    # A store from the previous version may already hold bob's client id equal to alice's key.
    import dataclasses

    from iiifsrv.annotations import model
    from iiifsrv.annotations.urls import Urls

    def stored(text: str) -> model.Checked:
        # As the store holds a canvas of ours: by its key (path).
        keys = Urls("http://test")
        checked = model.check(anno(text))
        return dataclasses.replace(
            checked, canvas=keys.key(checked.canvas), manifest=keys.key(checked.manifest)
        )

    store = client._transport.app.state.annotation_store  # type: ignore[attr-defined]
    await store.create("alicekey", stored("alice's note"), "", "alice")
    await store.create("bobkey", stored("bob's shadow"), "alicekey", "bob")
    assert "alice's note" in (await client.get("/annotot/alicekey")).text
    r = await client.patch(
        "/annotot/key/alice-token/alicekey", json=annotot(anno("alice, edited"), "alicekey")
    )
    assert r.status_code == 200
    assert "alice, edited" in (await client.get("/annotot/alicekey")).text
    assert "bob's shadow" in (await client.get("/annotot/bobkey")).text
