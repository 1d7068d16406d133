"""Fixtures: settings per state backend (SQLite and files in a data directory, or a schema of
its own in the real PostgreSQL at 127.0.0.1:5432), an app client, a state of a second
"replica" on the same backend."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import Settings
from iiifsrv.web.app import Front, create_app

PG_SERVER = os.environ.get("IIIFSRV_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKENS = "alice-token=alice,bob-token=bob,ed-token=ed:editor"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
EDITOR = {"Authorization": "Bearer ed-token"}
BASE = "http://test"


def pg_url(schema: str) -> str:
    return f"{PG_SERVER}?options=-csearch_path%3D{schema}"


def new_schema() -> str:
    """A fresh schema in the real server (skipped when it is unreachable, failed in CI)."""
    import psycopg

    schema = f"iiifsrv_state_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_SERVER} unreachable: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = new_schema()
    yield schema
    drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    images = tmp_path / "images"
    images.mkdir()
    database_url = ""
    if backend == "postgres":
        database_url = pg_url(request.getfixturevalue("pg_schema"))
    return Settings(
        images=str(images),
        data=str(tmp_path / "data"),
        tokens=TOKENS,
        database_url=database_url,
        public_url=BASE,
    )


@pytest.fixture
def replica_settings(state_settings: Settings, tmp_path: Path) -> Settings:
    """A second replica's settings: the same database, but a data directory of its own when
    the state is in PostgreSQL (replicas share nothing on disk); the same one with SQLite."""
    if not state_settings.database_url:
        return state_settings
    other = tmp_path / "replica-b"
    (other / "images").mkdir(parents=True)
    return Settings(
        images=str(other / "images"),
        data=str(other / "data"),
        tokens=TOKENS,
        database_url=state_settings.database_url,
        public_url=BASE,
    )


async def _client(app: Front) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c
    await app.state.annotation_store.close()
    app.state.state.close()


@pytest.fixture
async def client(state_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_app(state_settings)):
        yield c


@pytest.fixture
async def client_b(replica_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_app(replica_settings)):
        yield c


def manifest(name: str, canvases: int = 2, label: str = "A test manifest") -> dict[str, object]:
    """A small valid Presentation 3 manifest whose ids are under this server's base."""
    mid = f"{BASE}/iiif/manifests/{name}"
    items = []
    for i in range(1, canvases + 1):
        canvas = f"{mid}/canvas/{i}"
        items.append(
            {
                "id": canvas,
                "type": "Canvas",
                "height": 100,
                "width": 80,
                "items": [
                    {
                        "id": f"{canvas}/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas}/page/image",
                                "type": "Annotation",
                                "motivation": "painting",
                                "body": {
                                    "id": f"https://example.org/{name}/{i}.jpg",
                                    "type": "Image",
                                    "format": "image/jpeg",
                                },
                                "target": canvas,
                            }
                        ],
                    }
                ],
            }
        )
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": mid,
        "type": "Manifest",
        "label": {"en": [label]},
        "items": items,
    }
