"""The app's one PostgreSQL connection pool (psycopg 3, blocking) for the catalogue, the manifest
store and the activity log; opened on first use, closed with the app.

Blocking I/O; imports psycopg, psycopg_pool and errors. Tables live in the schema the URL's
search_path names first. A database that cannot be reached is a 503, its message goes to the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from iiifsrv.errors import Unavailable

log = logging.getLogger("iiifsrv.database")
UNAVAILABLE = "database unavailable"
# An arbitrary constant: serialises schema creation between processes starting together.
SCHEMA_LOCK = 0x11F5_57A7

Connection = psycopg.Connection[tuple[Any, ...]]


class Database:
    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self._max_size = max_size
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()
        self._schemas: set[str] = set()

    def _open(self) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None:
                pool: ConnectionPool[Connection] = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    open=False,
                    timeout=10,
                    kwargs={"autocommit": True},
                )
                try:
                    pool.open(wait=True, timeout=10)
                except (psycopg.Error, PoolTimeout) as exc:
                    pool.close()
                    log.error("%s: %s", UNAVAILABLE, exc)
                    raise Unavailable(UNAVAILABLE) from None
                self._pool = pool
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in autocommit mode (use ``conn.transaction()`` to group writes);
        a database error becomes a 503 whose details go to the log."""
        pool = self._pool or self._open()
        try:
            with pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.error("%s: %s", UNAVAILABLE, exc)
            raise Unavailable(UNAVAILABLE) from None

    def ensure(self, name: str, schema: str) -> None:
        """Run ``schema`` (idempotent DDL) once per process, serialised between processes."""
        if name in self._schemas:
            return
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(schema.encode())
        self._schemas.add(name)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
