"""Computed images of a multispectral object (PCA, band ratio, difference, stretch): the identifier
syntax and the Source standing for band pyramids plus a fitted transform (imaging renders it).

No I/O of its own; imports iiifsrv.errors, catalogue (Transform), iiif.model, sources.describe
and sources.composite (the shared levels).

Syntax (the last segment of ``<object>/...``): ``pca`` (components 1-3 as R, G, B), ``pca:N``
(component N as grey), ``ratio:A,B``, ``difference:A,B``, ``stretch:A``. The fitted transform is
keyed by :func:`fit_key`: one PCA basis per object, one value range per ratio/difference/stretch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from iiifsrv.catalogue import Transform
from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import SourceInfo
from iiifsrv.sources import composite
from iiifsrv.sources.describe import Source

OPERATIONS = ("pca", "ratio", "difference", "stretch")
ARITY = {"ratio": 2, "difference": 2, "stretch": 1}
PCA_RGB = 3  # ``pca`` shows the first three components


@dataclass(frozen=True)
class ComputedName:
    object_id: str
    op: str  # one of OPERATIONS
    bands: tuple[str, ...]  # the named bands (empty for pca: it uses every band)
    component: int | None = None  # pca:N (1-based); None for the RGB of components 1-3

    @property
    def fit_key(self) -> str:
        """The catalogue key of the transform this image uses (all PCA images share one)."""
        return "pca" if self.op == "pca" else f"{self.op}:{','.join(self.bands)}"


def _syntax() -> str:
    return "pca, pca:<n>, ratio:<A>,<B>, difference:<A>,<B> or stretch:<A>"


def parse(identifier: str) -> ComputedName | None:
    """The computed image an identifier names, None if it names none. Raises BadRequest."""
    object_id, sep, last = identifier.rpartition("/")
    if not sep or not object_id:
        return None
    if last == "pca":
        return ComputedName(object_id, "pca", ())
    op, colon, spec = last.partition(":")
    if not colon or op not in OPERATIONS:
        return None
    if op == "pca":
        if not spec.isdigit() or spec.startswith("0"):
            raise BadRequest(f"invalid computed image {last!r}: expected pca:<n>, n = 1, 2, ...")
        return ComputedName(object_id, "pca", (), int(spec))
    names = tuple(spec.split(","))
    if len(names) != ARITY[op] or any(not n or ":" in n for n in names):
        raise BadRequest(f"invalid computed image {last!r}: expected {_syntax()}")
    return ComputedName(object_id, op, names)


def identifier(object_id: str, op: str, bands: tuple[str, ...] = (), component: int = 0) -> str:
    if op == "pca":
        return f"{object_id}/pca:{component}" if component else f"{object_id}/pca"
    return f"{object_id}/{op}:{','.join(bands)}"


@dataclass(frozen=True)
class ComputedSource(Source):
    """A Source whose pixels are ``transform`` applied to the same level of ``parts`` (the bands
    of ``transform.bands``, in that order); ``channels`` are the transform outputs shown."""

    parts: tuple[Source, ...] = ()
    transform: Transform | None = None
    channels: tuple[int, ...] = (0,)

    @property
    def identity(self) -> str:
        assert self.transform is not None
        fitted = json.dumps(self.transform.to_json(), sort_keys=True).encode()
        digest = hashlib.sha256(fitted).hexdigest()[:16]
        parts = "|".join(p.identity for p in self.parts)
        return f"computed({parts};{digest};{','.join(map(str, self.channels))})"


def make(name: str, parts: list[Source], transform: Transform, channels: tuple[int, ...]) -> Source:
    """The computed image ``name``: 8-bit, one channel (grey) or three (RGB), the bands' size."""
    joined = composite.combine(name, parts)  # same size checks and shared levels
    info = SourceInfo(
        kind="computed",
        width=joined.info.width,
        height=joined.info.height,
        levels=joined.info.levels,
        bands=len(channels),
        bits=8,
    )
    return ComputedSource(
        path=joined.path,
        mtime_ns=joined.mtime_ns,
        size=joined.size,
        inode=0,
        loader="computed",
        info=info,
        access=joined.access,
        parts=tuple(parts),
        transform=transform,
        channels=channels,
    )
