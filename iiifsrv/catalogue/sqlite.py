"""The catalogue in one SQLite file (the embedded default): objects and fitted transforms.

Blocking I/O; imports the standard library and catalogue.model. One row per object, JSON for
nested fields. Writes are transactions (WAL): an acknowledged upsert survives a crash. Reads of
a catalogue whose file does not exist yet find nothing and create nothing.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from pathlib import Path

from iiifsrv.catalogue.model import CatalogueObject, Transform, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transforms (
    object_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    version TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (object_id, spec)
);
CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO changes (id, n) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS objects_inserted AFTER INSERT ON objects
    BEGIN UPDATE changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS objects_updated AFTER UPDATE ON objects
    BEGIN UPDATE changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS objects_deleted AFTER DELETE ON objects
    BEGIN UPDATE changes SET n = n + 1 WHERE id = 1; END;
"""


class SqliteCatalogue:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._ready = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.path)

    def _connect(self, create: bool = True) -> sqlite3.Connection | None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if not create and not self.path.is_file():
            return None
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with sqlite3.connect(self.path, timeout=30, isolation_level=None) as setup:
                    setup.execute("PRAGMA journal_mode=WAL")
                    setup.executescript(SCHEMA)
                setup.close()
                self._ready = True
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        self._local.db = db
        return db

    def _db(self) -> sqlite3.Connection:
        db = self._connect()
        assert db is not None
        return db

    def get(self, object_id: str) -> CatalogueObject | None:
        db = self._connect(create=False)
        if db is None:
            return None
        row = db.execute("SELECT doc FROM objects WHERE id = ?", (object_id,)).fetchone()
        return CatalogueObject.from_json(json.loads(row[0])) if row else None

    def list(self) -> builtins.list[CatalogueObject]:
        db = self._connect(create=False)
        if db is None:
            return []
        rows = db.execute("SELECT doc FROM objects ORDER BY id").fetchall()
        return [CatalogueObject.from_json(json.loads(r[0])) for r in rows]

    def changes(self) -> int:
        db = self._connect(create=False)
        if db is None:
            return 0
        row = db.execute("SELECT n FROM changes WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def upsert(self, obj: CatalogueObject) -> None:
        if not obj.updated:
            obj = CatalogueObject.from_json({**obj.to_json(), "updated": now_iso()})
        db = self._db()
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
        db = self._db()
        db.execute("DELETE FROM transforms WHERE object_id = ?", (object_id,))
        cursor = db.execute("DELETE FROM objects WHERE id = ?", (object_id,))
        return cursor.rowcount > 0

    # -- fitted transforms of computed images ----------------------------------------------

    def get_transform(self, object_id: str, spec: str, version: str) -> Transform | None:
        db = self._connect(create=False)
        if db is None:
            return None
        row = db.execute(
            "SELECT doc FROM transforms WHERE object_id = ? AND spec = ? AND version = ?",
            (object_id, spec, version),
        ).fetchone()
        return Transform.from_json(json.loads(row[0])) if row else None

    def put_transform(self, object_id: str, spec: str, version: str, transform: Transform) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM transforms WHERE object_id = ? AND version != ?", (object_id, version)
            )
            db.execute(
                "INSERT INTO transforms (object_id, spec, version, doc, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(object_id, spec) DO UPDATE SET "
                "version=excluded.version, doc=excluded.doc, updated=excluded.updated",
                (object_id, spec, version, json.dumps(transform.to_json()), now_iso()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def rows(self) -> builtins.list[tuple[str, str, str, str, str]]:
        """Every object row as stored (id, kind, label, doc, updated), by id: migration."""
        db = self._connect(create=False)
        if db is None:
            return []
        rows = db.execute("SELECT id, kind, label, doc, updated FROM objects ORDER BY id")
        return [tuple(r) for r in rows.fetchall()]

    def transform_rows(self) -> builtins.list[tuple[str, str, str, str, str]]:
        """Every transform row as stored (object_id, spec, version, doc, updated): migration."""
        db = self._connect(create=False)
        if db is None:
            return []
        rows = db.execute(
            "SELECT object_id, spec, version, doc, updated FROM transforms ORDER BY object_id, spec"
        ).fetchall()
        return [tuple(r) for r in rows]
