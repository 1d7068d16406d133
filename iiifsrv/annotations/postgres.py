"""PostgreSQL backend of the annotation store (psycopg 3 async, psycopg_pool), tsvector full text.

Imports psycopg, psycopg_pool, store (interface), model, errors and database (the outage rule,
``Gate``: its own async pool fails fast while PostgreSQL is down and finds it again by itself).
Tables live in the schema the connection's search_path names first (``?options=-csearch_path%3D``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from iiifsrv.annotations.model import Checked, Doc, Record, load_doc, xywh
from iiifsrv.annotations.store import KeyTaken, Scope, VersionConflict, Writers, now
from iiifsrv.database import RETRY_AFTER, SLICE, Gate, failures, pool_options
from iiifsrv.errors import BadRequest, Unavailable

log = logging.getLogger("iiifsrv.annotations")
# What a client is told; the database's own message (hosts, ports, users) goes to the log.
UNAVAILABLE = (
    "the annotation database is unavailable: annotations wait until it is back (images are "
    "still served); try again shortly"
)

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS iiifsrv_annotation_changes;
CREATE TABLE IF NOT EXISTS iiifsrv_annotations (
    seq BIGSERIAL UNIQUE,
    key TEXT PRIMARY KEY,
    canvas TEXT NOT NULL,
    manifest TEXT NOT NULL DEFAULT '',
    via TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL,
    doc TEXT NOT NULL,
    body_text TEXT NOT NULL DEFAULT '',
    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', body_text)) STORED,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    changed BIGINT NOT NULL,
    region TEXT
);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_canvas ON iiifsrv_annotations (canvas, seq);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_manifest ON iiifsrv_annotations (manifest, seq);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_via ON iiifsrv_annotations (via) WHERE via <> '';
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_tsv ON iiifsrv_annotations USING GIN (tsv);
CREATE TABLE IF NOT EXISTS iiifsrv_annotations_schema (version INTEGER NOT NULL);
"""

# Versioned migrations, applied in order under the schema lock; the schema table holds the
# number of the last one applied. Schema 1 is the region column (filled by _migrate below).
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE iiifsrv_annotations ADD COLUMN IF NOT EXISTS region TEXT",
    # 2: provenance — every earlier annotation was a person's; machine ones name their engine.
    "ALTER TABLE iiifsrv_annotations ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'Person';"
    " ALTER TABLE iiifsrv_annotations ADD COLUMN IF NOT EXISTS generator TEXT NOT NULL DEFAULT '';"
    " CREATE INDEX IF NOT EXISTS iiifsrv_annotations_writer"
    " ON iiifsrv_annotations (canvas, creator, kind)",
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = (
    "key, canvas, manifest, via, creator, doc, created, modified, version, deleted, region,"
    " kind, generator"
)
TABLE = "iiifsrv_annotations"
# An arbitrary constant: serialises schema creation between workers starting together.
SCHEMA_LOCK = 0x11F5_A770
# Rows written before the region column existed get it at open, this many per transaction.
MIGRATE_BATCH = 200


def _record(row: tuple[Any, ...]) -> Record:
    key, canvas, manifest, via, creator, text, created, modified, version, deleted = row[:10]
    region, kind, generator = row[10:]
    doc = load_doc(text)
    return Record(key, canvas, manifest, via, creator, doc, created, modified, version,
                  bool(deleted), xywh(doc) if region is None else region, kind,
                  json.loads(generator) if generator else None)  # fmt: skip


def _records(rows: Sequence[tuple[Any, ...]]) -> list[Record]:
    return [_record(r) for r in rows]


def _regions(rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, int]]:
    return [(xywh(load_doc(text)), seq) for seq, text in rows]


def _where(scope: Scope) -> tuple[str, list[Any]]:
    if scope.kind == "canvas":
        return "canvas = %s", [scope.uri]
    if scope.kind == "manifest":
        return "(manifest = %s OR canvas = ANY(%s))", [scope.uri, list(scope.canvases)]
    return "TRUE", []


def _tsquery(words: list[str]) -> str:
    # Words come from model.words (\w+ only), so they are safe tsquery lexemes once quoted.
    terms = []
    for word in words:
        prefix = word.endswith("*")
        lexeme = "'" + word.rstrip("*").replace("'", "''").replace("\\", "") + "'"
        terms.append(lexeme + (":*" if prefix else ""))
    return " & ".join(terms)


