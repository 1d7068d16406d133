"""The storage interface of the annotation store and the factory choosing its backend.

Imports the standard library, settings, errors and the annotation model; backends import this.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from iiifsrv.annotations.model import Checked, Doc, Record
from iiifsrv.settings import Settings

ScopeKind = Literal["canvas", "manifest", "all"]
# Writers a search is limited to: (kind, name) pairs, "Person"/"Software" and the name. An
# empty tuple = anyone; NOBODY = a filter no writer matches (a user URI that is not ours).
Writers = tuple[tuple[str, str], ...]
NOBODY: Writers = (("", ""),)


@dataclass(frozen=True)
class Scope:
    """Which annotations: those on one canvas, on one manifest's canvases, or all of them.

    A manifest scope holds the annotations that name the manifest (target source partOf /
    within) and those on one of ``canvases``, the manifest's own canvas list (never a URI
    prefix: a prefix such as "http:" would match every canvas). Annotations on one of
    ``hidden`` (canvases the reader may not see) are left out of every kind: of counts,
    pages and searches alike.
    """

    kind: ScopeKind
    uri: str = ""
    canvases: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()


class KeyTaken(Exception):
    """The key asked for is already used (live or deleted)."""


class VersionConflict(Exception):
    """The record changed since the version the writer read (lost update prevented)."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(
        self,
        key: str,
        checked: Checked,
        via: str,
        creator: str,
        kind: str = "Person",
        generator: Doc | None = None,
    ) -> Record:
        """Insert; raise KeyTaken if ``key`` exists (even as a deleted tombstone)."""
        ...

    async def create_many(
        self,
        canvas: str,
        items: list[tuple[str, Checked]],
        creator: str,
        kind: str,
        generator: Doc | None,
        replace: bool,
    ) -> tuple[list[Record], int]:
        """Insert (key, checked) pairs on one canvas in ONE transaction (all or nothing; KeyTaken
        if a key exists). With ``replace``, first mark deleted the live annotations that this
        same writer (creator and kind) made on ``canvas`` — their documents stay as tombstone
        versions; nobody else's are touched. Returns (records, how many were replaced)."""
        ...

    async def get(self, key: str) -> Record | None:
        """The record, deleted tombstones included (``deleted`` tells)."""
        ...

    async def find_via(self, via: str) -> Record | None:
        """The live record created with this client-supplied id."""
        ...

    async def update(self, key: str, checked: Checked, version: int) -> Record:
        """Replace the document if the stored version is ``version``, else VersionConflict."""
        ...

    async def delete(self, key: str, version: int) -> None:
        """Mark deleted if the stored version is ``version``, else VersionConflict."""
        ...

    async def state(self, scope: Scope) -> tuple[int, int]:
        """(number of live annotations, change stamp that moves on every write in scope)."""
        ...

    async def select(self, scope: Scope, offset: int = 0, limit: int | None = None) -> list[Record]:
        """Live annotations in creation order."""
        ...

    async def search(
        self,
        scope: Scope,
        words: list[str],
        writers: Writers = (),
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Record]:
        """Live annotations whose body text holds every word (a trailing "*" = prefix), made by
        one of ``writers`` (none = anyone), in creation order; no words = every one in scope."""
        ...

    async def search_total(self, scope: Scope, words: list[str], writers: Writers = ()) -> int:
        """How many annotations ``search`` finds in all (for paged results)."""
        ...

    async def search_canvases(
        self, scope: Scope, words: list[str], writers: Writers = ()
    ) -> set[str]:
        """The distinct canvases of the annotations ``search`` finds (what access decides on)."""
        ...

    async def absolute_uris(self) -> set[str]:
        """Every distinct canvas and manifest stored as an absolute http(s) URI (migration)."""
        ...

    async def rename(self, renames: dict[str, str]) -> int:
        """Re-key canvases and manifests (old URI → new key) in one transaction; rows changed."""
        ...


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_key() -> str:
    return secrets.token_hex(16)


def open_store(settings: Settings) -> Store:
    """PostgreSQL when ``database_url`` is set, else SQLite at <data>/annotations.sqlite3."""
    if settings.database_url:
        from iiifsrv.annotations.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    from iiifsrv.annotations.sqlite import SqliteStore

    return SqliteStore(settings.data_path / "annotations.sqlite3")
