"""The state backends behave alike: the same tests on SQLite + files and on PostgreSQL. Two apps
on the same backend stand for two replicas (the cross-process test runs real servers)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from iiifsrv.catalogue import Band, CatalogueObject, Composite, Transform
from iiifsrv.errors import Conflict
from iiifsrv.presentation.store import NEW
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from iiifsrv.web.app import create_app
from tests.state.conftest import ALICE, BASE, BOB, EDITOR, TOKENS, manifest, pg_url


def _path(url: str) -> str:
    return urlsplit(url).path + (f"?{urlsplit(url).query}" if urlsplit(url).query else "")


def _object(object_id: str, label: str = "An object", updated: str = "") -> CatalogueObject:
    return CatalogueObject(
        id=object_id,
        label=label,
        kind="multispectral",
        metadata={"institution": "Example Library"},
        image=f"{object_id}/truecolor",
        width=64,
        height=48,
        bands=(Band("IR940", 940.0, f"{object_id}/IR940", "infrared"),),
        composites=(Composite("truecolor", "True colour", f"{object_id}/truecolor"),),
        content_hash="v1",
        updated=updated,
    )


def _transform(low: float) -> Transform:
    return Transform(op="stretch", bands=("IR940",), low=(low,), high=(200.0,), level=(64, 48))


def test_catalogue_objects_transforms_and_change_counter(state_settings: Settings) -> None:
    state = open_state(state_settings)
    catalogue = state.catalogue
    try:
        assert catalogue.get("leaf") is None and catalogue.list() == []
        start = catalogue.changes()
        obj = _object("leaf")
        catalogue.upsert(obj)
        stored = catalogue.get("leaf")
        assert stored is not None and stored.bands == obj.bands
        assert stored.composites == obj.composites and stored.updated
        assert [o.id for o in catalogue.list()] == ["leaf"]
        assert catalogue.changes() > start
        catalogue.put_transform("leaf", "stretch:IR940", "v1", _transform(3.0))
        assert catalogue.get_transform("leaf", "stretch:IR940", "v1") == _transform(3.0)
        assert catalogue.get_transform("leaf", "stretch:IR940", "v2") is None
        catalogue.put_transform("leaf", "pca", "v2", _transform(5.0))  # a new version
        assert catalogue.get_transform("leaf", "stretch:IR940", "v1") is None  # dropped
        before = catalogue.changes()
        assert catalogue.remove("leaf") is True
        assert catalogue.get("leaf") is None and catalogue.remove("leaf") is False
        assert catalogue.get_transform("leaf", "pca", "v2") is None
        assert catalogue.changes() > before
    finally:
        state.close()


async def test_manifest_written_through_one_replica_is_served_by_the_other(
    client: httpx.AsyncClient, client_b: httpx.AsyncClient
) -> None:
    created = await client.post("/iiif/manifests", json=manifest("shared"), headers=ALICE)
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    served = await client_b.get(_path(location))
    assert served.status_code == 200
    assert served.json()["label"] == {"en": ["A test manifest"]}
    assert served.headers["etag"].replace("-gzip", "") == created.headers["etag"]
    replaced = await client_b.put(
        _path(location), json=manifest("shared", 3, "Second version"), headers=ALICE
    )
    assert replaced.status_code == 200, replaced.text
    again = await client.get(_path(location))
    assert again.json()["label"] == {"en": ["Second version"]}
    assert len(again.json()["items"]) == 3
    gone = await client_b.delete(_path(location), headers=ALICE)
    assert gone.status_code == 204
    assert (await client.get(_path(location))).status_code == 404


async def test_canvases_of_a_manifest_are_known_to_every_replica(
    client: httpx.AsyncClient, client_b: httpx.AsyncClient
) -> None:
    created = await client.post("/iiif/manifests", json=manifest("pages", 2), headers=ALICE)
    assert created.status_code == 201
    doc = (await client_b.get(_path(created.headers["location"]))).json()
    # The annotation page each canvas references (the link a viewer follows) accepts an
    # annotation on replica B: B knows the canvas from the shared canvases table.
    canvas = doc["items"][1]
    page = (await client_b.get(_path(canvas["annotations"][0]["id"]))).json()
    container = page["partOf"][0]["id"]
    annotation = {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": "a note", "format": "text/plain"},
        "target": canvas["id"],
    }
    posted = await client_b.post(_path(container), json=annotation, headers=BOB)
    assert posted.status_code == 201, posted.text
    stranger = {**annotation, "target": canvas["id"].replace("/canvas/2", "/canvas/9")}
    refused = await client_b.post(_path(container), json=stranger, headers=BOB)
    assert refused.status_code in (400, 404), refused.text


async def test_activity_stream_is_one_ordered_stream(
    client: httpx.AsyncClient, client_b: httpx.AsyncClient
) -> None:
    steps: list[tuple[httpx.AsyncClient, str, str]] = [
        (client, "POST", "x"),
        (client_b, "POST", "y"),
        (client_b, "PUT", "x"),
        (client, "DELETE", "y"),
    ]
    for c, method, name in steps:
        if method == "DELETE":
            r = await c.delete(f"/iiif/manifests/{name}", headers=ALICE)
        elif method == "PUT":
            r = await c.put(f"/iiif/manifests/{name}", json=manifest(name), headers=ALICE)
        else:
            r = await c.post("/iiif/manifests", json=manifest(name), headers=ALICE)
        assert r.status_code < 300, r.text
    for reader in (client, client_b):
        stream = (await reader.get("/iiif/activity")).json()
        assert stream["totalItems"] == 4
        items: list[dict[str, Any]] = []
        url: str | None = stream["first"]["id"]
        while url:
            page = (await reader.get(_path(url))).json()
            items += page["orderedItems"]
            url = page.get("next", {}).get("id")
        seen = [(a["type"], a["object"]["id"].rsplit("/", 1)[1]) for a in items]
        assert seen == [("Create", "x"), ("Create", "y"), ("Update", "x"), ("Delete", "y")]


async def test_if_match_makes_a_put_conditional(
    client: httpx.AsyncClient, client_b: httpx.AsyncClient
) -> None:
    created = await client.post("/iiif/manifests", json=manifest("cond"), headers=ALICE)
    etag = created.headers["etag"]
    first = await client.put(
        "/iiif/manifests/cond", json=manifest("cond", 1, "A"), headers={**ALICE, "If-Match": etag}
    )
    assert first.status_code == 200, first.text
    second = await client_b.put(
        "/iiif/manifests/cond", json=manifest("cond", 1, "B"), headers={**ALICE, "If-Match": etag}
    )
    assert second.status_code == 412, second.text
    assert "If-Match" in second.text
    served = (await client_b.get("/iiif/manifests/cond")).json()
    assert served["label"] == {"en": ["A"]}
    stale_delete = await client_b.delete(
        "/iiif/manifests/cond", headers={**EDITOR, "If-Match": etag}
    )
    assert stale_delete.status_code == 412
    fresh = await client_b.delete(
        "/iiif/manifests/cond", headers={**EDITOR, "If-Match": first.headers["etag"]}
    )
    assert fresh.status_code == 204


def test_concurrent_writers_of_one_manifest_one_wins(
    state_settings: Settings, replica_settings: Settings
) -> None:
    a, b = open_state(state_settings), open_state(replica_settings)
    try:
        a.manifests.put("race", manifest("race"), origin="upload", owner="alice", expect=NEW)
        with pytest.raises(Conflict):  # created meanwhile by A
            b.manifests.put("race", manifest("race"), origin="upload", expect=NEW)
        seen = b.manifests.get("race")
        assert seen is not None
        # Both replicas read version v and write at the same time: one write lands.
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def write(state: Any, label: str) -> None:
            barrier.wait()
            try:
                state.manifests.put(
                    "race",
                    manifest("race", 1, label),
                    origin="upload",
                    label=label,
                    expect=seen.version,
                )
                outcomes.append(f"ok {label}")
            except Conflict as exc:
                assert exc.status == 409
                outcomes.append("409")

        threads = [threading.Thread(target=write, args=(s, n)) for s, n in ((a, "A"), (b, "B"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes)[0] == "409" and len(outcomes) == 2, outcomes
        winner = outcomes[0] if outcomes[0] != "409" else outcomes[1]
        label = winner.split()[1]
        record = a.manifests.get("race")
        assert record is not None and record.label == label and record.version == seen.version + 1
        body = b.manifests.read("race")
        assert body is not None and f'"label":{{"en":["{label}"]}}'.encode() in body
        assert a.manifests.canvases("race") == ["http://test/iiif/manifests/race/canvas/1"]
        assert a.manifests.activity_count() == 2  # one Create, one Update: nothing half-written
    finally:
        a.close()
        b.close()


async def test_catalogue_object_becomes_a_manifest_on_every_replica(
    state_settings: Settings,
    replica_settings: Settings,
    client: httpx.AsyncClient,
    client_b: httpx.AsyncClient,
) -> None:
    assert (await client_b.get("/iiif/manifests/leaf")).status_code == 404
    writer = open_state(state_settings)
    try:
        writer.catalogue.upsert(_object("leaf", "First label", "2026-01-01T00:00:01Z"))
    finally:
        writer.close()
    served = await client_b.get("/iiif/manifests/leaf")
    assert served.status_code == 200 and served.json()["label"] == {"en": ["First label"]}
    writer = open_state(replica_settings)
    try:
        writer.catalogue.upsert(_object("leaf", "Second label", "2026-01-01T00:00:02Z"))
    finally:
        writer.close()
    for c in (client, client_b):
        assert (await c.get("/iiif/manifests/leaf")).json()["label"] == {"en": ["Second label"]}
    stream = (await client.get("/iiif/activity/page/0")).json()
    # Built once, rebuilt once: the replicas did not both log the same change.
    assert [a["type"] for a in stream["orderedItems"]] == ["Create", "Update"]


async def test_postgres_replicas_keep_nothing_on_local_disk(tmp_path: Path, pg_schema: str) -> None:
    (tmp_path / "images").mkdir()
    settings = Settings(images=str(tmp_path / "images"), data=str(tmp_path / "data"),
                        tokens=TOKENS, database_url=pg_url(pg_schema), public_url=BASE)  # fmt: skip
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        created = await c.post("/iiif/manifests", json=manifest("nowhere"), headers=ALICE)
        assert created.status_code == 201
        assert (await c.get("/iiif/manifests/nowhere")).status_code == 200
        assert (await c.get("/iiif/collection")).status_code == 200
        assert (await c.get("/iiif/activity")).json()["totalItems"] == 1
    await app.state.annotation_store.close()
    app.state.state.close()
    data = tmp_path / "data"
    assert not data.exists() or sorted(p.name for p in data.rglob("*")) == []