async def _borrow(
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]], allowed: float, probe: bool
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """database.borrow for the async pool: a connection within ``allowed`` seconds, PoolTimeout
    sooner when a connection attempt fails or one is found broken meanwhile (not when probing)."""
    deadline = time.monotonic() + allowed
    seen = failures(pool)
    while True:
        left = deadline - time.monotonic()
        try:
            return await pool.getconn(timeout=max(min(left, SLICE), 0.001))
        except PoolTimeout:
            if (failures(pool) != seen and not probe) or time.monotonic() >= deadline:
                raise


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class PostgresStore:
    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._max_size = max_size
        self._opening = asyncio.Lock()
        self.gate = Gate(timeout=5.0)

    async def open(self) -> None:
        if self._pool is not None:
            return
        wait, _ = self.gate.admit()
        async with self._opening:
            if self._pool is not None:
                self.gate.release()
                return
            pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]
            options = pool_options(AsyncConnectionPool, self._max_size, self.gate.timeout)
            pool = AsyncConnectionPool(self.url, **options)
            try:
                await pool.open(wait=True, timeout=wait)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await conn.execute(SCHEMA)
                    await self._upgrade(conn)
                await self._migrate(pool)
            except (psycopg.Error, Exception) as exc:
                await pool.close()
                self.gate.down(exc)
                raise Unavailable(UNAVAILABLE, headers=RETRY_AFTER) from None
            self.gate.up()
            self._pool = pool

    @staticmethod
    async def _upgrade(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        """Apply the versioned migrations not applied yet (inside the schema lock)."""
        cur = await conn.execute("SELECT max(version) FROM iiifsrv_annotations_schema")
        row = await cur.fetchone()
        done = int(row[0]) if row and row[0] is not None else 0
        for number, sql in enumerate(MIGRATIONS, start=1):
            if number > done:
                await conn.execute(sql.encode())
        if done < SCHEMA_VERSION:
            await conn.execute("DELETE FROM iiifsrv_annotations_schema")
            await conn.execute(
                "INSERT INTO iiifsrv_annotations_schema (version) VALUES (%s)", (SCHEMA_VERSION,)
            )

    @staticmethod
    async def _migrate(pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]) -> None:
        """Fill the region of rows written before the column existed (the SVG of each is parsed
        once here, in a thread, and never again per request)."""
        while True:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"SELECT seq, doc FROM {TABLE} WHERE region IS NULL"
                    " LIMIT %s FOR UPDATE SKIP LOCKED",
                    (MIGRATE_BATCH,),
                )
                rows = await cur.fetchall()
                regions = await asyncio.to_thread(_regions, rows)
                async with conn.cursor() as many:
                    await many.executemany(
                        f"UPDATE {TABLE} SET region = %s WHERE seq = %s", regions
                    )
            if len(rows) < MIGRATE_BATCH:
                return

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
        """A pooled connection, under the outage rule: a 503 at once while the database is
        known to be down; a lost connection or none within the wait is a 503 too."""
        await self.open()
        pool = self._pool
        assert pool is not None
        wait, probe = self.gate.admit()
        try:
            conn = await _borrow(pool, wait, probe)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.gate.down(exc)
            raise Unavailable(UNAVAILABLE, headers=RETRY_AFTER) from None
        except BaseException:
            self.gate.release()
            raise
        try:
            async with conn:  # as the pool's own connection(): commit, or roll back on error
                yield conn
        except psycopg.OperationalError as exc:
            self.gate.down(exc)
            raise Unavailable(UNAVAILABLE, headers=RETRY_AFTER) from None
        except BaseException:
            self.gate.release()
            raise
        finally:
            await pool.putconn(conn)
        self.gate.up()

    async def _one(self, sql: str, args: list[Any] | tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            async with self._connection() as conn:
                cur = await conn.execute(sql, args)
                return await cur.fetchone()
        except psycopg.DataError as exc:
            log.warning("annotation value refused by the database: %s", exc)
            raise BadRequest("a value in this annotation cannot be stored") from None

    async def _all(self, sql: str, args: list[Any]) -> list[Record]:
        try:
            async with self._connection() as conn:
                cur = await conn.execute(sql, args)
                rows = await cur.fetchall()
        except psycopg.DataError as exc:
            log.warning("annotation value refused by the database: %s", exc)
            raise BadRequest("a value in this annotation cannot be stored") from None
        # Decoding big documents is CPU work: off the event loop.
        return await asyncio.to_thread(_records, rows)

    async def _count(self, sql: str, args: list[Any]) -> int:
        row = await self._one(sql, args)
        assert row is not None
        return int(row[0])

    @staticmethod
    def _row(
        key: str, checked: Checked, via: str, writer: tuple[str, str, Doc | None], stamp: str
    ) -> tuple[Any, ...]:
        creator, kind, generator = writer
        return (key, checked.canvas, checked.manifest, via, creator, _dumps(checked.doc),
                checked.text, stamp, stamp, checked.region, kind,
                _dumps(generator) if generator else "")  # fmt: skip

    INSERT = (
        f"INSERT INTO {TABLE} (key, canvas, manifest, via, creator, doc, body_text,"
        " created, modified, version, deleted, changed, region, kind, generator) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, FALSE,"
        " nextval('iiifsrv_annotation_changes'), %s, %s, %s)"
    )

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
        try:
            await self._one(
                self.INSERT + " RETURNING seq",
                self._row(key, checked, via, (creator, kind, generator), stamp),
            )
        except psycopg.errors.UniqueViolation:
            raise KeyTaken(key) from None
        return Record(key, checked.canvas, checked.manifest, via, creator, checked.doc,
                      stamp, stamp, 1, region=checked.region, kind=kind,
                      generator=generator)  # fmt: skip

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
        writer = (creator, kind, generator)
        rows = [self._row(key, checked, "", writer, stamp) for key, checked in items]
        replaced = 0
        try:
            async with self._connection() as conn, conn.transaction():
                if replace:
                    cur = await conn.execute(
                        f"UPDATE {TABLE} SET deleted = TRUE, body_text = '', modified = %s,"
                        " version = version + 1, changed = nextval('iiifsrv_annotation_changes')"
                        " WHERE canvas = %s AND creator = %s AND kind = %s AND NOT deleted",
                        (stamp, canvas, creator, kind),
                    )
                    replaced = cur.rowcount
                async with conn.cursor() as many:
                    await many.executemany(self.INSERT, rows)
        except psycopg.errors.UniqueViolation:
            raise KeyTaken("a key of this batch") from None
        except psycopg.DataError as exc:
            log.warning("annotation value refused by the database: %s", exc)
            raise BadRequest("a value in this batch cannot be stored") from None
        made = [
            Record(
                key,
                checked.canvas,
                checked.manifest,
                "",
                creator,
                checked.doc,
                stamp,
                stamp,
                1,
                region=checked.region,
                kind=kind,
                generator=generator,
            )  # fmt: skip
            for key, checked in items
        ]
        return made, replaced

    async def get(self, key: str) -> Record | None:
        row = await self._one(f"SELECT {COLUMNS} FROM {TABLE} WHERE key = %s", (key,))
        return await asyncio.to_thread(_record, row) if row else None

    async def find_via(self, via: str) -> Record | None:
        row = await self._one(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE via = %s AND NOT deleted"
            " ORDER BY seq DESC LIMIT 1",
            (via,),
        )
        return await asyncio.to_thread(_record, row) if row else None

    async def update(self, key: str, checked: Checked, version: int) -> Record:
        row = await self._one(
            f"UPDATE {TABLE} SET canvas = %s, manifest = %s, doc = %s, body_text = %s,"
            " region = %s, modified = %s, version = version + 1,"
            " changed = nextval('iiifsrv_annotation_changes')"
            f" WHERE key = %s AND version = %s AND NOT deleted RETURNING {COLUMNS}",
            (
                checked.canvas,
                checked.manifest,
                _dumps(checked.doc),
                checked.text,
                checked.region,
                now(),
                key,
                version,
            ),  # fmt: skip
        )
        if row is None:
            raise VersionConflict(key)
        return await asyncio.to_thread(_record, row)

    async def delete(self, key: str, version: int) -> None:
        row = await self._one(
            f"UPDATE {TABLE} SET deleted = TRUE, body_text = '', modified = %s,"
            " version = version + 1, changed = nextval('iiifsrv_annotation_changes')"
            " WHERE key = %s AND version = %s AND NOT deleted RETURNING seq",
            (now(), key, version),
        )
        if row is None:
            raise VersionConflict(key)

    async def state(self, scope: Scope) -> tuple[int, int]:
        where, args = _where(scope)
        row = await self._one(
            f"SELECT count(*) FILTER (WHERE NOT deleted), coalesce(max(changed), 0)"
            f" FROM {TABLE} WHERE {where}",
            args,
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def select(self, scope: Scope, offset: int = 0, limit: int | None = None) -> list[Record]:
        where, args = _where(scope)
        return await self._all(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE {where} AND NOT deleted"
            " ORDER BY seq LIMIT %s OFFSET %s",
            [*args, limit, offset],
        )

    @staticmethod
    def _matching(scope: Scope, words: list[str], writers: Writers) -> tuple[str, list[Any]]:
        where, args = _where(scope)
        if words:
            where = "tsv @@ to_tsquery('simple', %s) AND " + where
            args = [_tsquery(words), *args]
        if writers:
            where += " AND (" + " OR ".join("(kind = %s AND creator = %s)" for _ in writers) + ")"
            args = [*args, *(value for pair in writers for value in pair)]
        return where + " AND NOT deleted", args

    async def search(
        self,
        scope: Scope,
        words: list[str],
        writers: Writers = (),
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Record]:
        where, args = self._matching(scope, words, writers)
        return await self._all(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE {where} ORDER BY seq LIMIT %s OFFSET %s",
            [*args, limit, offset],
        )

    async def search_total(self, scope: Scope, words: list[str], writers: Writers = ()) -> int:
        where, args = self._matching(scope, words, writers)
        return await self._count(f"SELECT count(*) FROM {TABLE} WHERE {where}", args)

    # ---- migration: canvas keys (see AnnotationService.ready) ------------------------------

    async def absolute_uris(self) -> set[str]:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT canvas FROM {TABLE} WHERE canvas LIKE 'http%%'"
                f" UNION SELECT manifest FROM {TABLE} WHERE manifest LIKE 'http%%'"
            )
            return {str(r[0]) for r in await cur.fetchall()}

    async def rename(self, renames: dict[str, str]) -> int:
        count = 0
        async with self._connection() as conn, conn.transaction():
            for old, new in renames.items():
                for column in ("canvas", "manifest"):
                    cur = await conn.execute(
                        f"UPDATE {TABLE} SET {column} = %s WHERE {column} = %s", (new, old)
                    )
                    count += cur.rowcount
        return count
