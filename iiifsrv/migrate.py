"""``iiifsrv migrate``: copy a data directory's catalogue (objects, fitted transforms), manifests
(records and stored bytes), Change Discovery log and annotations from SQLite and files into
PostgreSQL.

Blocking; imports catalogue, presentation store backends and database (a tool one floor above
them, like iiifsrv.state). Idempotent: rows already present and equal are left alone, the
activity log is copied only into an empty log (a second run finds it there and checks it).
Verified by counts and SHA-256 checksums of both sides after the copy.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iiifsrv.annotations import postgres as annotations_pg
from iiifsrv.catalogue.postgres import PostgresCatalogue
from iiifsrv.catalogue.sqlite import SqliteCatalogue
from iiifsrv.database import Database
from iiifsrv.presentation.files import FileManifestStore
from iiifsrv.presentation.pgstore import PostgresManifestStore
from iiifsrv.presentation.store import Activity

Row = tuple[str, ...]


@dataclass
class Outcome:
    """What one table's copy did and whether both sides agree afterwards."""

    name: str
    source: int = 0
    copied: int = 0
    unchanged: int = 0
    checksum: str = ""
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        state = "verified" if not self.problems else "MISMATCH: " + "; ".join(self.problems[:3])
        return (
            f"{self.name:<11} {self.source:>6} in the data directory, {self.copied:>6} copied, "
            f"{self.unchanged:>6} already there, sha256 {self.checksum[:16]} {state}"
        )


