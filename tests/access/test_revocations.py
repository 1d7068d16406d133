"""The shared sign-out list, SQLite and PostgreSQL alike: a sign-out recorded by one process
is seen by another (two stores over one backend stand for two workers or replicas) within the
interval, at once with interval 0; expired rows are dropped; the writer knows at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iiifsrv.access.revocations import Revocations
from iiifsrv.database import Database
from tests.state.conftest import drop_schema, new_schema, pg_url

Two = tuple[Revocations, Revocations, Revocations, list[float]]


@pytest.fixture(params=["sqlite", "postgres"])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Two]:
    """Two processes' views of one sign-out list, with a shared fake clock [now]."""
    clock = [1000.0]
    databases: list[Database] = []
    schema = ""
    if request.param == "postgres":
        schema = new_schema()
        databases = [Database(pg_url(schema)), Database(pg_url(schema))]

    def make(i: int, interval: int) -> Revocations:
        db = databases[i] if databases else None
        return Revocations(tmp_path, db, interval, clock=lambda: clock[0], wall=lambda: clock[0])

    yield make(0, 0), make(1, 0), make(1, 5), clock
    for db in databases:
        db.close()
    if schema:
        drop_schema(schema)


def test_a_sign_out_reaches_the_other_process(two: Two) -> None:
    here, there, lazy, clock = two
    assert not there.revoked("s1") and not lazy.revoked("s1")  # read once (lazy: now synced)
    here.revoke("s1", int(clock[0]) + 60)
    assert here.revoked("s1")
    assert there.revoked("s1"), "interval 0: read at once"
    assert not lazy.revoked("s1"), "within its interval the lazy one has not read yet"
    clock[0] += 5
    assert lazy.revoked("s1")
    clock[0] += 60
    here.revoke("s2", int(clock[0]) + 60)  # expired rows are dropped on write
    fresh = Revocations(here.path.parent, here.database, 0, wall=lambda: clock[0])
    assert fresh.revoked("s2") and not fresh.revoked("s1")
