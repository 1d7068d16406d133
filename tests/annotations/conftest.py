"""Shared fixtures: settings per annotation backend (SQLite file, real PostgreSQL schema)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app

PG_SERVER = os.environ.get("IIIFSRV_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKENS = "alice-token=alice,bob-token=bob,ed-token=ed:editor"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
EDITOR = {"Authorization": "Bearer ed-token"}


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A schema of its own for this test run in the real server, dropped afterwards."""
    import psycopg

    schema = f"iiifsrv_test_{os.getpid()}_{secrets.token_hex(4)}"
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
            yield schema
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def pg_url(schema: str) -> str:
    return f"{PG_SERVER}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend; each PostgreSQL test gets a fresh schema of the run's own."""
    images = tmp_path / "images"
    images.mkdir()
    database_url = ""
    if request.param == "postgres":
        import psycopg

        run_schema = request.getfixturevalue("pg_schema")
        schema = f"{run_schema}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        request.addfinalizer(lambda: _drop(schema))
        database_url = pg_url(schema)
    return Settings(
        images=str(images),
        data=str(tmp_path / "data"),
        tokens=TOKENS,
        database_url=database_url,
        annotation_canvases="any",  # these tests annotate synthetic canvases
        public_url="http://test",
    )


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def client(backend_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(backend_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await app.state.annotation_store.close()
