"""Local accounts: name, roles and a scrypt password hash, in ``<data>/accounts.sqlite3``.

Blocking I/O (SQLite); imports only the standard library. Passwords are hashed with the
standard library's ``hashlib.scrypt`` at OWASP's recommended cost (N=2^17, r=8, p=1: 128 MiB and
a few hundred milliseconds per check); the cost is stored with each hash, so it can be raised
later without invalidating old passwords. Comparisons are constant-time, and a login for an
unknown name costs the same as one for a known name.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

FILE = "accounts.sqlite3"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Cost:
    n: int = 2**17
    r: int = 8
    p: int = 1

    @property
    def maxmem(self) -> int:
        return 128 * self.n * self.r * self.p + 16 * 1024 * 1024


STRONG = Cost()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, cost: Cost = STRONG) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64, 16-byte salt, 32-byte key)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, maxmem=cost.maxmem, dklen=32
    )
    return f"scrypt${cost.n}${cost.r}${cost.p}${_b64(salt)}${_b64(key)}"


@functools.cache
def dummy_hash(cost: Cost) -> str:
    """A hash of a random password at ``cost``, checked for unknown names so that a login for an
    unknown name costs as much as one for a known name. Made once per process and cost (it takes
    as long as a real hash, and an application, hence every test's, builds an ``Accounts``)."""
    return hash_password(secrets.token_urlsafe(16), cost)


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        cost = Cost(int(n), int(r), int(p))
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=cost.n,
            r=cost.r,
            p=cost.p,
            maxmem=cost.maxmem,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            "a user name has 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    return name


def check_roles(roles: list[str]) -> tuple[str, ...]:
    out = []
    for role in roles:
        role = role.strip()
        if not role:
            continue
        if not ROLE.match(role) or role == "*":
            raise ValueError(f"role {role!r}: use letters, digits or . _ -")
        out.append(role)
    return tuple(sorted(set(out)))


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


@dataclass(frozen=True)
class Account:
    name: str
    roles: tuple[str, ...]
    stamp: str  # changes with the password: sessions made before a change end


class Accounts:
    """The accounts database (created on first write; absent = no accounts)."""

    def __init__(self, data: Path, cost: Cost = STRONG) -> None:
        self.path = data / FILE
        self.cost = cost
        self._local = threading.local()
        # Made now when accounts exist, so that the first login for an unknown name costs no more
        # than later ones; without accounts every name is unknown (nothing to tell apart), and a
        # server nobody signs in to is spared the hash's time and its 128 MiB of scrypt memory.
        if self.path.is_file():
            dummy_hash(cost)

    def _db(self, create: bool = False) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if not create and not self.path.is_file():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, hash TEXT NOT NULL, "
            "roles TEXT NOT NULL DEFAULT '')"
        )
        conn.commit()
        self._local.conn = conn
        return conn

    @staticmethod
    def _account(row: tuple[str, str, str]) -> Account:
        name, stored, roles = row
        stamp = hashlib.sha256(stored.encode()).hexdigest()[:16]
        return Account(name, tuple(r for r in roles.split(",") if r), stamp)

    def get(self, name: str) -> Account | None:
        db = self._db()
        if db is None:
            return None
        row = db.execute(
            "SELECT name, hash, roles FROM accounts WHERE name = ?", (name,)
        ).fetchone()
        return self._account(row) if row else None

    def all(self) -> list[Account]:
        db = self._db()
        if db is None:
            return []
        rows = db.execute("SELECT name, hash, roles FROM accounts ORDER BY name").fetchall()
        return [self._account(r) for r in rows]

    def add(self, name: str, password: str, roles: list[str]) -> Account:
        check_name(name)
        stored = hash_password(check_password(password), self.cost)
        db = self._db(create=True)
        assert db is not None
        try:
            with db:
                db.execute(
                    "INSERT INTO accounts (name, hash, roles) VALUES (?, ?, ?)",
                    (name, stored, ",".join(check_roles(roles))),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"user {name!r} exists (use passwd or roles)") from None
        found = self.get(name)
        assert found is not None
        return found

    def passwd(self, name: str, password: str) -> None:
        stored = hash_password(check_password(password), self.cost)
        self._update(name, "hash", stored)

    def set_roles(self, name: str, roles: list[str]) -> None:
        self._update(name, "roles", ",".join(check_roles(roles)))

    def _update(self, name: str, column: str, value: str) -> None:
        db = self._db()
        if db is None:
            raise ValueError(f"no user {name!r}")
        with db:
            done = db.execute(
                f"UPDATE accounts SET {column} = ? WHERE name = ?",  # noqa: S608 (fixed column)
                (value, name),
            ).rowcount
        if not done:
            raise ValueError(f"no user {name!r}")

    def remove(self, name: str) -> None:
        db = self._db()
        done = 0
        if db is not None:
            with db:
                done = db.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount
        if not done:
            raise ValueError(f"no user {name!r}")

    def login(self, name: str, password: str) -> Account | None:
        """The account when the password is right; the same work when the name is unknown."""
        db = self._db()
        row = None
        if db is not None and NAME.match(name):
            row = db.execute(
                "SELECT name, hash, roles FROM accounts WHERE name = ?", (name,)
            ).fetchone()
        ok = verify_password(password, row[1] if row else dummy_hash(self.cost))
        return self._account(row) if row and ok else None
