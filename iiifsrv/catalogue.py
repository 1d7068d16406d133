"""The catalogue of objects (images, multispectral sets, audio, video) in SQLite.

Blocking I/O; imports only the standard library. One row per object, JSON for nested fields.
Writes are transactions (WAL): an acknowledged upsert survives a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Band:
    name: str
    wavelength_nm: float | None
    image: str
    label: str


@dataclass(frozen=True)
class Composite:
    name: str
    label: str
    image: str


@dataclass(frozen=True)
class CatalogueObject:
    id: str
    label: str
    kind: str  # "image" | "multispectral" | "audio" | "video"
    metadata: dict[str, str] = field(default_factory=dict)
    rights: str = ""
    source: str = ""
    image: str = ""
    width: int = 0
    height: int = 0
    bands: tuple[Band, ...] = ()
    composites: tuple[Composite, ...] = ()
    media: str = ""
    duration: float | None = None
    content_hash: str = ""
    updated: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CatalogueObject:
        doc = dict(doc)
        doc["bands"] = tuple(Band(**b) for b in doc.get("bands", ()))
        doc["composites"] = tuple(Composite(**c) for c in doc.get("composites", ()))
        doc["metadata"] = dict(doc.get("metadata", {}))
        return cls(**doc)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Catalogue:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def get(self, object_id: str) -> CatalogueObject | None:
        row = (
            self._connect().execute("SELECT doc FROM objects WHERE id = ?", (object_id,)).fetchone()
        )
        return CatalogueObject.from_json(json.loads(row[0])) if row else None

    def list(self) -> list[CatalogueObject]:
        rows = self._connect().execute("SELECT doc FROM objects ORDER BY id").fetchall()
        return [CatalogueObject.from_json(json.loads(r[0])) for r in rows]

    def upsert(self, obj: CatalogueObject) -> None:
        if not obj.updated:
            obj = CatalogueObject.from_json({**obj.to_json(), "updated": now_iso()})
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO objects (id, kind, label, doc, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, label=excluded.label, "
                "doc=excluded.doc, updated=excluded.updated",
                (obj.id, obj.kind, obj.label, json.dumps(obj.to_json()), obj.updated),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def remove(self, object_id: str) -> bool:
        db = self._connect()
        cursor = db.execute("DELETE FROM objects WHERE id = ?", (object_id,))
        return cursor.rowcount > 0
