"""Where the embeddings live: a table ``annotation_vectors`` beside the annotations, in the same
SQLite file or PostgreSQL schema (vector = float32 little-endian blob). Every write takes a new
``stamp``, so each server process can read what others wrote since it last looked; a removed
annotation leaves a row without a vector (a tombstone) for the same reason.

Blocking sqlite3 in threads, psycopg async; imports numpy and settings.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from iiifsrv.settings import Settings

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotation_vectors (
    key TEXT PRIMARY KEY,
    stamp INTEGER NOT NULL,
    canvas TEXT NOT NULL,
    manifest TEXT NOT NULL,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS annotation_vectors_stamp ON annotation_vectors (stamp);
"""

POSTGRES_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS annotation_vectors_stamp;
CREATE TABLE IF NOT EXISTS annotation_vectors (
    key TEXT PRIMARY KEY,
    stamp BIGINT NOT NULL,
    canvas TEXT NOT NULL,
    manifest TEXT NOT NULL,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    vector BYTEA
);
CREATE INDEX IF NOT EXISTS annotation_vectors_stamp_idx ON annotation_vectors (stamp);
"""
# Serialises the schema creation of concurrent workers (any constant unlike the store's).
SCHEMA_LOCK = 0x1F5E_3A17
WRITE_LOCK = 0x1F5E_3A18


@dataclass(frozen=True)
class Row:
    """One annotation's embedding (``vector`` None: the annotation is gone or has no text)."""

    key: str
    canvas: str
    manifest: str
    model: str
    digest: str
    vector: np.ndarray | None
    stamp: int = 0


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float32)


class Vectors(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, rows: list[Row]) -> None:
        """Upsert in one transaction (a row without vector is a tombstone)."""
        ...

    async def since(self, stamp: int, limit: int = 5000) -> list[Row]:
        """Rows written after ``stamp``, in stamp order."""
        ...


def _row(r: tuple[Any, ...]) -> Row:
    key, stamp, canvas, manifest, model, digest, blob = r
    return Row(key, canvas, manifest, model, digest, from_blob(blob), int(stamp))


COLUMNS = "key, stamp, canvas, manifest, model, digest, vector"


class SqliteVectors:
    """Its own connection to the annotation store's file (WAL: readers never wait)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None, timeout=30
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.executescript(SQLITE_SCHEMA)
                self._conn = conn
            return self._conn

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def put(self, rows: list[Row]) -> None:
        def work() -> None:
            conn = self._open()
            with self._lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    (top,) = conn.execute(
                        "SELECT coalesce(max(stamp), 0) FROM annotation_vectors"
                    ).fetchone()
                    conn.executemany(
                        f"INSERT OR REPLACE INTO annotation_vectors ({COLUMNS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                r.key,
                                top + i + 1,
                                r.canvas,
                                r.manifest,
                                r.model,
                                r.digest,
                                None if r.vector is None else to_blob(r.vector),
                            )  # fmt: skip
                            for i, r in enumerate(rows)
                        ],
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

        if rows:
            await asyncio.to_thread(work)

    async def since(self, stamp: int, limit: int = 5000) -> list[Row]:
        def work() -> list[Row]:
            conn = self._open()
            with self._lock:
                cur = conn.execute(
                    f"SELECT {COLUMNS} FROM annotation_vectors WHERE stamp > ?"
                    " ORDER BY stamp LIMIT ?",
                    (stamp, limit),
                )
                return [_row(r) for r in cur.fetchall()]

        return await asyncio.to_thread(work)


class PostgresVectors:
    """A small pool of its own on the annotation database (the store's schema)."""

    def __init__(self, url: str, *, max_size: int = 2) -> None:
        self.url = url
        self._max_size = max_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        async with self._opening:
            if self._pool is not None:
                return
            pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]
            pool = AsyncConnectionPool(self.url, min_size=1, max_size=self._max_size, open=False)
            try:
                await pool.open(wait=True, timeout=10)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await conn.execute(POSTGRES_SCHEMA)
            except BaseException:
                await pool.close()
                raise
            self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _ready(self) -> AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]:
        await self.open()
        assert self._pool is not None
        return self._pool

    async def put(self, rows: list[Row]) -> None:
        if not rows:
            return
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Writers one at a time, so stamps become visible in order (a reader that saw
            # stamp n never misses a row stamped below n later).
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            await cur.executemany(
                f"INSERT INTO annotation_vectors ({COLUMNS}) VALUES"
                " (%s, nextval('annotation_vectors_stamp'), %s, %s, %s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET stamp = excluded.stamp,"
                " canvas = excluded.canvas, manifest = excluded.manifest,"
                " model = excluded.model, digest = excluded.digest, vector = excluded.vector",
                [
                    (
                        r.key,
                        r.canvas,
                        r.manifest,
                        r.model,
                        r.digest,
                        None if r.vector is None else to_blob(r.vector),
                    )  # fmt: skip
                    for r in rows
                ],
            )

    async def since(self, stamp: int, limit: int = 5000) -> list[Row]:
        pool = await self._ready()
        async with pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM annotation_vectors WHERE stamp > %s"
                " ORDER BY stamp LIMIT %s",
                (stamp, limit),
            )
            return [_row(r) for r in await cur.fetchall()]


def open_vectors(settings: Settings) -> Vectors:
    """Beside the annotation store: PostgreSQL when ``database_url`` is set, else its SQLite."""
    if settings.database_url:
        return PostgresVectors(settings.database_url)
    return SqliteVectors(settings.data_path / "annotations.sqlite3")
