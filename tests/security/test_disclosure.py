"""Disclosure (security review #9, #14, #15, #16): no exception text, path or database error
in a response body; one answer for "missing" and "not an image"; hidden (dot) folders are not
served; no version banner; nosniff on every response."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from iiifsrv import __version__
from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.settings import Settings, load
from iiifsrv.web.app import create_app
from tests.conftest import quadrants

LEAKS = ("Traceback", "index out of range", "Vips", "SIZ", "Command", "/tmp", "psycopg")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("disclosure")
    images = base / "images"
    (images / ".private").mkdir(parents=True)
    q = quadrants(300, 200)
    q.tiffsave(str(images / "good.tif"), tile=True, pyramid=True, compression="jpeg")
    (images / "trunc.tif").write_bytes((images / "good.tif").read_bytes()[:300])
    q.pngsave(str(images / "good.png"))
    (images / "bad.png").write_bytes((images / "good.png").read_bytes()[:60])
    q.jp2ksave(str(images / "good.jp2"), lossless=True)
    jp2 = (images / "good.jp2").read_bytes()
    (images / "bad.jp2").write_bytes(jp2[:40] + b"\xff" * 8 + jp2[48:90])
    (images / "notes.png").write_text("these are notes, not an image")
    q.pngsave(str(images / ".private" / "embargoed.png"))
    q.pngsave(str(images / ".hidden.png"))
    (base / "outside.png").write_bytes((images / "good.png").read_bytes())
    os.symlink(base / "outside.png", images / "link-out.png")
    return base


@pytest.fixture
def settings(root: Path, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    Catalogue(data / "catalogue.sqlite3").upsert(
        CatalogueObject(
            id="codex-17",
            label="Codex 17",
            kind="image",
            image="good",
            width=300,
            height=200,
            source="/srv/masters/scans/codex-17.tif",
        )
    )
    return load(overrides={"images": str(root / "images"), "data": str(data)})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("trunc.tif", "cannot read this TIFF file"),
        ("bad.png", "cannot read this png file"),
        ("bad.jp2", "cannot read this JPEG2000 file"),
    ],
)
async def test_unreadable_files_get_a_generic_message(
    client: httpx.AsyncClient, identifier: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    for path in ("info.json", "full/max/0/default.jpg"):
        response = await client.get(f"/iiif/3/{identifier}/{path}")
        assert (response.status_code, response.text) == (501, message + "\n")
    assert identifier in caplog.text  # the detail is for the operator's log


@pytest.mark.parametrize(
    "identifier",
    [
        "notes.png",  # a file that is not an image
        "notes",  # the same, found by its stem
        "link-out.png",  # a symlink out of the root
        ".private%2Fembargoed.png",  # a hidden folder
        ".private%2Fembargoed",
        ".hidden.png",
        ".hidden",
    ],
)
async def test_one_answer_for_missing_and_not_servable(
    client: httpx.AsyncClient, identifier: str
) -> None:
    """Nothing tells an existing non-image or hidden file from a missing one."""
    missing = await client.get("/iiif/3/no-such-file.png/info.json")
    assert missing.status_code == 404
    for version in (3, 2):
        for path in ("info.json", "full/max/0/default.png"):
            response = await client.get(f"/iiif/{version}/{identifier}/{path}")
            assert response.status_code == 404
            shown = response.text.replace(repr(identifier.replace("%2F", "/")), "ID")
            assert shown == missing.text.replace("'no-such-file.png'", "ID")


async def test_no_version_banner(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.json() == {"status": "ok"}
    landing = await client.get("/")
    assert landing.status_code == 200
    assert __version__ not in landing.text


async def test_objects_do_not_show_the_master_path(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/objects")).json()
    href = listing["objects"][0]["href"]
    response = await client.get(href)
    assert response.status_code == 200
    assert response.json()["source"] == "codex-17.tif"
    assert "/srv/masters" not in response.text


async def test_nosniff_on_every_response(client: httpx.AsyncClient) -> None:
    requests = [
        ("GET", "/iiif/3/good/info.json"),
        ("GET", "/iiif/3/good/info.json"),  # now from the hot cache
        ("GET", "/iiif/2/good/info.json"),
        ("HEAD", "/iiif/3/good/info.json"),
        ("GET", "/iiif/3/good/full/64,/0/default.jpg"),
        ("GET", "/iiif/3/good/full/64,/0/default.jpg"),
        ("GET", "/iiif/3/good"),  # 303
        ("GET", "/iiif/3/nothing/info.json"),  # 404
        ("GET", "/iiif/3/good/full/max/0/default.xyz"),  # 400
        ("OPTIONS", "/iiif/3/good/info.json"),
        ("GET", "/health"),
        ("GET", "/"),
        ("GET", "/iiif/collection"),
        ("GET", "/objects"),
        ("GET", "/objects/none"),
        ("GET", "/media/none.mp4"),
        ("GET", "/annotations/search/2/x?q=a"),
        ("GET", "/no/such/route"),
        ("DELETE", "/iiif/manifests/x"),  # 401
    ]
    etag = ""
    for method, path in requests:
        response = await client.request(method, path)
        assert response.headers.get("x-content-type-options") == "nosniff", (method, path)
        assert_no_leak(response.text)
        if path == "/iiif/3/good/info.json" and method == "GET":
            etag = response.headers["etag"]
    not_modified = await client.get("/iiif/3/good/info.json", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["x-content-type-options"] == "nosniff"


async def test_database_errors_are_not_shown(tmp_path: Path) -> None:
    """PostgreSQL unreachable: a one-line 503, no host, port or libpq text (waits the pool's
    5 s start-up timeout once)."""
    from iiifsrv.annotations.postgres import UNAVAILABLE

    settings = load(
        overrides={
            "images": str(tmp_path),
            "data": str(tmp_path / "data"),
            "database_url": "postgresql://nobody@127.0.0.1:1/test",
            "annotation_canvases": "any",
        }
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/annotations/search/2/aHR0cDovL3gvbQ?q=word")
    assert (response.status_code, response.text) == (503, UNAVAILABLE + "\n")
    assert "127.0.0.1" not in UNAVAILABLE and "nobody" not in UNAVAILABLE


async def test_database_data_errors_are_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    """A value PostgreSQL refuses (class 22, data exception): a fixed 400, the text logged."""
    psycopg = pytest.importorskip("psycopg")
    from iiifsrv.annotations.postgres import PostgresStore
    from iiifsrv.errors import BadRequest
    from tests.annotations.conftest import PG_SERVER

    try:
        psycopg.connect(PG_SERVER, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_SERVER} unreachable: {exc}")
    schema = f"iiifsrv_disclosure_{os.getpid()}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    store = PostgresStore(f"{PG_SERVER}?options=-csearch_path%3D{schema}")
    try:
        with pytest.raises(BadRequest) as caught:
            await store._one("SELECT 1 / %s", (0,))
        assert caught.value.message == "a value in this annotation cannot be stored"
        assert "division by zero" in caplog.text
    finally:
        await store.close()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
