"""The manifest store interface: stored documents with their records, the canvases of each, and
the append-only log of Create/Update/Delete activities (Change Discovery's source).

Imports only the standard library and iiifsrv.errors; the backends (presentation.files: files
and SQLite, presentation.pgstore: PostgreSQL) implement ``ManifestStore``; iiifsrv.state picks.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from iiifsrv.errors import BadRequest, Conflict

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
    version: int = 1  # moves on every write: what a conditional write compares


@dataclass(frozen=True)
class Activity:
    seq: int
    type: str
    manifest_id: str
    end_time: str


def record_from_row(row: tuple[Any, ...]) -> Record:
    """A record from a row of COLUMNS (both backends store the same columns)."""
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
        version=int(row[11]),
    )


def record_row(record: Record) -> tuple[Any, ...]:
    """The row of COLUMNS for a record."""
    return (
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
        record.version,
    )


COLUMNS = (
    "id, origin, owner, objects, versions, label, institution, project, digest, created, "
    "modified, version"
)


# ``put``/``delete`` ``expect``: write whatever is stored (sync, upgrades).
ANY = -1
# ``expect`` for a manifest that must not exist yet.
NEW = 0


def changed_meanwhile(manifest_id: str) -> Conflict:
    return Conflict(f"manifest {manifest_id!r} was changed by another request: read it and retry")


def serialise(doc: dict[str, Any]) -> tuple[bytes, str]:
    """The stored bytes of a document and their SHA-256 (the record's digest)."""
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return body, hashlib.sha256(body).hexdigest()


def canvas_key(canvas_id: str) -> str:
    """A stored canvas id's key: its path when it is ours, else the id itself."""
    return canvas_id[len(STORED_BASE) :] if canvas_id.startswith(f"{STORED_BASE}/") else canvas_id


def canvas_keys(doc: dict[str, Any]) -> builtins.list[str]:
    """The keys of a stored document's canvases, in order (the ``canvases`` rows of ``put``)."""
    items = doc.get("items", [])
    return [
        canvas_key(str(item.get("id", "")))
        for item in (items if isinstance(items, builtins.list) else [])
        if isinstance(item, dict) and item.get("type") == "Canvas"
    ]


class ManifestStore(Protocol):
    """Stored manifests. Every write is one transaction: the document, its record, its canvases
    and its activity all land, or none does. ``expect`` makes a write conditional on the version
    the caller read (NEW: must not exist; ANY: unconditional): a lost race raises 409."""

    @property
    def where(self) -> str:
        """Where it lives, for messages (a folder, or "PostgreSQL")."""
        ...

    def get(self, manifest_id: str) -> Record | None: ...

    def list(self) -> builtins.list[Record]: ...

    def read(self, manifest_id: str) -> bytes | None:
        """The stored document (ids under STORED_BASE), or None."""
        ...

    def canvases(self, manifest_id: str) -> builtins.list[str] | None:
        """The canvas keys of a stored manifest in order, None when there is no such manifest."""
        ...

    def has_canvas(self, key: str) -> bool:
        """Whether any stored manifest has a canvas with this key."""
        ...

    def activity_count(self) -> int: ...

    def activities(self, offset: int, limit: int) -> builtins.list[Activity]:
        """Activities oldest first (one order, whichever process wrote them)."""
        ...

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
        ...

    def touch_versions(self, manifest_id: str, versions: str) -> None:
        """Record that an unchanged document is current for ``versions`` (no activity)."""
        ...

    def delete(self, manifest_id: str, *, expect: int = ANY) -> bool: ...

    def sync_lock(self) -> AbstractContextManager[None]:
        """Held while catalogue manifests are brought up to date: one process at a time."""
        ...
