"""The embedded manifest store: one JSON file per manifest under <data>/manifests, an SQLite
index (records, canvases, the activity log) in <data>/presentation.sqlite3.

Blocking I/O; imports the standard library, iiifsrv.atomic, errors and presentation.store.
Writes are atomic: the new file is written and fsynced under a temporary name, the index row,
the canvases and the activity are written in a transaction, the file is renamed over the old
one, then the transaction commits. Any error before the commit rolls back the rows and leaves
the previous file served.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from iiifsrv.atomic import fsync_dir, write_synced
from iiifsrv.errors import Unavailable
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

log = logging.getLogger("iiifsrv.presentation.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,          -- catalogue | build | upload
    owner TEXT NOT NULL,
    objects TEXT NOT NULL,         -- JSON list of catalogue object ids
    versions TEXT NOT NULL,        -- what it was built from (object updated, hooks)
    label TEXT NOT NULL,
    institution TEXT NOT NULL,
    project TEXT NOT NULL,
    digest TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activities (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,            -- Create | Update | Delete
    manifest_id TEXT NOT NULL,
    end_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS canvases (
    manifest_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (manifest_id, position)
);
CREATE INDEX IF NOT EXISTS canvases_key ON canvases (key);
"""
# user_version 1: manifests.version exists and canvases holds every stored manifest's canvases.
LAYOUT = 1


