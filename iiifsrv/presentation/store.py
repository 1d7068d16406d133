"""The manifest store: one JSON file per manifest under <data>/manifests, an SQLite index, and
the append-only log of Create/Update/Delete activities (Change Discovery's source).

Blocking I/O; imports only the standard library and iiifsrv.errors. Writes are atomic: the new
file is written and fsynced under a temporary name, the index row and the activity are inserted
in a transaction, the file is renamed over the old one, then the transaction commits. Any error
before the commit rolls back the row and the activity and leaves the previous file served.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from iiifsrv.atomic import fsync_dir, write_synced
from iiifsrv.errors import BadRequest, Unavailable

log = logging.getLogger("iiifsrv.presentation.store")

# Stored documents use this base in their ids; ``publish`` replaces it by the public base when
# they are served (the one place it is replaced), so the files stay correct whatever the host
# name or public_url (RFC 2606 reserved domain). Nothing else depends on it: the annotation
# containers the documents reference encode a canvas's path, never this base.
STORED_BASE = "https://iiifsrv.invalid"


def publish(stored: str, base: str) -> str:
    """A stored text (a document, or one URL from it) as served under ``base``."""
    return stored.replace(STORED_BASE, base)


def publish_json(body: bytes, base: str) -> bytes:
    """A stored JSON document as served under ``base`` (escaped as a JSON string)."""
    escaped = json.dumps(base, ensure_ascii=False)[1:-1]
    return body.replace(STORED_BASE.encode(), escaped.encode("utf-8"))


def neutral(text: str, base: str) -> str:
    """The inverse, on the way in: ids under this request's base stored base-neutral."""
    return text.replace(f"{base}/", f"{STORED_BASE}/")


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
"""

MAX_ID_LENGTH = 200


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_id(manifest_id: str) -> str:
    """A manifest id is 1-200 printable characters; "/" is allowed but no empty, "." or ".."
    segment. Stored as a percent-encoded file name, so any such id is a safe file name."""
    if not manifest_id or len(manifest_id) > MAX_ID_LENGTH:
        raise BadRequest(f"a manifest id has 1 to {MAX_ID_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in manifest_id) or "\\" in manifest_id:
        raise BadRequest("a manifest id may not contain control characters or backslashes")
    if any(s in ("", ".", "..") for s in manifest_id.split("/")):
        raise BadRequest("a manifest id may not have empty, '.' or '..' segments")
    if len(quote(manifest_id, safe="")) > MAX_ID_LENGTH:
        # The file name is the percent-encoded id: keep it well under the 255-byte limit.
        raise BadRequest(f"a manifest id is at most {MAX_ID_LENGTH} characters once URL-encoded")
    return manifest_id


@dataclass(frozen=True)
class Record:
    id: str
    origin: str
    owner: str
    objects: tuple[str, ...]
    versions: str
    label: str
    institution: str
    project: str
    digest: str
    created: str
    modified: str


@dataclass(frozen=True)
class Activity:
    seq: int
    type: str
    manifest_id: str
    end_time: str


def _record(row: tuple[Any, ...]) -> Record:
    return Record(
        id=row[0],
        origin=row[1],
        owner=row[2],
        objects=tuple(json.loads(row[3])),
        versions=row[4],
        label=row[5],
        institution=row[6],
        project=row[7],
        digest=row[8],
        created=row[9],
        modified=row[10],
    )


_COLUMNS = (
    "id, origin, owner, objects, versions, label, institution, project, digest, created, modified"
)


class ManifestStore:
    def __init__(self, data: Path) -> None:
        self.folder = Path(data) / "manifests"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_path = Path(data) / "presentation.sqlite3"
        self._local = threading.local()
        self._write = threading.Lock()
        self._cache: dict[str, tuple[int, int, bytes]] = {}
        db = self._connect()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def path(self, manifest_id: str) -> Path:
        return self.folder / (quote(check_id(manifest_id), safe="") + ".json")

    # -- reads -----------------------------------------------------------------------------

    def get(self, manifest_id: str) -> Record | None:
        row = (
            self._connect()
            .execute(f"SELECT {_COLUMNS} FROM manifests WHERE id = ?", (manifest_id,))
            .fetchone()
        )
        return _record(row) if row else None

    def list(self) -> builtins.list[Record]:
        rows = self._connect().execute(f"SELECT {_COLUMNS} FROM manifests ORDER BY id").fetchall()
        return [_record(r) for r in rows]

    def read(self, manifest_id: str) -> bytes | None:
        """The stored document (ids under STORED_BASE), or None; cached by mtime and size."""
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
    ) -> tuple[Record, bool]:
        """Store ``doc`` as ``manifest_id``; return the record and whether it was created."""
        final = self.path(manifest_id)
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        digest = hashlib.sha256(body).hexdigest()
        with self._write:
            tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                write_synced(tmp, body)
                with self._transaction() as db:
                    old = self.get(manifest_id)
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
                    )
                    db.execute(
                        f"INSERT OR REPLACE INTO manifests ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            record.id,
                            record.origin,
                            record.owner,
                            json.dumps(list(record.objects)),
                            record.versions,
                            record.label,
                            record.institution,
                            record.project,
                            record.digest,
                            record.created,
                            record.modified,
                        ),
                    )
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
        with self._write, self._transaction() as db:
            db.execute("UPDATE manifests SET versions = ? WHERE id = ?", (versions, manifest_id))

    def delete(self, manifest_id: str) -> bool:
        final = self.path(manifest_id)
        with self._write:
            with self._transaction() as db:
                gone = db.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,)).rowcount
                if not gone:
                    return False
                db.execute(
                    "INSERT INTO activities (type, manifest_id, end_time) VALUES (?, ?, ?)",
                    ("Delete", manifest_id, now_iso()),
                )
                final.unlink(missing_ok=True)
                fsync_dir(self.folder)
            self._cache.pop(manifest_id, None)
        return True
