"""Perceptual hashes of the catalogue's images (visual similarity): one row per object with the
object version it was computed on, beside the catalogue (same SQLite file, or PostgreSQL).

Blocking I/O; imports the standard library and iiifsrv.database (similarity.hashes_for picks
the backend that matches the catalogue's).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from iiifsrv.database import Database

MASK64 = (1 << 64) - 1
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_hashes (
    object_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    phash INTEGER NOT NULL,
    dhash INTEGER NOT NULL
);
"""
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS iiifsrv_image_hashes (
    object_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    phash BIGINT NOT NULL,
    dhash BIGINT NOT NULL
);
"""


@dataclass(frozen=True)
class ImageHash:
    """Perceptual hashes (64-bit pHash and dHash) of an object's image, for one version."""

    object_id: str
    version: str
    phash: int
    dhash: int


def signed(value: int) -> int:
    """A 64-bit hash as a signed 64-bit integer column (and back with ``& MASK64``)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _hash(row: tuple[str, str, int, int]) -> ImageHash:
    return ImageHash(row[0], row[1], row[2] & MASK64, row[3] & MASK64)


class Hashes(Protocol):
    def get(self, object_id: str) -> ImageHash | None: ...

    def all(self) -> list[ImageHash]: ...

    def put(self, found: ImageHash) -> None: ...


class SqliteHashes:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.executescript(SQLITE_SCHEMA)
            self._local.db = db
        return db

    def get(self, object_id: str) -> ImageHash | None:
        row = (
            self._db()
            .execute(
                "SELECT object_id, version, phash, dhash FROM image_hashes WHERE object_id = ?",
                (object_id,),
            )
            .fetchone()
        )
        return _hash(row) if row else None

    def all(self) -> list[ImageHash]:
        rows = self._db().execute("SELECT object_id, version, phash, dhash FROM image_hashes")
        return [_hash(r) for r in rows]

    def put(self, found: ImageHash) -> None:
        self._db().execute(
            "INSERT INTO image_hashes (object_id, version, phash, dhash) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(object_id) DO UPDATE SET version=excluded.version, "
            "phash=excluded.phash, dhash=excluded.dhash",
            (found.object_id, found.version, signed(found.phash), signed(found.dhash)),
        )


class PostgresHashes:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _conn(self) -> Database:
        self.database.ensure("image_hashes", POSTGRES_SCHEMA)
        return self.database

    def get(self, object_id: str) -> ImageHash | None:
        with self._conn().connection() as conn:
            row = conn.execute(
                "SELECT object_id, version, phash, dhash FROM iiifsrv_image_hashes"
                " WHERE object_id = %s",
                (object_id,),
            ).fetchone()
        return _hash(row) if row else None

    def all(self) -> list[ImageHash]:
        with self._conn().connection() as conn:
            rows = conn.execute(
                "SELECT object_id, version, phash, dhash FROM iiifsrv_image_hashes"
            ).fetchall()
        return [_hash(r) for r in rows]

    def put(self, found: ImageHash) -> None:
        with self._conn().connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO iiifsrv_image_hashes (object_id, version, phash, dhash)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (object_id) DO UPDATE SET"
                " version = excluded.version, phash = excluded.phash, dhash = excluded.dhash",
                (found.object_id, found.version, signed(found.phash), signed(found.dhash)),
            )
