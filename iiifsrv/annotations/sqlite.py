"""SQLite backend of the annotation store: WAL, one writer, synchronous=FULL, FTS5 full text.

Blocking sqlite3 calls run in threads; imports store (interface) and model.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from iiifsrv.annotations.model import Checked, Doc, Record, load_doc, xywh
from iiifsrv.annotations.store import KeyTaken, Scope, VersionConflict, Writers, now

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    canvas TEXT NOT NULL,
    manifest TEXT NOT NULL DEFAULT '',
    via TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL,
    doc TEXT NOT NULL,
    body_text TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL,
    region TEXT
);
CREATE INDEX IF NOT EXISTS annotations_canvas ON annotations (canvas, seq);
CREATE INDEX IF NOT EXISTS annotations_manifest ON annotations (manifest, seq);
CREATE INDEX IF NOT EXISTS annotations_via ON annotations (via) WHERE via != '';
CREATE VIRTUAL TABLE IF NOT EXISTS annotations_fts USING fts5 (body_text, tokenize='unicode61');
"""

COLUMNS = (
    "key, canvas, manifest, via, creator, doc, created, modified, version, deleted, region,"
    " kind, generator"
)
# Rows written before the region column existed get it at open, this many per transaction.
MIGRATE_BATCH = 200


def _record(row: tuple[Any, ...]) -> Record:
    key, canvas, manifest, via, creator, text, created, modified, version, deleted = row[:10]
    region, kind, generator = row[10:]
    doc = load_doc(text)
    return Record(
        key=key,
        canvas=canvas,
        manifest=manifest,
        via=via,
        creator=creator,
        doc=doc,
        created=created,
        modified=modified,
        version=version,
        deleted=bool(deleted),
        region=xywh(doc) if region is None else region,
        kind=kind,
        generator=json.loads(generator) if generator else None,
    )


def _where(scope: Scope) -> tuple[str, list[Any]]:
    where, args = _where_kind(scope)
    if scope.hidden:
        where += " AND canvas NOT IN (SELECT value FROM json_each(?))"
        args = [*args, json.dumps(list(scope.hidden))]
    return where, args


def _where_kind(scope: Scope) -> tuple[str, list[Any]]:
    if scope.kind == "canvas":
        return "canvas = ?", [scope.uri]
    if scope.kind == "manifest":
        canvases = json.dumps(list(scope.canvases))
        return "(manifest = ? OR canvas IN (SELECT value FROM json_each(?)))", [scope.uri, canvases]
    return "1 = 1", []


