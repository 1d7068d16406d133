"""The in-memory vector index: one float32 matrix of L2-normalised embeddings, searched by brute
force (a matrix-vector product = cosine similarity), with a scope mask per query.

Brute force is exact and needs no training; at 384 dimensions it scans 100,000 annotations in
tens of milliseconds on a loaded 2-core machine (docs/benchmarks.md: the query's encoding costs
as much) and grows linearly with the collection: past ~1 million annotations (1.5 GB of
vectors, ~0.5 s a query) an approximate index (e.g. HNSW) would be the next step.
Imports numpy and semantic.vectors (the rows it applies); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iiifsrv.semantic.vectors import Row


@dataclass(frozen=True)
class Hit:
    key: str
    score: float
    canvas: str = ""


class VectorIndex:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._matrix = np.zeros((0, dimension), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._canvas = np.zeros(0, dtype=np.int64)
        self._manifest = np.zeros(0, dtype=np.int64)
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        self._digests: dict[str, str] = {}
        self._codes: dict[str, int] = {}
        self._uris: list[str] = []  # code -> canvas or manifest URI
        self._size = 0
        self.stamp = 0

    def __len__(self) -> int:
        return int(self._alive[: self._size].sum())

    def digest(self, key: str) -> str:
        """The digest of what ``key``'s vector was computed from ("" when it has none)."""
        return self._digests.get(key, "")

    def keys(self) -> set[str]:
        return set(self._digests)

    def _code(self, uri: str) -> int:
        code = self._codes.get(uri)
        if code is None:
            code = self._codes[uri] = len(self._uris)
            self._uris.append(uri)
        return code

    def _grow(self) -> None:
        capacity = max(1024, 2 * len(self._alive))
        matrix = np.zeros((capacity, self.dimension), dtype=np.float32)
        matrix[: self._size] = self._matrix[: self._size]
        self._matrix = matrix
        for name in ("_alive", "_canvas", "_manifest"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: self._size] = old[: self._size]
            setattr(self, name, new)

    def apply(self, rows: list[Row]) -> None:
        """Upsert embeddings and drop tombstones (rows with no vector)."""
        for row in rows:
            self.stamp = max(self.stamp, row.stamp)
            at = self._rows.get(row.key)
            if row.vector is None or row.vector.shape != (self.dimension,):
                if at is not None:
                    self._alive[at] = False
                self._digests.pop(row.key, None)
                continue
            if at is None:
                if self._size == len(self._alive):
                    self._grow()
                at = self._size
                self._size += 1
                self._rows[row.key] = at
                self._keys.append(row.key)
            self._matrix[at] = row.vector
            self._alive[at] = True
            self._canvas[at] = self._code(row.canvas)
            self._manifest[at] = self._code(row.manifest)
            self._digests[row.key] = row.digest

    def _mask(
        self, kind: str, uri: str, canvases: tuple[str, ...], hidden: tuple[str, ...] = ()
    ) -> np.ndarray:
        alive = self._alive[: self._size]
        if hidden:
            codes = np.array([self._codes[c] for c in hidden if c in self._codes], dtype=np.int64)
            alive = alive & ~np.isin(self._canvas[: self._size], codes)
        if kind == "all":
            return alive
        code = self._codes.get(uri, -1)
        if kind == "canvas":
            same: np.ndarray = alive & (self._canvas[: self._size] == code)
            return same
        codes = np.array([self._codes[c] for c in canvases if c in self._codes], dtype=np.int64)
        mine = (self._manifest[: self._size] == code) | np.isin(self._canvas[: self._size], codes)
        scoped: np.ndarray = alive & mine
        return scoped

    def search(
        self,
        query: np.ndarray,
        kind: str = "all",
        uri: str = "",
        canvases: tuple[str, ...] = (),
        hidden: tuple[str, ...] = (),
        *,
        limit: int = 100,
        min_score: float = -1.0,
    ) -> list[Hit]:
        """The ``limit`` nearest annotations in scope, not on one of the ``hidden`` canvases,
        with cosine ≥ ``min_score``, best first."""
        if self._size == 0 or limit <= 0:
            return []
        q = np.asarray(query, dtype=np.float32)
        rows = np.flatnonzero(self._mask(kind, uri, canvases, hidden))
        # Only the rows in scope are multiplied: a manifest's few costs little.
        scores = (
            self._matrix[rows] @ q if len(rows) < self._size else self._matrix[: self._size] @ q
        )
        keep = scores >= min_score
        rows, scores = rows[keep], scores[keep]
        if len(rows) > limit:
            part = np.argpartition(-scores, limit - 1)[:limit]
            rows, scores = rows[part], scores[part]
        order = np.argsort(-scores, kind="stable")
        return [
            Hit(self._keys[rows[i]], float(scores[i]), self._uris[self._canvas[rows[i]]])
            for i in order
        ]
