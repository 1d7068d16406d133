"""The catalogue of objects (images, multispectral sets, audio, video) in SQLite, and the fitted
transforms of their computed images (PCA basis, value ranges), one row per object and spec.

Blocking I/O; imports only the standard library. One row per object, JSON for nested fields.
Writes are transactions (WAL): an acknowledged upsert survives a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transforms (
    object_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    version TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (object_id, spec)
);
"""


@dataclass(frozen=True)
class Band:
    name: str
    wavelength_nm: float | None
    image: str
    label: str


@dataclass(frozen=True)
class Composite:
    name: str
    label: str
    image: str


@dataclass(frozen=True)
class Transform:
    """How a computed image's pixels follow from its bands' (README: "Computed images of ...").

    For each output channel c a float64 value v_c is computed from the band values x (as read,
    8 or 16 bit): ``pca``: v_c = sum_i vectors[c][i] * (x_i - means[i]) over ``bands`` in order;
    ``ratio``: (A + 1) / (B + 1); ``difference``: A - B; ``stretch``: A. It is shown as
    ``clip(rint((v_c - low[c]) * (255 / (high[c] - low[c]))), 0, 255)``. Fitted once per object
    version on ``level`` (the width, height of the pyramid level measured).
    """

    op: str  # "pca" | "ratio" | "difference" | "stretch"
    bands: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    level: tuple[int, int] = (0, 0)
    means: tuple[float, ...] = ()
    vectors: tuple[tuple[float, ...], ...] = ()
    sigma: tuple[float, ...] = ()  # pca: the standard deviation of each component

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Transform:
        return cls(
            op=str(doc["op"]),
            bands=tuple(doc["bands"]),
            low=tuple(float(v) for v in doc["low"]),
            high=tuple(float(v) for v in doc["high"]),
            level=(int(doc["level"][0]), int(doc["level"][1])),
            means=tuple(float(v) for v in doc.get("means", ())),
            vectors=tuple(tuple(float(v) for v in row) for row in doc.get("vectors", ())),
            sigma=tuple(float(v) for v in doc.get("sigma", ())),
        )


@dataclass(frozen=True)
class CatalogueObject:
    id: str
    label: str
    kind: str  # "image" | "multispectral" | "audio" | "video"
    metadata: dict[str, str] = field(default_factory=dict)
    rights: str = ""
    source: str = ""
    image: str = ""
    width: int = 0
    height: int = 0
    bands: tuple[Band, ...] = ()
    composites: tuple[Composite, ...] = ()
    media: str = ""
    duration: float | None = None
    content_hash: str = ""
    updated: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CatalogueObject:
        doc = dict(doc)
        doc["bands"] = tuple(Band(**b) for b in doc.get("bands", ()))
        doc["composites"] = tuple(Composite(**c) for c in doc.get("composites", ()))
        doc["metadata"] = dict(doc.get("metadata", {}))
        return cls(**doc)

    def featured_ratio(self) -> tuple[str, str] | None:
        """The band ratio a manifest offers: longest / shortest wavelength (e.g. IR940/UV365),
        the two ends of the captured spectrum; without wavelengths, last / first band."""
        if len(self.bands) < 2:
            return None
        known = [b for b in self.bands if b.wavelength_nm is not None]
        if len(known) >= 2:
            longest = max(known, key=lambda b: b.wavelength_nm or 0.0)
            shortest = min(known, key=lambda b: b.wavelength_nm or 0.0)
            if longest.name != shortest.name:
                return longest.name, shortest.name
        return self.bands[-1].name, self.bands[0].name

    @property
    def version(self) -> str:
        """Changes whenever the object's pixels may have: what fitted transforms are keyed by."""
        return self.content_hash or self.updated


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Catalogue:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def get(self, object_id: str) -> CatalogueObject | None:
        row = (
            self._connect().execute("SELECT doc FROM objects WHERE id = ?", (object_id,)).fetchone()
        )
        return CatalogueObject.from_json(json.loads(row[0])) if row else None

    def list(self) -> list[CatalogueObject]:
        rows = self._connect().execute("SELECT doc FROM objects ORDER BY id").fetchall()
        return [CatalogueObject.from_json(json.loads(r[0])) for r in rows]

    def upsert(self, obj: CatalogueObject) -> None:
        if not obj.updated:
            obj = CatalogueObject.from_json({**obj.to_json(), "updated": now_iso()})
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO objects (id, kind, label, doc, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, label=excluded.label, "
                "doc=excluded.doc, updated=excluded.updated",
                (obj.id, obj.kind, obj.label, json.dumps(obj.to_json()), obj.updated),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def remove(self, object_id: str) -> bool:
        db = self._connect()
        db.execute("DELETE FROM transforms WHERE object_id = ?", (object_id,))
        cursor = db.execute("DELETE FROM objects WHERE id = ?", (object_id,))
        return cursor.rowcount > 0

    # -- fitted transforms of computed images ----------------------------------------------

    def get_transform(self, object_id: str, spec: str, version: str) -> Transform | None:
        """The transform fitted for ``spec`` of this version of the object, None if not yet."""
        row = (
            self._connect()
            .execute(
                "SELECT doc FROM transforms WHERE object_id = ? AND spec = ? AND version = ?",
                (object_id, spec, version),
            )
            .fetchone()
        )
        return Transform.from_json(json.loads(row[0])) if row else None

    def put_transform(self, object_id: str, spec: str, version: str, transform: Transform) -> None:
        """Keep ``transform``; rows fitted on other versions of the object are dropped."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM transforms WHERE object_id = ? AND version != ?", (object_id, version)
            )
            db.execute(
                "INSERT INTO transforms (object_id, spec, version, doc, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(object_id, spec) DO UPDATE SET "
                "version=excluded.version, doc=excluded.doc, updated=excluded.updated",
                (object_id, spec, version, json.dumps(transform.to_json()), now_iso()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
