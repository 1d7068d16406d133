"""OCR built in, on SQLite and PostgreSQL: a page rendered with known text (DejaVu Serif) is read
by ``iiifsrv enrich ocr``; every line is found, character accuracy is at least 98 %, each line's
box lies within a few pixels of where it was drawn; a client following the manifest's links finds
the ALTO and hOCR files and, through Content Search 2.0 and 1.0, every word on its line. Reruns
are idempotent; an interrupted object is done again; a terminal shows a progress bar; the lines
are the OCR agent's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iiifsrv import cli
from iiifsrv.agents import ocr
from iiifsrv.annotations.model import words
from iiifsrv.catalogue import CatalogueObject
from iiifsrv.samples import PRINTED_ID, PRINTED_TEXT, printed_page
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from iiifsrv.web.app import create_app

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")

OBJECT = "page-known-text"
TEXT = (
    "It was the best of times, it was the worst of times,",
    "it was the age of wisdom, it was the age of foolishness,",
    "it was the epoch of belief, it was the epoch of incredulity,",
    "it was the season of Light, it was the season of Darkness,",
    "it was the spring of hope, it was the winter of despair.",
    "Charles Dickens, A Tale of Two Cities, London 1859.",
)
BOX_TOLERANCE = 4  # pixels


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def make_page(settings: Settings) -> list[tuple[int, int, int, int]]:
    page, boxes = printed_page(TEXT, size=36, margin=90)
    settings.images_path.mkdir(parents=True, exist_ok=True)
    page.tiffsave(str(settings.images_path / f"{OBJECT}.tif"), tile=True, pyramid=True)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    state = open_state(settings)  # the server's catalogue: SQLite in data, or PostgreSQL
    state.catalogue.upsert(
        CatalogueObject(
            id=OBJECT,
            label="A page of Dickens",
            kind="image",
            image=OBJECT,
            source=f"{OBJECT}.tif",
            width=page.width,
            height=page.height,
        )  # fmt: skip
    )
    return boxes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclasses.dataclass
class Site:
    client: httpx.AsyncClient
    settings: Settings
    boxes: list[tuple[int, int, int, int]]


@pytest.fixture
async def site(backend_settings: Settings) -> AsyncIterator[Site]:
    settings = dataclasses.replace(backend_settings, annotation_canvases="known")
    boxes = make_page(settings)
    out = io.StringIO()
    # A blocking command (it runs its own event loop): off this test's loop, as from a shell.
    results = await asyncio.to_thread(
        lambda: ocr.run(settings, [OBJECT], jobs=1, out=out, err=io.StringIO())
    )
    assert [(r.object_id, r.status) for r in results] == [(OBJECT, "done")], out.getvalue()
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:  # fmt: skip
        yield Site(client, settings, boxes)
    await app.state.annotation_store.close()


async def get(c: httpx.AsyncClient, url: str, **params: str) -> Any:
    r = await c.get(url, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


async def manifest_of(c: httpx.AsyncClient) -> dict[str, Any]:
    collection = await get(c, "http://test/iiif/collection")
    (ref,) = [i for i in collection["items"] if i["type"] == "Manifest"]
    manifest: dict[str, Any] = await get(c, ref["id"])
    return manifest


def xywh(target: Any) -> tuple[int, ...]:
    text = target if isinstance(target, str) else target["selector"]["value"]
    return tuple(int(v) for v in text.split("xywh=")[1].split(","))


def near(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(p - q) <= BOX_TOLERANCE for p, q in zip(a, b, strict=True))


async def test_every_line_found_accurately_where_drawn(site: Site) -> None:
    c = site.client
    manifest = await manifest_of(c)
    canvas = manifest["items"][0]
    page = await get(c, canvas["annotations"][0]["id"])
    lines = page["items"]
    assert len(lines) == len(TEXT)
    errors = sum(levenshtein(a["body"]["value"], t) for a, t in zip(lines, TEXT, strict=True))
    accuracy = 1 - errors / sum(len(t) for t in TEXT)
    assert accuracy >= 0.98, [a["body"]["value"] for a in lines]
    for anno, box in zip(lines, site.boxes, strict=True):
        assert anno["motivation"] == "supplementing" and anno["textGranularity"] == "line"
        assert near(xywh(anno["target"]), box), (anno["target"], box)
        assert anno["target"]["source"]["id"] == canvas["id"]
        assert 0 < anno["confidence"] <= 1
        assert len(anno["wordConfidence"]) == len(anno["body"]["value"].split())
        assert anno["creator"] == {"id": "http://test/agents/ocr", "type": "Software",
                                   "name": "ocr", "nickname": "ocr"}  # fmt: skip
        assert anno["generator"]["name"].startswith("tesseract 5.")
    # ALTO and hOCR are linked from the canvas, and served.
    (alto,) = canvas["seeAlso"]
    assert alto["profile"] == "http://www.loc.gov/standards/alto/"
    r = await c.get(alto["id"])
    assert r.status_code == 200 and b"<alto" in r.content and b"Dickens" in r.content
    (hocr,) = canvas["rendering"]
    r = await c.get(hocr["id"])
    assert r.headers["content-type"].startswith("text/vnd.hocr+html")
    assert b"ocrx_word" in r.content


async def test_content_search_finds_every_word_on_its_line(site: Site) -> None:
    c = site.client
    manifest = await manifest_of(c)
    services: dict[str, Any] = {}
    for s in manifest["service"]:  # the first of each type: the word search (semantic follows)
        services.setdefault(s.get("type", s.get("@type")), s)
    s2, s1 = services["SearchService2"]["id"], services["SearchService1"]["@id"]
    for number, (text, box) in enumerate(zip(TEXT, site.boxes, strict=True)):
        for word in set(words(text)):
            found = await get(c, s2, q=word)
            boxes = [xywh(a["target"]) for a in found["items"]]
            assert any(near(b, box) for b in boxes), (word, number, boxes, box)
            assert found["annotations"][0]["items"][0]["motivation"] == "highlighting"
            v1 = await get(c, s1, q=word)
            assert any(near(xywh(r["on"]), box) for r in v1["resources"]), (word, v1)
            assert all(word in r["resource"]["chars"].lower() for r in v1["resources"])
    # Only the machine's lines, by the agent's URI; none of a person's.
    machine = await get(c, s2, q="dickens", user="http://test/agents/ocr")
    assert len(machine["items"]) == 1
    assert (await get(c, s2, q="dickens", user="http://test/users/alice"))["items"] == []


async def test_rerun_is_idempotent_and_resumes(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    c, settings = site.client, site.settings
    if settings.database_url:  # the command reads the store's URL as the server does
        monkeypatch.setenv("IIIFSRV_DATABASE_URL", settings.database_url)
    canvas = (await manifest_of(c))["items"][0]
    container = (await get(c, canvas["annotations"][0]["id"]))["partOf"][0]["id"]
    first = [a["id"] for a in (await get(c, canvas["annotations"][0]["id"]))["items"]]
    out = io.StringIO()
    again = await asyncio.to_thread(
        lambda: ocr.run(settings, [OBJECT], jobs=1, out=out, err=io.StringIO())
    )
    assert [r.status for r in again] == ["unchanged"]
    assert [a["id"] for a in (await get(c, canvas["annotations"][0]["id"]))["items"]] == first
    # --force redoes it; on a terminal the run draws its progress bar (stderr).
    terminal = Terminal()
    forced = await asyncio.to_thread(
        lambda: ocr.run(settings, [OBJECT], jobs=1, force=True, out=out, err=terminal)
    )
    assert [r.status for r in forced] == ["done"]
    assert f"\r[{'#' * 30}] 1/1 {OBJECT}" in terminal.getvalue()
    assert (await get(c, container))["total"] == len(TEXT)
    # Interrupted after its lines were stored but before the object was marked done: the next
    # run does it again, replacing (not doubling) its lines; the old ones are kept, as Gone.
    (settings.data_path / "ocr" / OBJECT / "state.json").unlink()
    args = ["enrich", "ocr", "--all", "--data", str(settings.data_path),
            "--images", str(settings.images_path)]  # fmt: skip
    assert await asyncio.to_thread(cli.main, args) == 0
    assert (await get(c, container))["total"] == len(TEXT)
    assert (await c.get(first[0])).status_code == 410


def test_cli_refuses_unknown_languages_and_objects(tmp_path: Path) -> None:
    paths = ["--data", str(tmp_path / "d"), "--images", str(tmp_path / "i")]
    assert cli.main(["enrich", "ocr", "--all", "--lang", "klingon", *paths]) == 2
    assert cli.main(["enrich", "ocr", *paths]) == 2
    assert cli.main(["enrich", "ocr", "nothing-here", *paths]) == 1


async def test_the_sample_collection_has_its_printed_page_read(tmp_path: Path) -> None:
    """``iiifsrv samples`` (what scripts/serve runs first) reads the printed page, so its words
    are found by the manifest's search as soon as the server is up."""
    images, data = tmp_path / "images", tmp_path / "data"
    args = ["samples", "--images", str(images), "--data", str(data), "--small"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(cli.main, args) == 0
    assert f"OCR of {PRINTED_ID}: done" in out.getvalue()
    app = create_app(Settings(images=str(images), data=str(data)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:  # fmt: skip
        collection = await get(c, "http://test/iiif/collection")
        (ref,) = [i for i in collection["items"] if i["label"]["en"][0].startswith("Printed")]
        manifest = await get(c, ref["id"])
        (s2,) = [s["id"] for s in manifest["service"]
                 if s.get("type") == "SearchService2" and "label" not in s]  # fmt: skip
        found = await get(c, s2, q="score")
        assert [a["body"]["value"] for a in found["items"]] == [PRINTED_TEXT[0]]
        assert found["items"][0]["creator"]["type"] == "Software"
    await app.state.annotation_store.close()
