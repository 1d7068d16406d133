"""``iiifsrv migrate``: a data directory made by the embedded backends (catalogue objects and
transforms, uploaded, built, replaced and deleted manifests, their change log) moves into
PostgreSQL; a second run copies nothing; the PostgreSQL replica serves the same bytes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iiifsrv.catalogue import Catalogue
from iiifsrv.cli import main
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from iiifsrv.web.app import Front, create_app
from tests.state.conftest import ALICE, BASE, EDITOR, TOKENS, manifest, pg_url
from tests.state.test_state_backends import _object, _transform


async def _clients(*apps: Front) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) for app in apps
    ]
    yield clients
    for c, app in zip(clients, apps, strict=True):
        await c.aclose()
        await app.state.annotation_store.close()
        app.state.state.close()


async def _everything(c: httpx.AsyncClient) -> dict[str, Any]:
    """What a client reaches by following links from the top collection and the change stream."""
    seen: dict[str, Any] = {}
    queue = [f"{BASE}/iiif/collection", f"{BASE}/iiif/activity", f"{BASE}/objects"]
    while queue:
        url = queue.pop()
        if url in seen or not url.startswith(BASE):
            continue
        r = await c.get(url[len(BASE) :])
        assert r.status_code == 200, url
        doc = r.json()
        seen[url] = (r.headers.get("etag", "").replace("-gzip", ""), doc)
        if isinstance(doc, dict):
            if doc.get("type") == "Collection":
                queue += [i["id"] for i in doc["items"]]
            if doc.get("type") == "Manifest":  # each canvas's annotation page
                queue += [p["id"] for i in doc["items"] for p in i.get("annotations", [])]
            for link in ("first", "next"):
                if isinstance(doc.get(link), dict):
                    queue.append(doc[link]["id"])
    return seen


async def _make_data_dir(settings: Settings) -> None:
    catalogue = Catalogue(settings.data_path / "catalogue.sqlite3")
    catalogue.upsert(_object("leaf", "A leaf", "2026-01-01T00:00:01Z"))
    catalogue.put_transform("leaf", "stretch:IR940", "v1", _transform(3.0))
    async for (c,) in _clients(create_app(settings)):
        for name in ("kept", "replaced", "dropped"):
            r = await c.post("/iiif/manifests", json=manifest(name), headers=ALICE)
            assert r.status_code == 201, r.text
        r = await c.put("/iiif/manifests/replaced", json=manifest("replaced", 3), headers=ALICE)
        assert r.status_code == 200
        assert (await c.delete("/iiif/manifests/dropped", headers=ALICE)).status_code == 204
        r = await c.post("/iiif/manifests", json={"build": {"objects": ["leaf"], "id": "set"}},
                         headers=EDITOR)  # fmt: skip
        assert r.status_code == 201, r.text
        assert (await c.get("/iiif/manifests/leaf")).status_code == 200  # built by sync
        # Two annotations on a canvas of "kept", found by its links; one is then deleted.
        canvas = (await c.get("/iiif/manifests/kept")).json()["items"][0]
        page = (await c.get(canvas["annotations"][0]["id"][len(BASE) :])).json()
        container = page["partOf"][0]["id"][len(BASE) :]
        ids = []
        for text in ("kept note", "dropped note"):
            note = {
                "@context": "http://www.w3.org/ns/anno.jsonld",
                "type": "Annotation",
                "motivation": "commenting",
                "body": {"type": "TextualBody", "value": text, "format": "text/plain"},
                "target": canvas["id"],
            }
            r = await c.post(container, json=note, headers=ALICE)
            assert r.status_code == 201, r.text
            ids.append(r.headers["location"])
        r = await c.delete(ids[1][len(BASE) :], headers={**ALICE, "If-Match": r.headers["etag"]})
        assert r.status_code == 204, r.text


async def test_migrate_twice_then_postgres_serves_the_same(
    tmp_path: Path, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    embedded = Settings(images=str(images), data=str(tmp_path / "data"), tokens=TOKENS,
                        public_url=BASE)  # fmt: skip
    await _make_data_dir(embedded)
    # An index written before the version column and the canvases table existed.
    with sqlite3.connect(embedded.data_path / "presentation.sqlite3") as db:
        db.execute("DROP TABLE canvases")
        db.execute("ALTER TABLE manifests DROP COLUMN version")
        db.execute("PRAGMA user_version = 0")
    db.close()

    url = pg_url(pg_schema)
    args = ["migrate", "--data", str(embedded.data_path), "--database-url", url]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "objects          1 in the data directory,      1 copied" in first
    assert "transforms       1 in the data directory,      1 copied" in first
    assert "manifests        4 in the data directory,      4 copied" in first
    assert "activities       7 in the data directory,      7 copied" in first
    assert "annotations      2 in the data directory,      2 copied" in first
    assert first.count("verified") == 5
    assert main(args) == 0  # idempotent: everything is already there
    second = capsys.readouterr().out
    tables = (("objects", 1), ("transforms", 1), ("manifests", 4), ("activities", 7),
              ("annotations", 2))  # fmt: skip
    for table, n in tables:
        assert f"{n:>6} copied" not in second.split(table, 1)[1].split("\n", 1)[0] or n == 0
        assert f"{n:>6} already there" in second.split(table, 1)[1].split("\n", 1)[0], second
    assert second.count("verified") == 5

    # A replica on PostgreSQL with an empty data directory of its own serves the same.
    (tmp_path / "empty").mkdir()
    replica = Settings(images=str(images), data=str(tmp_path / "empty"), tokens=TOKENS,
                       public_url=BASE, database_url=url)  # fmt: skip
    async for before, after in _clients(create_app(embedded), create_app(replica)):
        old, new = await _everything(before), await _everything(after)
        assert len(old) >= 8
        assert {u: d for u, (_, d) in new.items()} == {u: d for u, (_, d) in old.items()}
        # Manifests, collections and the change stream keep their ETags (the same bytes);
        # an annotation page's ETag comes from its store's change numbers, renumbered here.
        assert {u: e for u, (e, _) in new.items() if "/annotations/" not in u} == {
            u: e for u, (e, _) in old.items() if "/annotations/" not in u
        }
        # The canvases of migrated manifests are known (annotation targets are checked).
        state = open_state(replica)
        try:
            assert state.manifests.canvases("replaced") == [
                f"/iiif/manifests/replaced/canvas/{i}" for i in (1, 2, 3)
            ]
            assert state.catalogue.get_transform("leaf", "stretch:IR940", "v1") == _transform(3.0)
        finally:
            state.close()
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == []


def test_migrate_refuses_to_merge_into_another_change_log(
    tmp_path: Path, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    settings = Settings(images=str(tmp_path), data=str(data), database_url=pg_url(pg_schema))
    state = open_state(settings)
    try:
        state.manifests.put("elsewhere", manifest("elsewhere"), origin="upload")
    finally:
        state.close()
    embedded = Settings(images=str(tmp_path), data=str(data))
    state = open_state(embedded)
    state.manifests.put("here", manifest("here"), origin="upload")
    assert main(["migrate", "--data", str(data), "--database-url", settings.database_url]) == 1
    out = capsys.readouterr().out
    assert "already holds other activities" in out
    assert main(["migrate", "--data", str(data)]) == 2  # no database_url anywhere
    assert "database_url" in capsys.readouterr().err
