"""Security review #8: manifest-id squatting.

The attacks: bob pre-registered /iiif/manifests/codex-17, staff then ingested codex-17, and the
official URL kept serving bob's manifest (sync skipped it silently); and bob claimed
/iiif/manifests/flat/canvas/1, the canvas URL of the catalogue manifest ``flat``. Now catalogue
ids are reserved, the catalogue displaces an earlier non-editor upload when it later takes the
id (the upload is kept under <data>/displaced/ and logged), non-editors may not use "/", and
no id may nest inside another's URLs. Manifests live in the data directory whatever the
annotation backend, so these tests run once. Ingest is the real ``iiifsrv ingest``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Catalogue
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.annotations.conftest import TOKENS
from tests.ingest_support import run_cli
from tests.security.attack_support import ALICE, BOB, EDITOR, manifest


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "images").mkdir()
    return Settings(images=str(tmp_path / "images"), data=str(tmp_path / "data"), tokens=TOKENS)


def ingest(settings: Settings, tmp_path: Path, object_id: str, label: str) -> None:
    source = tmp_path / f"{object_id}.tif"
    pyvips.Image.black(64, 48).cast("uchar").tiffsave(str(source))
    status, out = run_cli(
        "ingest", str(source), "--id", object_id, "--label", label,
        "--images", settings.images, "--data", settings.data,
    )  # fmt: skip
    assert status == 0, out


@pytest.fixture
async def http(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    ingest(settings, tmp_path, "flat", "Flat (official)")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def fake(manifest_id: str, label: str) -> dict[str, Any]:
    doc = manifest("http://test", manifest_id)
    doc["label"] = {"en": [label]}
    return doc


async def label_of(http: httpx.AsyncClient, manifest_id: str) -> str:
    r = await http.get(f"/iiif/manifests/{manifest_id}")
    assert r.status_code == 200
    return str(r.json()["label"]["en"][0])


async def test_catalogue_ids_are_reserved(http: httpx.AsyncClient) -> None:
    r = await http.put("/iiif/manifests/flat", json=fake("flat", "Fake flat"), headers=BOB)
    assert r.status_code == 409
    assert r.text == "'flat' is reserved: a catalogue object has this id\n"
    r = await http.post("/iiif/manifests", json=fake("x", "Fake"), headers={**BOB, "Slug": "flat"})
    assert r.status_code == 409
    r = await http.post("/iiif/manifests", json={"build": {"objects": ["flat"]}}, headers=BOB)
    assert r.status_code == 409  # a build's id defaults to its first object's
    r = await http.post("/iiif/manifests", json={"build": {"objects": ["flat"], "id": "my-flat"}},
                        headers=BOB)  # fmt: skip
    assert r.status_code == 201
    assert await label_of(http, "flat") == "Flat (official)"


async def test_no_ids_inside_another_manifests_urls(http: httpx.AsyncClient) -> None:
    # The review's request: bob claims the canvas URL of the catalogue manifest "flat".
    canvas = "/iiif/manifests/flat/canvas/1"
    r = await http.put(canvas, json=fake("flat/canvas/1", "Squatted canvas URI"), headers=BOB)
    assert r.status_code == 403
    assert r.text == 'only editors may use "/" in a manifest id\n'
    r = await http.put(canvas, json=fake("flat/canvas/1", "Squatted"), headers=EDITOR)
    assert r.status_code == 409
    assert r.text == "manifest id 'flat/canvas/1' collides with the URLs of 'flat'\n"
    assert (await http.get(canvas)).status_code == 404
    # Around an existing id, too: "books/1" exists, so "books" would own its URLs.
    assert (
        await http.put("/iiif/manifests/books/1", json=fake("b", "B"), headers=EDITOR)
    ).status_code == 201
    assert (
        await http.put("/iiif/manifests/books", json=fake("b", "B"), headers=EDITOR)
    ).status_code == 409
    assert (
        await http.put("/iiif/manifests/books-2", json=fake("b", "B"), headers=ALICE)
    ).status_code == 201


async def test_ingest_displaces_an_earlier_upload(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The review's attack: bob pre-registers the id of a future catalogue object.
    r = await http.put(
        "/iiif/manifests/codex-17", json=fake("codex-17", "Fake: Codex 17"), headers=BOB
    )
    assert r.status_code == 201
    assert await label_of(http, "codex-17") == "Fake: Codex 17"
    ingest(settings, tmp_path, "codex-17", "Codex 17 (official)")
    with caplog.at_level(logging.WARNING, logger="iiifsrv.presentation"):
        assert await label_of(http, "codex-17") == "Codex 17 (official)"
    assert "catalogue object 'codex-17' now owns the manifest id 'codex-17'" in caplog.text
    displaced = list((settings.data_path / "displaced").iterdir())
    assert len(displaced) == 1 and displaced[0].name.startswith("codex-17.")
    assert json.loads(displaced[0].read_bytes())["label"] == {"en": ["Fake: Codex 17"]}
    r = await http.put("/iiif/manifests/codex-17", json=fake("codex-17", "Again"), headers=BOB)
    assert r.status_code == 409


async def test_an_editors_override_stays_and_is_logged(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = await http.put("/iiif/manifests/map-9", json=fake("map-9", "Curated map"), headers=EDITOR)
    assert r.status_code == 201
    ingest(settings, tmp_path, "map-9", "Map 9 (catalogue)")
    with caplog.at_level(logging.WARNING, logger="iiifsrv.presentation"):
        assert await label_of(http, "map-9") == "Curated map"
    assert "manifest 'map-9' stays as the editor 'ed' uploaded it" in caplog.text


async def test_ingest_displaces_an_earlier_build(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    build = {"build": {"objects": ["flat"], "id": "codex-18", "label": "Bob's codex 18"}}
    assert (await http.post("/iiif/manifests", json=build, headers=BOB)).status_code == 201
    ingest(settings, tmp_path, "codex-18", "Codex 18 (official)")
    # The build's own object changes in the same sync (written as ingest writes it, with a
    # later time stamp than this second's): the displaced build is not rebuilt over the
    # catalogue's manifest.
    catalogue = Catalogue(settings.data_path / "catalogue.sqlite3")
    flat = catalogue.get("flat")
    assert flat is not None
    catalogue.upsert(
        dataclasses.replace(flat, label="Flat (relabelled)", updated="2099-01-01T00:00:00Z")
    )
    assert await label_of(http, "codex-18") == "Codex 18 (official)"
    assert await label_of(http, "flat") == "Flat (relabelled)"
