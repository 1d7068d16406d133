"""The app's one PostgreSQL connection pool (psycopg 3, blocking) for the catalogue, the manifest
store and the activity log; opened on first use, closed with the app.

Blocking I/O; imports psycopg, psycopg_pool and errors. Tables live in the schema the URL's
search_path names first. A database that cannot be reached is a 503, its message goes to the log;
``Gate`` is the outage rule (fail fast while it is down, one call at a time tries again) that the
annotation store's own pool follows too: a restart of PostgreSQL is noticed by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from iiifsrv.errors import Unavailable

log = logging.getLogger("iiifsrv.database")
UNAVAILABLE = (
    "the database is unavailable: manifests, annotations and changes wait until it is back "
    "(images are still served); try again shortly"
)
BUSY = "the database is busy: try again shortly"
RETRY_AFTER = {"Retry-After": "5"}
# An arbitrary constant: serialises schema creation between processes starting together.
SCHEMA_LOCK = 0x11F5_57A7

Connection = psycopg.Connection[tuple[Any, ...]]


# A wait for a pooled connection is made of slices this long: between two, a failed connection
# attempt or a connection found broken (PostgreSQL gone) ends it, rather than the whole timeout.
SLICE = 0.25
CONNECT_TIMEOUT = 5  # seconds for one connection attempt


def pool_options(
    pool_class: type[ConnectionPool[Any]] | type[AsyncConnectionPool[Any]],
    max_size: int,
    timeout: float,
    **connection: Any,
) -> dict[str, Any]:
    """The options of every pool here (this module's blocking one, the annotation store's async
    one): one connection kept, at most ``max_size``, opened by the caller, a wait of ``timeout``
    for a connection while the database is up, each connection checked before it is lent (one
    the server closed in a restart is never handed out) and new ones made in the background;
    ``connection`` adds to the connection's own arguments."""
    return {
        "min_size": 1,
        "max_size": max_size,
        "open": False,
        "timeout": timeout,
        "check": pool_class.check_connection,
        "kwargs": {"connect_timeout": CONNECT_TIMEOUT, **connection},
    }


def failures(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> int:
    """Connection attempts that failed and connections found broken, so far."""
    stats = pool.get_stats()
    return stats.get("connections_errors", 0) + stats.get("connections_lost", 0)


def borrow(pool: ConnectionPool[Connection], allowed: float, probe: bool) -> Connection:
    """A connection within ``allowed`` seconds, give it back with ``pool.putconn``; PoolTimeout
    sooner when a connection fails meanwhile, unless this call is the probe of a database
    known to be down (attempts begun before it came back may still fail: wait them out)."""
    deadline = time.monotonic() + allowed
    seen = failures(pool)
    while True:
        left = deadline - time.monotonic()
        try:
            return pool.getconn(timeout=max(min(left, SLICE), 0.001))
        except PoolTimeout:
            if (failures(pool) != seen and not probe) or time.monotonic() >= deadline:
                raise


class Gate:
    """The outage rule every database client follows: after a failure to reach the database,
    calls fail at once for ``retry_s``; then one call at a time tries again, waiting at most
    ``probe_s``, until one succeeds. Thread-safe and non-blocking (usable from async code)."""

    def __init__(self, timeout: float, retry_s: float = 1.0, probe_s: float = 1.0) -> None:
        self.timeout = timeout  # waiting for a pooled connection while the database is up
        self.retry_s = retry_s
        self.probe_s = probe_s
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # None: up; else down, next try at this time
        self._probing = False

    def admit(self, wait: float | None = None) -> tuple[float, bool]:
        """(how long this call may wait for a connection, whether it is the one probing a
        database known to be down); Unavailable (503) at once while the database is known to be
        down and it is not this call's turn to try it."""
        wanted = self.timeout if wait is None else wait
        with self._lock:
            if self._retry_at is None:
                return wanted, False
            if self._probing or time.monotonic() < self._retry_at:
                raise Unavailable(UNAVAILABLE, headers=RETRY_AFTER)
            self._probing = True
            return min(wanted, self.probe_s), True

    def up(self) -> None:
        with self._lock:
            if self._retry_at is not None:
                log.warning("database reachable again")
            self._retry_at, self._probing = None, False

    def down(self, exc: BaseException) -> Unavailable:
        """Note the failure; the 503 to raise."""
        with self._lock:
            if self._retry_at is None:
                log.error("%s: %s", UNAVAILABLE, exc)
            self._retry_at = time.monotonic() + self.retry_s
            self._probing = False
        return Unavailable(UNAVAILABLE, headers=RETRY_AFTER)

    def release(self) -> None:
        """The call ended with an error of its own (the database answered, or was not asked)."""
        with self._lock:
            self._probing = False


class Database:
    def __init__(
        self,
        url: str,
        *,
        max_size: int = 8,
        timeout: float = 5.0,
        retry_s: float = 1.0,
        probe_s: float = 1.0,
    ) -> None:
        self.url = url
        self._max_size = max_size
        self.gate = Gate(timeout, retry_s, probe_s)
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()
        self._schemas: set[str] = set()

    def _open(self, wait: float) -> ConnectionPool[Connection]:
        with self._lock:
            if self._pool is None:
                options = pool_options(
                    ConnectionPool, self._max_size, self.gate.timeout, autocommit=True
                )
                pool: ConnectionPool[Connection] = ConnectionPool(self.url, **options)
                try:
                    pool.open(wait=True, timeout=wait)
                except BaseException:
                    pool.close()
                    raise
                self._pool = pool
            return self._pool

    def _saturated(self) -> bool:
        """Every connection the pool may have exists and is lent: busy, not down."""
        pool = self._pool
        return pool is not None and pool.get_stats().get("pool_size", 0) >= self._max_size

    @contextmanager
    def connection(self, wait: float | None = None) -> Iterator[Connection]:
        """A pooled connection in autocommit mode (use ``conn.transaction()`` to group writes),
        waiting at most ``wait`` seconds for one (default: the gate's timeout); a database that
        cannot be reached is a 503 whose details go to the log."""
        allowed, probe = self.gate.admit(wait)
        try:
            pool = self._pool or self._open(allowed)
            conn = borrow(pool, allowed, probe)
        except PoolTimeout as exc:
            if self._saturated():
                self.gate.release()
                raise Unavailable(BUSY, headers=RETRY_AFTER) from None
            raise self.gate.down(exc) from None
        except psycopg.OperationalError as exc:
            raise self.gate.down(exc) from None
        except BaseException:
            self.gate.release()
            raise
        try:
            with conn:  # as the pool's own connection(): commit, or roll back on error
                yield conn
        except psycopg.OperationalError as exc:
            raise self.gate.down(exc) from None
        except BaseException:
            self.gate.release()
            raise
        finally:
            pool.putconn(conn)
        self.gate.up()

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
