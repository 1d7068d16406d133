"""A client's journey, following only the links the server publishes: collection → manifest →
canvas → its annotation page → the page's container (partOf) → POST there; then every writer
(W3C, Annotot, SimpleAnnotationServer) × every reader (the manifest's page, Content Search 2.0
and 1.0 found in the manifest's ``service``), each annotation found at once under the canvas id
the reader's manifest shows. Run with no public_url, with a public_url behind a proxy, and on a
real uvicorn reached under two host names; on SQLite and on PostgreSQL.

The one URL written here is the entry point, ``/iiif/collection``, plus the Annotot and SAS
endpoints (which Mirador's adapters take as configuration, not from a link).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.migrate import migrate
from iiifsrv.presentation.store import STORED_BASE
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.conftest import start_server, stop_server

PG_SERVER = os.environ.get("IIIFSRV_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "journey-token-Zq8vN2kLx4Rw7Ty"  # load() refuses short tokens
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LABEL = "A flat image for the journey"
# The internal base must never reach a client, not even base64-encoded inside a URL segment.
LEAKS = (
    STORED_BASE,
    "iiifsrv.invalid",
    base64.urlsafe_b64encode(f"{STORED_BASE}/".encode()).decode()[:30],
)


# ---- the server's data: one catalogue object, so one manifest with one canvas -------------


def make_tree(root: Path) -> tuple[Path, Path]:
    images, data = root / "images", root / "data"
    images.mkdir(parents=True)
    data.mkdir()
    pyvips.Image.black(64, 48).add(120).cast("uchar").jpegsave(str(images / "flat.jpg"))
    catalogue = Catalogue(data / "catalogue.sqlite3")
    catalogue.upsert(
        CatalogueObject(
            id="flat",
            label=LABEL,
            kind="image",
            image="flat",
            width=64,
            height=48,
            updated="2026-01-01T00:00:00Z",
        )
    )
    return images, data


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """ "" for SQLite in the data folder, else a fresh schema in the real PostgreSQL."""
    if request.param == "sqlite":
        yield ""
        return
    import psycopg

    schema = f"iiifsrv_journey_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        conn = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_SERVER} unreachable: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ---- a client that follows links ---------------------------------------------------------


@dataclass
class Way:
    """How one client reaches the server: every link it is given starts with ``public``; it
    sends requests through ``client`` (whose base_url is where it connects) with ``host``."""

    client: httpx.AsyncClient
    public: str
    host: str | None = None

    def _target(self, url: str) -> str:
        assert url.startswith(self.public + "/"), f"{url} is not under {self.public}"
        return url[len(self.public) :]

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **({"Host": self.host} if self.host else {})}
        r = await self.client.request(method, self._target(url), headers=headers, **kwargs)
        for leak in LEAKS:
            assert leak not in r.text, f"{method} {url} shows {leak}: {r.text[:300]}"
        return r

    async def get(self, url: str, **kwargs: Any) -> Any:
        r = await self.request("GET", url, **kwargs)
        assert r.status_code == 200, (url, r.status_code, r.text)
        return r.json()


@dataclass
class Found:
    """What a client learns from the links: the manifest, its canvas, page and container."""

    manifest: dict[str, Any]
    canvas: str
    page: str
    container: str


async def discover(way: Way) -> Found:
    collection = await way.get(f"{way.public}/iiif/collection")
    refs = [i for i in collection["items"] if i["type"] == "Manifest"]
    ref = next(i for i in refs if i["label"]["en"] == [LABEL])
    manifest = await way.get(ref["id"])
    canvas = manifest["items"][0]
    assert canvas["id"].startswith(way.public + "/"), canvas["id"]
    page_ref = canvas["annotations"][0]
    assert page_ref["type"] == "AnnotationPage"
    page = await way.get(page_ref["id"])
    assert page["id"] == page_ref["id"]
    container = page["partOf"][0]["id"]
    listing = await way.get(container)
    assert listing["id"] == container
    assert listing["label"] == f"Annotations on {canvas['id']}"
    return Found(manifest, canvas["id"], page_ref["id"], container)


def target(canvas: str, manifest: str, xywh: str) -> dict[str, Any]:
    return {
        "type": "SpecificResource",
        "source": {
            "id": canvas,
            "type": "Canvas",
            "partOf": [{"id": manifest, "type": "Manifest"}],
        },
        "selector": {"type": "FragmentSelector", "value": f"xywh={xywh}"},
    }


def w3c_doc(word: str, canvas: str, manifest: str) -> dict[str, Any]:
    return {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": f"written by {word}", "format": "text/plain"},
        "target": target(canvas, manifest, "1,2,30,20"),
    }


# ---- the three writers ---------------------------------------------------------------------


async def write_w3c(way: Way, found: Found, word: str) -> None:
    doc = w3c_doc(word, found.canvas, found.manifest["id"])
    r = await way.request("POST", found.container, json=doc, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.headers["location"].startswith(found.container)
    assert r.json()["target"]["source"]["id"] == found.canvas


async def write_annotot(way: Way, found: Found, word: str) -> None:
    uuid = f"{found.canvas}/annotation/{secrets.token_hex(4)}"
    data = {**w3c_doc(word, found.canvas, found.manifest["id"]), "id": uuid}
    body = {"annotation": {"canvas": found.canvas, "data": json.dumps(data), "uuid": uuid}}
    r = await way.request("POST", f"{way.public}/annotot", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    listed = await way.get(f"{way.public}/annotot/pages", params={"uri": found.canvas})
    assert uuid in [a["id"] for a in listed["items"]]


async def write_sas(way: Way, found: Found, word: str) -> None:
    oa = {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@type": "oa:Annotation",
        "motivation": ["oa:commenting"],
        "resource": [{"@type": "dctypes:Text", "chars": f"written by {word}"}],
        "on": [
            {
                "@type": "oa:SpecificResource",
                "full": found.canvas,
                "selector": {"@type": "oa:FragmentSelector", "value": "xywh=1,2,30,20"},
                "within": {"@id": found.manifest["id"], "@type": "sc:Manifest"},
            }
        ],
    }
    r = await way.request("POST", f"{way.public}/sas/create", json=oa, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["on"][0]["full"] == found.canvas


WRITERS = {"w3c": write_w3c, "annotot": write_annotot, "sas": write_sas}


# ---- the readers: each returns {word: canvas id the annotation targets} ----------------------


def _word(text: str) -> str:
    return text.removeprefix("written by ").split()[0]


def _canvas_of(anno_target: Any) -> str:
    if isinstance(anno_target, str):
        return anno_target.split("#", 1)[0]
    source = anno_target["source"]
    return str(source if isinstance(source, str) else source["id"])


async def read_page(way: Way, found: Found) -> dict[str, str]:
    page = await way.get(found.page)
    return {_word(a["body"]["value"]): _canvas_of(a["target"]) for a in page["items"]}


def _service(manifest: dict[str, Any], kind: str) -> str:
    for service in manifest.get("service", []):
        if service.get("type", service.get("@type")) == kind:
            return str(service.get("id", service.get("@id")))
    raise AssertionError(f"the manifest declares no {kind}")


async def read_search2(way: Way, found: Found) -> dict[str, str]:
    url = _service(found.manifest, "SearchService2")
    page = await way.get(url, params={"q": "written"})
    return {_word(a["body"]["value"]): _canvas_of(a["target"]) for a in page["items"]}


async def read_search1(way: Way, found: Found) -> dict[str, str]:
    url = _service(found.manifest, "SearchService1")
    listing = await way.get(url, params={"q": "written"})
    return {_word(a["resource"]["chars"]): _canvas_of(a["on"]) for a in listing["resources"]}


async def read_annotot(way: Way, found: Found) -> dict[str, str]:
    page = await way.get(f"{way.public}/annotot/pages", params={"uri": found.canvas})
    return {_word(a["body"]["value"]): _canvas_of(a["target"]) for a in page["items"]}


async def read_sas(way: Way, found: Found) -> dict[str, str]:
    found_ = await way.get(f"{way.public}/sas/search", params={"uri": found.canvas})
    return {_word(a["resource"]["chars"]): a["on"][0]["full"] for a in found_}


READERS = {
    "page": read_page,
    "search2": read_search2,
    "search1": read_search1,
    "annotot": read_annotot,
    "sas": read_sas,
}


async def journey(writer_way: Way, reader_ways: list[Way], tag: str = "", before: int = 0) -> None:
    """Every writer through ``writer_way``; after each write, every reader through every way
    sees every annotation written so far (``before`` of them earlier), on the canvas as that
    way's manifest names it."""
    found = await discover(writer_way)
    for name, write in WRITERS.items():
        await write(writer_way, found, name + tag)
        for way in reader_ways:
            seen = await discover(way)
            for reader, read in READERS.items():
                got = await read(way, seen)
                assert name + tag in got, (name, reader, way.public, got)
                assert set(got.values()) == {seen.canvas}, (name, reader, way.public, got)
                assert len(got) == before + list(WRITERS).index(name) + 1, (reader, got)