class FileManifestStore:
    def __init__(self, data: Path) -> None:
        self.folder = Path(data) / "manifests"
        self.db_path = Path(data) / "presentation.sqlite3"
        self._local = threading.local()
        self._write = threading.Lock()
        self._open = threading.Lock()
        self._ready = False
        self._cache: dict[str, tuple[int, int, bytes]] = {}

    @property
    def where(self) -> str:
        return str(self.folder)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._open:
                if not self._ready:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    self._setup()
                    self._ready = True
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def _setup(self) -> None:
        """Create the tables; bring an index written by an earlier version to LAYOUT (the
        version column, the canvases of every stored manifest), once, under a write lock."""
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            if db.execute("PRAGMA user_version").fetchone()[0] >= LAYOUT:
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("PRAGMA user_version").fetchone()[0] < LAYOUT:
                    columns = {r[1] for r in db.execute("PRAGMA table_info(manifests)")}
                    if "version" not in columns:
                        db.execute(
                            "ALTER TABLE manifests ADD COLUMN version INTEGER NOT NULL DEFAULT 1"
                        )
                    db.execute("DELETE FROM canvases")
                    for (manifest_id,) in db.execute("SELECT id FROM manifests").fetchall():
                        try:
                            doc = json.loads(self.path(manifest_id).read_bytes())
                        except (OSError, ValueError):
                            continue
                        _insert_canvases(db, manifest_id, doc)
                    db.execute(f"PRAGMA user_version = {LAYOUT}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()

    def path(self, manifest_id: str) -> Path:
        return self.folder / (quote(check_id(manifest_id), safe="") + ".json")

    # -- reads -----------------------------------------------------------------------------

    def get(self, manifest_id: str) -> Record | None:
        row = (
            self._connect()
            .execute(f"SELECT {COLUMNS} FROM manifests WHERE id = ?", (manifest_id,))
            .fetchone()
        )
        return record_from_row(row) if row else None

    def list(self) -> builtins.list[Record]:
        rows = self._connect().execute(f"SELECT {COLUMNS} FROM manifests ORDER BY id").fetchall()
        return [record_from_row(r) for r in rows]

    def read(self, manifest_id: str) -> bytes | None:
        """The stored document (ids under STORED_BASE), or None; cached by mtime and size."""
        self._connect()
        path = self.path(manifest_id)
        try:
            st = path.stat()
        except OSError:
            return None
        hit = self._cache.get(manifest_id)
        if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        body = path.read_bytes()
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[manifest_id] = (st.st_mtime_ns, st.st_size, body)
        return body

    def canvases(self, manifest_id: str) -> builtins.list[str] | None:
        db = self._connect()
        if db.execute("SELECT 1 FROM manifests WHERE id = ?", (manifest_id,)).fetchone() is None:
            return None
        rows = db.execute(
            "SELECT key FROM canvases WHERE manifest_id = ? ORDER BY position", (manifest_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def has_canvas(self, key: str) -> bool:
        row = self._connect().execute("SELECT 1 FROM canvases WHERE key = ?", (key,)).fetchone()
        return row is not None

    def activity_count(self) -> int:
        row = self._connect().execute("SELECT COUNT(*) FROM activities").fetchone()
        return int(row[0])

    def activities(self, offset: int, limit: int) -> builtins.list[Activity]:
        rows = (
            self._connect()
            .execute(
                "SELECT seq, type, manifest_id, end_time FROM activities ORDER BY seq "
                "LIMIT ? OFFSET ?",
                (limit, offset),
            )
            .fetchall()
        )
        return [Activity(*r) for r in rows]

    # -- writes ----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
        """Store ``doc`` as ``manifest_id``; return the record and whether it was created."""
        final = self.path(manifest_id)
        body, digest = serialise(doc)
        self._connect()
        with self._write:
            tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                write_synced(tmp, body)
                with self._transaction() as db:
                    old = self.get(manifest_id)
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
                    db.execute(
                        f"INSERT OR REPLACE INTO manifests ({COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        record_row(record),
                    )
                    db.execute("DELETE FROM canvases WHERE manifest_id = ?", (manifest_id,))
                    _insert_canvases(db, manifest_id, doc)
                    db.execute(
                        "INSERT INTO activities (type, manifest_id, end_time) VALUES (?, ?, ?)",
                        ("Update" if old else "Create", manifest_id, now),
                    )
                    os.replace(tmp, final)
                    fsync_dir(self.folder)
            except OSError as exc:
                log.error("cannot store manifest %r: %s", manifest_id, exc)
                raise Unavailable(f"the manifest could not be stored: {exc.strerror}") from None
            finally:
                tmp.unlink(missing_ok=True)
        return record, old is None

    def touch_versions(self, manifest_id: str, versions: str) -> None:
        """Record that an unchanged document is current for ``versions`` (no activity)."""
        self._connect()
        with self._write, self._transaction() as db:
            db.execute("UPDATE manifests SET versions = ? WHERE id = ?", (versions, manifest_id))

    def delete(self, manifest_id: str, *, expect: int = ANY) -> bool:
        final = self.path(manifest_id)
        self._connect()
        with self._write:
            with self._transaction() as db:
                if expect != ANY:
                    old = self.get(manifest_id)
                    if (old.version if old else NEW) != expect:
                        raise changed_meanwhile(manifest_id)
                gone = db.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,)).rowcount
                if not gone:
                    return False
                db.execute("DELETE FROM canvases WHERE manifest_id = ?", (manifest_id,))
                db.execute(
                    "INSERT INTO activities (type, manifest_id, end_time) VALUES (?, ?, ?)",
                    ("Delete", manifest_id, now_iso()),
                )
                final.unlink(missing_ok=True)
                fsync_dir(self.folder)
            self._cache.pop(manifest_id, None)
        return True

    @contextmanager
    def sync_lock(self) -> Iterator[None]:
        """A file lock in <data>/manifests: worker processes on this machine sync one at a time."""
        self._connect()
        with open(self.folder / ".sync.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- migration -------------------------------------------------------------------------

    def activity_rows(self) -> builtins.list[Activity]:
        """The whole activity log, oldest first (what ``iiifsrv migrate`` copies)."""
        return self.activities(0, -1)


def _insert_canvases(db: sqlite3.Connection, manifest_id: str, doc: dict[str, Any]) -> None:
    db.executemany(
        "INSERT INTO canvases (manifest_id, position, key) VALUES (?, ?, ?)",
        [(manifest_id, i, key) for i, key in enumerate(canvas_keys(doc))],
    )
