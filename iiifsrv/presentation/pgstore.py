"""The manifest store in PostgreSQL: documents, records, canvases and the activity log in tables
every replica shares; nothing on local disk.

Blocking I/O; imports psycopg (through iiifsrv.database), errors and presentation.store. Every
write is one transaction (document, record, canvases, activity), conditional on the version the
caller read. Activities are numbered by an identity column under a transaction-scoped advisory
lock, so the numbers commit in order: the change stream is one ordered stream, whichever
replica wrote. Catalogue sync holds a session advisory lock.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from iiifsrv.database import Connection, Database
from iiifsrv.presentation.store import (
    ANY,
    COLUMNS,
    NEW,
    Activity,
    Record,
    canvas_keys,
    changed_meanwhile,
    check_id,
    now_iso,
    record_from_row,
    record_row,
    serialise,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS iiifsrv_manifests (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    owner TEXT NOT NULL,
    objects TEXT NOT NULL,
    versions TEXT NOT NULL,
    label TEXT NOT NULL,
    institution TEXT NOT NULL,
    project TEXT NOT NULL,
    digest TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS iiifsrv_canvases (
    manifest_id TEXT NOT NULL REFERENCES iiifsrv_manifests (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (manifest_id, position)
);
CREATE INDEX IF NOT EXISTS iiifsrv_canvases_key ON iiifsrv_canvases (key);
CREATE TABLE IF NOT EXISTS iiifsrv_activities (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    end_time TEXT NOT NULL
);
"""
# Arbitrary constants: the advisory locks of the activity log and of catalogue sync.
ACTIVITY_LOCK = 0x11F5_AC71
SYNC_LOCK = 0x11F5_5EC0


class PostgresManifestStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @property
    def where(self) -> str:
        return "PostgreSQL"

    def _db(self) -> Database:
        self.database.ensure("manifests", SCHEMA)
        return self.database

    # -- reads -----------------------------------------------------------------------------

    def get(self, manifest_id: str) -> Record | None:
        with self._db().connection() as conn:
            return _get(conn, manifest_id)

    def list(self) -> builtins.list[Record]:
        with self._db().connection() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM iiifsrv_manifests ORDER BY id").fetchall()
        return [record_from_row(r) for r in rows]

    def read(self, manifest_id: str) -> bytes | None:
        check_id(manifest_id)
        with self._db().connection() as conn:
            row = conn.execute(
                "SELECT doc FROM iiifsrv_manifests WHERE id = %s", (manifest_id,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def canvases(self, manifest_id: str) -> builtins.list[str] | None:
        with self._db().connection() as conn:
            rows = conn.execute(
                "SELECT c.key FROM iiifsrv_manifests m LEFT JOIN iiifsrv_canvases c "
                "ON c.manifest_id = m.id WHERE m.id = %s ORDER BY c.position",
                (manifest_id,),
            ).fetchall()
        if not rows:
            return None
        return [r[0] for r in rows if r[0] is not None]

    def has_canvas(self, key: str) -> bool:
        with self._db().connection() as conn:
            row = conn.execute("SELECT 1 FROM iiifsrv_canvases WHERE key = %s LIMIT 1", (key,))
            return row.fetchone() is not None

    def activity_count(self) -> int:
        with self._db().connection() as conn:
            row = conn.execute("SELECT COUNT(*) FROM iiifsrv_activities").fetchone()
        return int(row[0]) if row else 0

    def activities(self, offset: int, limit: int) -> builtins.list[Activity]:
        with self._db().connection() as conn:
            rows = conn.execute(
                "SELECT seq, type, manifest_id, end_time FROM iiifsrv_activities ORDER BY seq "
                "LIMIT %s OFFSET %s",
                (None if limit < 0 else limit, offset),
            ).fetchall()
        return [Activity(int(r[0]), r[1], r[2], r[3]) for r in rows]

    # -- writes ----------------------------------------------------------------------------

    def put(
        self,
        manifest_id: str,
        doc: dict[str, Any],
        *,
        origin: str,
        owner: str = "",
        objects: tuple[str, ...] = (),
        versions: str = "",
        label: str = "",
        institution: str = "",
        project: str = "",
        expect: int = ANY,
    ) -> tuple[Record, bool]:
        check_id(manifest_id)
        body, digest = serialise(doc)
        with self._db().connection() as conn:
            try:
                with conn.transaction():
                    # The activity lock first: writers queue here, so each sees the last
                    # committed version and the activity numbers commit in order.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ACTIVITY_LOCK,))
                    old = _get(conn, manifest_id, lock=True)
                    if expect != ANY and (old.version if old else NEW) != expect:
                        raise changed_meanwhile(manifest_id)
                    now = now_iso()
                    record = Record(
                        id=manifest_id,
                        origin=origin,
                        owner=owner or (old.owner if old else ""),
                        objects=objects,
                        versions=versions,
                        label=label,
                        institution=institution,
                        project=project,
                        digest=digest,
                        created=old.created if old else now,
                        modified=now,
                        version=old.version + 1 if old else 1,
                    )
                    _write(conn, record, body, doc)
                    _log(conn, "Update" if old else "Create", manifest_id, now)
            except psycopg.errors.UniqueViolation:  # a concurrent create of the same id
                raise changed_meanwhile(manifest_id) from None
        return record, old is None

    def put_stored(self, record: Record, body: bytes, doc: dict[str, Any]) -> None:
        """Insert or replace a record and its stored bytes as given, with no activity (what
        ``iiifsrv migrate`` uses: the activity log is copied as it was)."""
        with self._db().connection() as conn, conn.transaction():
            _write(conn, record, body, doc)

    def touch_versions(self, manifest_id: str, versions: str) -> None:
        with self._db().connection() as conn:
            conn.execute(
                "UPDATE iiifsrv_manifests SET versions = %s WHERE id = %s", (versions, manifest_id)
            )

    def delete(self, manifest_id: str, *, expect: int = ANY) -> bool:
        with self._db().connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ACTIVITY_LOCK,))
            old = _get(conn, manifest_id, lock=True)
            if old is None:
                return False
            if expect != ANY and old.version != expect:
                raise changed_meanwhile(manifest_id)
            conn.execute("DELETE FROM iiifsrv_manifests WHERE id = %s", (manifest_id,))
            _log(conn, "Delete", manifest_id, now_iso())
        return True

    def append_activities(self, items: builtins.list[Activity]) -> None:
        """Append activities as given, in order (``iiifsrv migrate``)."""
        with self._db().connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ACTIVITY_LOCK,))
            for item in items:
                _log(conn, item.type, item.manifest_id, item.end_time)

    @contextmanager
    def sync_lock(self) -> Iterator[None]:
        """A session advisory lock: one replica at a time brings catalogue manifests up to date."""
        with self._db().connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SYNC_LOCK,))


def _get(conn: Connection, manifest_id: str, *, lock: bool = False) -> Record | None:
    sql = f"SELECT {COLUMNS} FROM iiifsrv_manifests WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = conn.execute(sql, (manifest_id,)).fetchone()
    return record_from_row(row) if row else None


def _write(conn: Connection, record: Record, body: bytes, doc: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT INTO iiifsrv_manifests ({COLUMNS}, doc) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
        "SET origin = excluded.origin, owner = excluded.owner, objects = excluded.objects, "
        "versions = excluded.versions, label = excluded.label, "
        "institution = excluded.institution, project = excluded.project, "
        "digest = excluded.digest, created = excluded.created, modified = excluded.modified, "
        "version = excluded.version, doc = excluded.doc",
        (*record_row(record), body),
    )
    conn.execute("DELETE FROM iiifsrv_canvases WHERE manifest_id = %s", (record.id,))
    keys = canvas_keys(doc)
    if keys:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO iiifsrv_canvases (manifest_id, position, key) VALUES (%s, %s, %s)",
                [(record.id, i, key) for i, key in enumerate(keys)],
            )


def _log(conn: Connection, kind: str, manifest_id: str, end_time: str) -> None:
    conn.execute(
        "INSERT INTO iiifsrv_activities (type, manifest_id, end_time) VALUES (%s, %s, %s)",
        (kind, manifest_id, end_time),
    )
