"""PostgreSQL backend of the annotation store (psycopg 3 async, psycopg_pool), tsvector full text.

Imports psycopg, psycopg_pool, store (interface), model and errors. Tables live in the schema
that the connection's search_path names first (e.g. ``?options=-csearch_path%3Dannos``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from iiifsrv.annotations.model import Checked, Record
from iiifsrv.annotations.store import KeyTaken, Scope, VersionConflict, now
from iiifsrv.errors import BadRequest, Unavailable

log = logging.getLogger("iiifsrv.annotations")
# What a client is told; the database's own message (hosts, ports, users) goes to the log.
UNAVAILABLE = "annotation database unavailable"

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
    changed BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_canvas ON iiifsrv_annotations (canvas, seq);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_manifest ON iiifsrv_annotations (manifest, seq);
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_via ON iiifsrv_annotations (via) WHERE via <> '';
CREATE INDEX IF NOT EXISTS iiifsrv_annotations_tsv ON iiifsrv_annotations USING GIN (tsv);
"""

COLUMNS = "key, canvas, manifest, via, creator, doc, created, modified, version, deleted"
TABLE = "iiifsrv_annotations"
# An arbitrary constant: serialises schema creation between workers starting together.
SCHEMA_LOCK = 0x11F5_A770


def _record(row: tuple[Any, ...]) -> Record:
    key, canvas, manifest, via, creator, doc, created, modified, version, deleted = row
    return Record(key, canvas, manifest, via, creator, json.loads(doc), created, modified,
                  version, bool(deleted))  # fmt: skip


def _where(scope: Scope) -> tuple[str, list[Any]]:
    if scope.kind == "canvas":
        return "canvas = %s", [scope.uri]
    if scope.kind == "manifest":
        return "(manifest = %s OR starts_with(canvas, %s))", [scope.uri, scope.canvas_prefix]
    return "TRUE", []


def _tsquery(words: list[str]) -> str:
    # Words come from model.words (\w+ only), so they are safe tsquery lexemes once quoted.
    terms = []
    for word in words:
        prefix = word.endswith("*")
        lexeme = "'" + word.rstrip("*").replace("'", "''").replace("\\", "") + "'"
        terms.append(lexeme + (":*" if prefix else ""))
    return " & ".join(terms)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class PostgresStore:
    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None
        self._max_size = max_size
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._opening:
            if self._pool is not None:
                return
            pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]
            pool = AsyncConnectionPool(self.url, min_size=1, max_size=self._max_size, open=False)
            try:
                await pool.open(wait=True, timeout=10)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await conn.execute(SCHEMA)
            except (psycopg.Error, Exception) as exc:
                await pool.close()
                log.error("annotation database unavailable: %s", exc)
                raise Unavailable(UNAVAILABLE) from None
            self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _pool_ready(self) -> AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]:
        await self.open()
        assert self._pool is not None
        return self._pool

    async def _one(self, sql: str, args: list[Any] | tuple[Any, ...]) -> tuple[Any, ...] | None:
        pool = await self._pool_ready()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(sql, args)
                return await cur.fetchone()
        except psycopg.DataError as exc:
            log.warning("annotation value refused by the database: %s", exc)
            raise BadRequest("a value in this annotation cannot be stored") from None
        except psycopg.OperationalError as exc:
            log.error("annotation database unavailable: %s", exc)
            raise Unavailable(UNAVAILABLE) from None

    async def _all(self, sql: str, args: list[Any]) -> list[Record]:
        pool = await self._pool_ready()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(sql, args)
                return [_record(r) for r in await cur.fetchall()]
        except psycopg.DataError as exc:
            log.warning("annotation value refused by the database: %s", exc)
            raise BadRequest("a value in this annotation cannot be stored") from None
        except psycopg.OperationalError as exc:
            log.error("annotation database unavailable: %s", exc)
            raise Unavailable(UNAVAILABLE) from None

    async def create(self, key: str, checked: Checked, via: str, creator: str) -> Record:
        stamp = now()
        try:
            await self._one(
                f"INSERT INTO {TABLE} (key, canvas, manifest, via, creator, doc, body_text,"
                " created, modified, version, deleted, changed) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, FALSE,"
                " nextval('iiifsrv_annotation_changes')) RETURNING seq",
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
                ),  # fmt: skip
            )
        except psycopg.errors.UniqueViolation:
            raise KeyTaken(key) from None
        return Record(key, checked.canvas, checked.manifest, via, creator, checked.doc,
                      stamp, stamp, 1)  # fmt: skip

    async def get(self, key: str) -> Record | None:
        row = await self._one(f"SELECT {COLUMNS} FROM {TABLE} WHERE key = %s", (key,))
        return _record(row) if row else None

    async def find_via(self, via: str) -> Record | None:
        row = await self._one(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE via = %s AND NOT deleted"
            " ORDER BY seq DESC LIMIT 1",
            (via,),
        )
        return _record(row) if row else None

    async def update(self, key: str, checked: Checked, version: int) -> Record:
        row = await self._one(
            f"UPDATE {TABLE} SET canvas = %s, manifest = %s, doc = %s, body_text = %s,"
            " modified = %s, version = version + 1,"
            " changed = nextval('iiifsrv_annotation_changes')"
            f" WHERE key = %s AND version = %s AND NOT deleted RETURNING {COLUMNS}",
            (
                checked.canvas,
                checked.manifest,
                _dumps(checked.doc),
                checked.text,
                now(),
                key,
                version,
            ),  # fmt: skip
        )
        if row is None:
            raise VersionConflict(key)
        return _record(row)

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

    async def search(
        self, scope: Scope, words: list[str], creator: str = "", limit: int = 1000
    ) -> list[Record]:
        if not words:
            return []
        where, args = _where(scope)
        extra = " AND creator = %s" if creator else ""
        return await self._all(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE tsv @@ to_tsquery('simple', %s)"
            f" AND {where} AND NOT deleted{extra} ORDER BY seq LIMIT %s",
            [_tsquery(words), *args, *([creator] if creator else []), limit],
        )

    # ---- migration: canvas keys (see AnnotationService.ready) ------------------------------

    async def absolute_uris(self) -> set[str]:
        pool = await self._pool_ready()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT canvas FROM {TABLE} WHERE canvas LIKE 'http%%'"
                    f" UNION SELECT manifest FROM {TABLE} WHERE manifest LIKE 'http%%'"
                )
                return {str(r[0]) for r in await cur.fetchall()}
        except psycopg.OperationalError as exc:
            raise Unavailable(f"annotation database unavailable: {exc}") from None

    async def rename(self, renames: dict[str, str]) -> int:
        pool = await self._pool_ready()
        count = 0
        try:
            async with pool.connection() as conn, conn.transaction():
                for old, new in renames.items():
                    for column in ("canvas", "manifest"):
                        cur = await conn.execute(
                            f"UPDATE {TABLE} SET {column} = %s WHERE {column} = %s", (new, old)
                        )
                        count += cur.rowcount
        except psycopg.OperationalError as exc:
            raise Unavailable(f"annotation database unavailable: {exc}") from None
        return count
