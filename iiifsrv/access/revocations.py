"""Sessions signed out before they expire, shared by every worker and replica: a table in the
state database (PostgreSQL with ``database_url``, else ``<data>/sessions.sqlite3``).

Blocking I/O; imports the standard library and iiifsrv.database (PostgreSQL). Each process
keeps the revoked session ids it knows and reads the rows added since, at most every
``interval`` seconds (``session_revocation_check``): a sign-out reaches every worker within that
interval, at once in the worker that handled it. A store that cannot be read is Unavailable
(503, and the token service's ``unavailable``): access is never granted on a guess.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from iiifsrv.database import Database
from iiifsrv.errors import Unavailable

log = logging.getLogger("iiifsrv.access")
FILE = "sessions.sqlite3"
SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revoked_sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "sid TEXT NOT NULL UNIQUE, expires INTEGER NOT NULL)"
)
PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revoked_sessions (id BIGSERIAL PRIMARY KEY, "
    "sid TEXT NOT NULL UNIQUE, expires BIGINT NOT NULL)"
)


class Revocations:
    def __init__(
        self,
        data: Path,
        database: Database | None,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = data / FILE
        self.database = database
        self.interval = interval
        self.clock = clock
        self.wall = wall
        self._known: dict[str, int] = {}  # sid -> expiry (unix seconds)
        self._last_id = 0
        self._synced = -1e18
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- the two backends ------------------------------------------------------------------

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SQLITE_SCHEMA)
            self._local.conn = conn
        return conn

    def _rows_since(self, last: int) -> list[tuple[int, str, int]]:
        now = int(self.wall())
        query = "SELECT id, sid, expires FROM revoked_sessions WHERE id > {p} AND expires > {p}"
        if self.database is not None:
            self.database.ensure("revoked_sessions", PG_SCHEMA)
            with self.database.connection() as conn:
                rows = conn.execute(query.format(p="%s"), (last, now)).fetchall()
            return [(int(a), str(b), int(c)) for a, b, c in rows]
        try:
            got = self._sqlite().execute(query.format(p="?"), (last, now)).fetchall()
        except sqlite3.Error as exc:
            log.error("session revocations unreadable: %s", exc)
            raise Unavailable("session store unavailable") from None
        return [(int(a), str(b), int(c)) for a, b, c in got]

    def _insert(self, sid: str, expires: int) -> None:
        now = int(self.wall())
        if self.database is not None:
            self.database.ensure("revoked_sessions", PG_SCHEMA)
            with self.database.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO revoked_sessions (sid, expires) VALUES (%s, %s) "
                    "ON CONFLICT (sid) DO NOTHING",
                    (sid, expires),
                )
                conn.execute("DELETE FROM revoked_sessions WHERE expires <= %s", (now,))
            return
        try:
            db = self._sqlite()
            db.execute(
                "INSERT OR IGNORE INTO revoked_sessions (sid, expires) VALUES (?, ?)",
                (sid, expires),
            )
            db.execute("DELETE FROM revoked_sessions WHERE expires <= ?", (now,))
        except sqlite3.Error as exc:
            log.error("session revocation not stored: %s", exc)
            raise Unavailable("session store unavailable") from None

    # -- what Credentials uses -----------------------------------------------------------------

    def revoke(self, sid: str, expires: int) -> None:
        """Record a sign-out (for every worker), and know it here at once."""
        self._insert(sid, expires)
        with self._lock:
            self._known[sid] = expires

    def revoked(self, sid: str) -> bool:
        """Whether ``sid`` was signed out (here, or anywhere up to ``interval`` s ago)."""
        now = self.clock()
        if now - self._synced >= self.interval:
            rows = self._rows_since(self._last_id)
            with self._lock:
                for row_id, revoked_sid, expires in rows:
                    self._known[revoked_sid] = expires
                    self._last_id = max(self._last_id, row_id)
                wall = int(self.wall())
                if len(self._known) > 1000:
                    self._known = {s: e for s, e in self._known.items() if e > wall}
                self._synced = now
        return sid in self._known