def _checksum(rows: Iterable[Iterable[object]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([str(v) for v in row], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def migrate(data: Path, database_url: str) -> list[Outcome]:
    """Copy ``data``'s state into the database at ``database_url``; one outcome per table."""
    database = Database(database_url, max_size=2)
    try:
        catalogue = PostgresCatalogue(database)
        manifests = PostgresManifestStore(database)
        return [
            _objects(SqliteCatalogue(data / "catalogue.sqlite3"), catalogue),
            _transforms(SqliteCatalogue(data / "catalogue.sqlite3"), catalogue),
            *_manifests(data, manifests),
            _annotations(data / "annotations.sqlite3", database),
        ]
    finally:
        database.close()


def _objects(source: SqliteCatalogue, target: PostgresCatalogue) -> Outcome:
    out = Outcome("objects")
    rows = source.rows()
    have = {r[0]: r for r in target.rows()}
    for row in rows:
        if have.get(row[0]) == row:
            out.unchanged += 1
        else:
            target.put_row(*row)
            out.copied += 1
    out.source = len(rows)
    after = {r[0]: r for r in target.rows()}
    out.checksum = _checksum(rows)
    if _checksum(after.get(r[0], ()) for r in rows) != out.checksum:
        out.problems.append("objects differ after the copy")
    return out


def _transforms(source: SqliteCatalogue, target: PostgresCatalogue) -> Outcome:
    out = Outcome("transforms")
    rows = source.transform_rows()
    have = {(r[0], r[1]): r for r in target.transform_rows()}
    for row in rows:
        if have.get((row[0], row[1])) == row:
            out.unchanged += 1
        else:
            target.put_transform_row(*row)
            out.copied += 1
    out.source = len(rows)
    after = {(r[0], r[1]): r for r in target.transform_rows()}
    out.checksum = _checksum(rows)
    if _checksum(after.get((r[0], r[1]), ()) for r in rows) != out.checksum:
        out.problems.append("transforms differ after the copy")
    return out


def _manifests(data: Path, target: PostgresManifestStore) -> list[Outcome]:
    out, log = Outcome("manifests"), Outcome("activities")
    if not (data / "presentation.sqlite3").is_file():
        return [out, log]
    source = FileManifestStore(data)
    records = source.list()
    for record in records:
        body = source.read(record.id)
        if body is None or hashlib.sha256(body).hexdigest() != record.digest:
            out.problems.append(f"{record.id!r}: the file does not match its recorded digest")
            continue
        current = target.get(record.id)
        if current == record and target.read(record.id) == body:
            out.unchanged += 1
            continue
        target.put_stored(record, body, json.loads(body))
        out.copied += 1
    out.source = len(records)
    out.checksum = _checksum((r.id, r.digest, r.version) for r in records)
    for record in records:
        body = target.read(record.id)
        stored = target.get(record.id)
        if body is None or stored is None or hashlib.sha256(body).hexdigest() != record.digest:
            out.problems.append(f"{record.id!r} differs after the copy")
    if _checksum((r.id, r.digest, r.version) for r in records if target.get(r.id)) != out.checksum:
        out.problems.append("the manifest records differ after the copy")

    activities = source.activity_rows()
    log.source = len(activities)
    log.checksum = _checksum(_plain(activities))
    present = target.activities(0, len(activities)) if activities else []
    if not present and activities:
        target.append_activities(activities)
        log.copied = len(activities)
    elif _checksum(_plain(present)) == log.checksum:
        log.unchanged = len(activities)
    else:
        log.problems.append(
            "the PostgreSQL change log already holds other activities: it was left as it is"
        )
    if not log.problems:
        copied = target.activities(0, len(activities)) if activities else []
        if _checksum(_plain(copied)) != log.checksum:
            log.problems.append("the change log differs after the copy")
    return [out, log]


def _plain(items: Iterable[Activity]) -> Iterable[Row]:
    """An activity without its number (PostgreSQL numbers its own)."""
    return [(a.type, a.manifest_id, a.end_time) for a in items]


# The annotation columns both backends share; ``changed`` is renumbered, ``seq`` keeps the order.
_ANNOTATION_COLUMNS = (
    "key, canvas, manifest, via, creator, doc, body_text, created, modified, version, deleted, "
    "region"
)


def _annotation_row(row: Iterable[object]) -> tuple[str, ...]:
    values = list(row)
    values[10] = bool(values[10])  # deleted: an integer in SQLite, a boolean in PostgreSQL
    return tuple(str(v) for v in values)


def _annotations(path: Path, database: Database) -> Outcome:
    """Every annotation row (deleted ones too: their keys stay taken), in the order written."""
    out = Outcome("annotations")
    if not path.is_file():
        return out
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(f"SELECT {_ANNOTATION_COLUMNS} FROM annotations ORDER BY seq").fetchall()
    finally:
        db.close()
    database.ensure("annotations", annotations_pg.SCHEMA)
    table = annotations_pg.TABLE
    with database.connection() as conn:
        have = {
            r[0]: _annotation_row(r)
            for r in conn.execute(f"SELECT {_ANNOTATION_COLUMNS} FROM {table}").fetchall()
        }
        with conn.transaction():
            for row in rows:
                plain = _annotation_row(row)
                if have.get(plain[0]) == plain:
                    out.unchanged += 1
                    continue
                values = list(row)
                values[10] = bool(values[10])
                conn.execute(
                    f"INSERT INTO {table} ({_ANNOTATION_COLUMNS}, changed) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                    "nextval('iiifsrv_annotation_changes')) ON CONFLICT (key) DO UPDATE SET "
                    "canvas = excluded.canvas, manifest = excluded.manifest, via = excluded.via, "
                    "creator = excluded.creator, doc = excluded.doc, "
                    "body_text = excluded.body_text, created = excluded.created, "
                    "modified = excluded.modified, version = excluded.version, "
                    "deleted = excluded.deleted, region = excluded.region, "
                    "changed = excluded.changed",
                    values,
                )
                out.copied += 1
        after = {
            r[0]: _annotation_row(r)
            for r in conn.execute(f"SELECT {_ANNOTATION_COLUMNS} FROM {table}").fetchall()
        }
    out.source = len(rows)
    out.checksum = _checksum(_annotation_row(r) for r in rows)
    if _checksum(after.get(str(r[0]), ()) for r in rows) != out.checksum:
        out.problems.append("annotations differ after the copy")
    return out