def _migrate_region(conn: sqlite3.Connection) -> None:
    """Schema 1: add the region column and fill it (the SVG of old rows is parsed here once,
    never again per request)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        names = {row[1] for row in conn.execute("PRAGMA table_info(annotations)")}
        if "region" not in names:
            conn.execute("ALTER TABLE annotations ADD COLUMN region TEXT")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT seq, doc FROM annotations WHERE region IS NULL LIMIT ?", (MIGRATE_BATCH,)
            ).fetchall()
            for seq, text in rows:
                region = xywh(load_doc(text))
                conn.execute("UPDATE annotations SET region = ? WHERE seq = ?", (region, seq))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if len(rows) < MIGRATE_BATCH:
            return


def _migrate_provenance(conn: sqlite3.Connection) -> None:
    """Schema 2: the writer's class (every earlier annotation was a person's) and the engine of
    machine-made ones; an index for an agent's annotations on a canvas (replaced per run)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        names = {row[1] for row in conn.execute("PRAGMA table_info(annotations)")}
        if "kind" not in names:
            conn.execute("ALTER TABLE annotations ADD COLUMN kind TEXT NOT NULL DEFAULT 'Person'")
        if "generator" not in names:
            conn.execute("ALTER TABLE annotations ADD COLUMN generator TEXT NOT NULL DEFAULT ''")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS annotations_writer ON annotations (canvas, creator, kind)"
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# Versioned migrations: PRAGMA user_version is the last one applied. Each is idempotent, so
# a store an earlier version had already partly brought forward is safe to migrate again.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_region,
    _migrate_provenance,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this store has not had yet, in order, recording each."""
    done = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, step in enumerate(MIGRATIONS, start=1):
        if number > done:
            step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
    # Region rows left unfilled (a crash mid-fill) are filled whatever the version says.
    if conn.execute("SELECT 1 FROM annotations WHERE region IS NULL LIMIT 1").fetchone():
        _migrate_region(conn)


def _fts_query(words: list[str]) -> str:
    terms = []
    for word in words:
        prefix = word.endswith("*")
        term = '"' + word.rstrip("*").replace('"', '""') + '"'
        terms.append(term + ("*" if prefix else ""))
    return " AND ".join(terms)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class SqliteStore:
    """One writer connection (serialised by a lock) and one reader connection, both in WAL."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._open_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return

        def work() -> None:
            # Concurrent first requests open once: two openings at a time ran the schema script
            # on one connection while a search read the half-made FTS table on another (CI saw
            # "vtable constructor failed: annotations_fts", a 500).
            with self._open_lock:
                if self._writer is not None:
                    return
                self.path.parent.mkdir(parents=True, exist_ok=True)
                writer = self._connect()
                writer.executescript(SCHEMA)
                _migrate(writer)
                self._reader = self._connect()
                self._writer = writer  # last: it is what ``open`` checks without the lock

        await asyncio.to_thread(work)

    async def close(self) -> None:
        """Closes the connections once no thread uses them: a read or write whose awaiting task
        was cancelled goes on in its thread, and closing a connection under a running statement
        crashes the process (CI: a segmentation fault in a read at an application's shutdown)."""

        def shut() -> None:
            with self._write_lock, self._read_lock:
                for conn in (self._writer, self._reader):
                    if conn is not None:
                        conn.close()
                self._writer = self._reader = None

        await asyncio.to_thread(shut)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()

        def work() -> T:
            with self._write_lock:
                conn = self._writer
                if conn is None:
                    raise sqlite3.ProgrammingError("the annotation store is closed")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await asyncio.to_thread(work)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()

        def work() -> T:
            with self._read_lock:
                if self._reader is None:
                    raise sqlite3.ProgrammingError("the annotation store is closed")
                return fn(self._reader)

        return await asyncio.to_thread(work)

    @staticmethod
    def _next_change(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT coalesce(max(changed), 0) + 1 FROM annotations").fetchone()
        return int(row[0])

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        key: str,
        checked: Checked,
        via: str,
        writer: tuple[str, str, Doc | None],
        stamp: str,
        change: int,
    ) -> Record:
        creator, kind, generator = writer
        if conn.execute("SELECT 1 FROM annotations WHERE key = ?", (key,)).fetchone():
            raise KeyTaken(key)
        cur = conn.execute(
            "INSERT INTO annotations (key, canvas, manifest, via, creator, doc, body_text,"
            " created, modified, version, deleted, changed, region, kind, generator)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, ?)",
            (
                key,
                checked.canvas,
                checked.manifest,
                via,
                creator,
                _dumps(checked.doc),
                checked.text,
                stamp,
                stamp,
                change,
                checked.region,
                kind,
                _dumps(generator) if generator else "",
            ),
        )
        conn.execute(
            "INSERT INTO annotations_fts (rowid, body_text) VALUES (?, ?)",
            (cur.lastrowid, checked.text),
        )
        return Record(key, checked.canvas, checked.manifest, via, creator, checked.doc,
                      stamp, stamp, 1, region=checked.region, kind=kind,
                      generator=generator)  # fmt: skip

    async def create(
        self,
        key: str,
        checked: Checked,
        via: str,
        creator: str,
        kind: str = "Person",
        generator: Doc | None = None,
    ) -> Record:
        stamp = now()

        def fn(conn: sqlite3.Connection) -> Record:
            writer = (creator, kind, generator)
            return self._insert(conn, key, checked, via, writer, stamp, self._next_change(conn))

        return await self._write(fn)

    async def create_many(
        self,
        canvas: str,
        items: list[tuple[str, Checked]],
        creator: str,
        kind: str,
        generator: Doc | None,
        replace: bool,
    ) -> tuple[list[Record], int]:
        stamp = now()

        def fn(conn: sqlite3.Connection) -> tuple[list[Record], int]:
            change = self._next_change(conn)  # one stamp for the whole batch: it is one change
            replaced = 0
            if replace:
                rows = conn.execute(
                    "UPDATE annotations SET deleted = 1, body_text = '', modified = ?,"
                    " version = version + 1, changed = ?"
                    " WHERE canvas = ? AND creator = ? AND kind = ? AND deleted = 0 RETURNING seq",
                    (stamp, change, canvas, creator, kind),
                ).fetchall()
                for (seq,) in rows:
                    conn.execute("DELETE FROM annotations_fts WHERE rowid = ?", (seq,))
                replaced = len(rows)
            writer = (creator, kind, generator)
            made = [
                self._insert(conn, key, checked, "", writer, stamp, change)
                for key, checked in items
            ]
            return made, replaced

        return await self._write(fn)

    async def get(self, key: str) -> Record | None:
        def fn(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM annotations WHERE key = ?", (key,))
            found = row.fetchone()
            return _record(found) if found else None

        return await self._read(fn)

    async def find_via(self, via: str) -> Record | None:
        def fn(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM annotations WHERE via = ? AND deleted = 0"
                " ORDER BY seq DESC LIMIT 1",
                (via,),
            ).fetchone()
            return _record(row) if row else None

        return await self._read(fn)

    async def update(self, key: str, checked: Checked, version: int) -> Record:
        stamp = now()

        def fn(conn: sqlite3.Connection) -> Record:
            cur = conn.execute(
                "UPDATE annotations SET canvas = ?, manifest = ?, doc = ?, body_text = ?,"
                " region = ?, modified = ?, version = version + 1, changed = ?"
                " WHERE key = ? AND version = ? AND deleted = 0 RETURNING seq",
                (
                    checked.canvas,
                    checked.manifest,
                    _dumps(checked.doc),
                    checked.text,
                    checked.region,
                    stamp,
                    self._next_change(conn),
                    key,
                    version,
                ),
            )
            row = cur.fetchone()
            if row is None:
                raise VersionConflict(key)
            conn.execute("DELETE FROM annotations_fts WHERE rowid = ?", (row[0],))
            conn.execute(
                "INSERT INTO annotations_fts (rowid, body_text) VALUES (?, ?)",
                (row[0], checked.text),
            )
            found = conn.execute(f"SELECT {COLUMNS} FROM annotations WHERE key = ?", (key,))
            return _record(found.fetchone())

        return await self._write(fn)

    async def delete(self, key: str, version: int) -> None:
        stamp = now()

        def fn(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "UPDATE annotations SET deleted = 1, body_text = '', modified = ?,"
                " version = version + 1, changed = ?"
                " WHERE key = ? AND version = ? AND deleted = 0 RETURNING seq",
                (stamp, self._next_change(conn), key, version),
            ).fetchone()
            if row is None:
                raise VersionConflict(key)
            conn.execute("DELETE FROM annotations_fts WHERE rowid = ?", (row[0],))

        await self._write(fn)

    async def state(self, scope: Scope) -> tuple[int, int]:
        where, args = _where(scope)

        def fn(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                "SELECT coalesce(sum(deleted = 0), 0), coalesce(max(changed), 0)"
                f" FROM annotations WHERE {where}",
                args,
            ).fetchone()
            return int(row[0]), int(row[1])

        return await self._read(fn)

    async def select(self, scope: Scope, offset: int = 0, limit: int | None = None) -> list[Record]:
        where, args = _where(scope)

        def fn(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM annotations WHERE {where} AND deleted = 0"
                " ORDER BY seq LIMIT ? OFFSET ?",
                [*args, -1 if limit is None else limit, offset],
            )
            return [_record(r) for r in rows.fetchall()]

        return await self._read(fn)

    @staticmethod
    def _matching(scope: Scope, words: list[str], writers: Writers) -> tuple[str, list[Any]]:
        where, args = _where(scope)
        if words:
            where = (
                "seq IN (SELECT rowid FROM annotations_fts WHERE annotations_fts MATCH ?) AND "
                + where
            )
            args = [_fts_query(words), *args]
        if writers:
            where += " AND (" + " OR ".join("(kind = ? AND creator = ?)" for _ in writers) + ")"
            args = [*args, *(value for pair in writers for value in pair)]
        return where + " AND deleted = 0", args

    async def search(
        self,
        scope: Scope,
        words: list[str],
        writers: Writers = (),
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Record]:
        where, args = self._matching(scope, words, writers)

        def fn(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM annotations WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
                [*args, limit, offset],
            )
            return [_record(r) for r in rows.fetchall()]

        return await self._read(fn)

    async def search_total(self, scope: Scope, words: list[str], writers: Writers = ()) -> int:
        where, args = self._matching(scope, words, writers)

        def fn(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT count(*) FROM annotations WHERE {where}", args).fetchone()
            return int(row[0])

        return await self._read(fn)

    async def search_canvases(
        self, scope: Scope, words: list[str], writers: Writers = ()
    ) -> set[str]:
        where, args = self._matching(scope, words, writers)

        def fn(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(f"SELECT DISTINCT canvas FROM annotations WHERE {where}", args)
            return {str(r[0]) for r in rows.fetchall()}

        return await self._read(fn)

    # ---- migration: canvas keys (see AnnotationService.ready) ------------------------------

    async def absolute_uris(self) -> set[str]:
        def fn(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                "SELECT canvas FROM annotations WHERE canvas LIKE 'http%'"
                " UNION SELECT manifest FROM annotations WHERE manifest LIKE 'http%'"
            )
            return {str(r[0]) for r in rows.fetchall()}

        return await self._read(fn)

    async def rename(self, renames: dict[str, str]) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            count = 0
            for old, new in renames.items():
                count += conn.execute(
                    "UPDATE annotations SET canvas = ? WHERE canvas = ?", (new, old)
                ).rowcount
                count += conn.execute(
                    "UPDATE annotations SET manifest = ? WHERE manifest = ?", (new, old)
                ).rowcount
            return count

        return await self._write(fn)