# ---- the runs ------------------------------------------------------------------------------


@pytest.fixture
async def asgi(tmp_path: Path) -> AsyncIterator[Any]:
    images, data = make_tree(tmp_path)

    async def make(**settings: str) -> Any:
        if settings.get("database_url"):  # the state lives in PostgreSQL: move it there
            assert all(o.problems == [] for o in migrate(data, settings["database_url"]))
        app = create_app(
            Settings(images=str(images), data=str(data), tokens=f"{TOKEN}=alice", **settings)
        )
        apps.append(app)
        return app

    apps: list[Any] = []
    yield make
    for app in apps:
        await app.state.annotation_store.close()


async def test_journey_without_public_url(asgi: Any, database_url: str) -> None:
    app = await asgi(database_url=database_url)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        await journey(Way(c, "http://testserver"), [Way(c, "http://testserver")])


async def test_journey_with_public_url_behind_a_proxy(asgi: Any, database_url: str) -> None:
    public = "https://images.example.org/collections"
    app = await asgi(database_url=database_url, public_url=public)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://backend:8080") as c:
        await journey(Way(c, public), [Way(c, public)])


async def test_journey_under_two_host_names_on_uvicorn(tmp_path: Path, database_url: str) -> None:
    images, data = make_tree(tmp_path)
    if database_url:
        assert all(o.problems == [] for o in migrate(data, database_url))
    env = {"IIIFSRV_TOKENS": f"{TOKEN}=alice", "IIIFSRV_DATABASE_URL": database_url}
    server = start_server(images, data, env=env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            numeric = Way(c, server.url)
            named = Way(c, f"http://localhost:{server.port}", host=f"localhost:{server.port}")
            # Written under one name, read under both; then the other way round.
            await journey(numeric, [numeric, named])
            await journey(named, [named, numeric], tag="again", before=len(WRITERS))
            assert (await discover(numeric)).canvas != (await discover(named)).canvas
    finally:
        stop_server(server)
