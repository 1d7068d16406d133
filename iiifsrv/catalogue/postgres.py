"""The catalogue in PostgreSQL: objects (bands and composites in their JSON document), fitted
transforms, and a change counter every replica reads to notice new objects.

Blocking I/O; imports psycopg (through iiifsrv.database), catalogue.model. Same documents as the
SQLite backend (``iiifsrv migrate`` copies them byte for byte); every write is one transaction.
"""

from __future__ import annotations

import builtins
import json

from iiifsrv.catalogue.model import CatalogueObject, Transform, now_iso
from iiifsrv.database import Connection, Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS iiifsrv_objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS iiifsrv_transforms (
    object_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    version TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (object_id, spec)
);
CREATE TABLE IF NOT EXISTS iiifsrv_changes (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO iiifsrv_changes (name, n) VALUES ('catalogue', 0) ON CONFLICT DO NOTHING;
"""


# Reads have the last-known view (catalogue/remembered.py) to fall back on: they wait little.
READ_WAIT = 0.5


def _bump(conn: Connection) -> None:
    conn.execute("UPDATE iiifsrv_changes SET n = n + 1 WHERE name = 'catalogue'")


class PostgresCatalogue:
    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def where(self) -> str:
        return "PostgreSQL"

    def _conn(self) -> Database:
        self.database.ensure("catalogue", SCHEMA)
        return self.database

    def get(self, object_id: str) -> CatalogueObject | None:
        with self._conn().connection(READ_WAIT) as conn:
            row = conn.execute(
                "SELECT doc FROM iiifsrv_objects WHERE id = %s", (object_id,)
            ).fetchone()
        return CatalogueObject.from_json(json.loads(row[0])) if row else None

    def list(self) -> builtins.list[CatalogueObject]:
        with self._conn().connection(READ_WAIT) as conn:
            rows = conn.execute("SELECT doc FROM iiifsrv_objects ORDER BY id").fetchall()
        return [CatalogueObject.from_json(json.loads(r[0])) for r in rows]

    def changes(self) -> int:
        with self._conn().connection(READ_WAIT) as conn:
            row = conn.execute("SELECT n FROM iiifsrv_changes WHERE name = 'catalogue'").fetchone()
        return int(row[0]) if row else 0

    def upsert(self, obj: CatalogueObject) -> None:
        if not obj.updated:
            obj = CatalogueObject.from_json({**obj.to_json(), "updated": now_iso()})
        self.put_row(obj.id, obj.kind, obj.label, json.dumps(obj.to_json()), obj.updated)

    def put_row(self, object_id: str, kind: str, label: str, doc: str, updated: str) -> None:
        """Insert or replace one object row as given (also what ``iiifsrv migrate`` uses)."""
        with self._conn().connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO iiifsrv_objects (id, kind, label, doc, updated) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
                "label = excluded.label, doc = excluded.doc, updated = excluded.updated",
                (object_id, kind, label, doc, updated),
            )
            _bump(conn)

    def remove(self, object_id: str) -> bool:
        with self._conn().connection() as conn, conn.transaction():
            conn.execute("DELETE FROM iiifsrv_transforms WHERE object_id = %s", (object_id,))
            gone = conn.execute("DELETE FROM iiifsrv_objects WHERE id = %s", (object_id,)).rowcount
            _bump(conn)
        return gone > 0

    # -- fitted transforms of computed images ----------------------------------------------

    def get_transform(self, object_id: str, spec: str, version: str) -> Transform | None:
        with self._conn().connection(READ_WAIT) as conn:
            row = conn.execute(
                "SELECT doc FROM iiifsrv_transforms "
                "WHERE object_id = %s AND spec = %s AND version = %s",
                (object_id, spec, version),
            ).fetchone()
        return Transform.from_json(json.loads(row[0])) if row else None

    def put_transform(self, object_id: str, spec: str, version: str, transform: Transform) -> None:
        self.put_transform_row(object_id, spec, version, json.dumps(transform.to_json()), now_iso())

    def put_transform_row(
        self, object_id: str, spec: str, version: str, doc: str, updated: str
    ) -> None:
        with self._conn().connection() as conn, conn.transaction():
            conn.execute(
                "DELETE FROM iiifsrv_transforms WHERE object_id = %s AND version <> %s",
                (object_id, version),
            )
            conn.execute(
                "INSERT INTO iiifsrv_transforms (object_id, spec, version, doc, updated) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (object_id, spec) DO UPDATE SET "
                "version = excluded.version, doc = excluded.doc, updated = excluded.updated",
                (object_id, spec, version, doc, updated),
            )

    def rows(self) -> builtins.list[tuple[str, str, str, str, str]]:
        """Every object row (id, kind, label, doc, updated), by id: migration checks."""
        with self._conn().connection() as conn:
            rows = conn.execute(
                "SELECT id, kind, label, doc, updated FROM iiifsrv_objects ORDER BY id"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def transform_rows(self) -> builtins.list[tuple[str, str, str, str, str]]:
        with self._conn().connection() as conn:
            rows = conn.execute(
                "SELECT object_id, spec, version, doc, updated FROM iiifsrv_transforms "
                "ORDER BY object_id, spec"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
