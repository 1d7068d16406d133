"""Virtual composite images of a multispectral object: the identifier syntax and the Source that
stands for three band pyramids read level by level (imaging.load_level bandjoins them).

No I/O of its own; imports iiifsrv.errors, iiif.model and sources.describe.

Syntax: ``<object>/composite:<A>,<B>,<C>`` shows bands A, B, C as red, green, blue;
``<object>/composite:truecolor`` and ``<object>/composite:falsecolor`` name the object's
catalogued composites. In URLs the "/" is sent as %2F; ":" and "," are legal path characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import Level, SourceInfo
from iiifsrv.sources.describe import Source

PREFIX = "composite:"
ALIASES = ("truecolor", "falsecolor")


@dataclass(frozen=True)
class CompositeName:
    object_id: str
    spec: str  # what follows "composite:"
    bands: tuple[str, ...] | None  # None for an alias (truecolor, falsecolor)


def parse(identifier: str) -> CompositeName | None:
    """The composite an identifier names, None if it is not a composite. Raises BadRequest."""
    object_id, sep, last = identifier.rpartition("/")
    if not sep or not last.startswith(PREFIX):
        return None
    spec = last[len(PREFIX) :]
    if spec in ALIASES:
        return CompositeName(object_id, spec, None)
    names = tuple(spec.split(","))
    if len(names) != 3 or any(not n or n.startswith(PREFIX) for n in names):
        raise BadRequest(
            f"invalid composite {last!r}: expected composite:<red>,<green>,<blue> band names, "
            f"or composite:{' / composite:'.join(ALIASES)}"
        )
    return CompositeName(object_id, spec, names)


def identifier(object_id: str, bands: tuple[str, ...]) -> str:
    return f"{object_id}/{PREFIX}{','.join(bands)}"


@dataclass(frozen=True)
class CompositeSource(Source):
    """A Source whose pixels are three other sources' same level, joined as R, G, B."""

    parts: tuple[Source, ...] = ()

    @property
    def identity(self) -> str:
        return "composite(" + "|".join(p.identity for p in self.parts) + ")"


def combine(name: str, parts: list[Source]) -> CompositeSource:
    """A composite of ``parts`` (same dimensions); levels are those all parts share."""
    first = parts[0]
    for part in parts[1:]:
        if (part.info.width, part.info.height) != (first.info.width, first.info.height):
            raise BadRequest(
                f"composite {name!r}: bands differ in size "
                f"({first.info.width}x{first.info.height} and "
                f"{part.info.width}x{part.info.height})"
            )
    levels: list[Level] = []
    for index, level in enumerate(first.info.levels):
        if any(
            index >= len(p.info.levels)
            or (p.info.levels[index].width, p.info.levels[index].height)
            != (level.width, level.height)
            for p in parts
        ):
            break
        # No raw passthrough: a composite tile is always computed.
        levels.append(Level(level.width, level.height, level.tile_width, level.tile_height))
    info = SourceInfo(
        kind="composite",
        width=first.info.width,
        height=first.info.height,
        levels=tuple(levels),
        bands=3,
        bits=max(p.info.bits for p in parts),
    )
    return CompositeSource(
        path=first.path,
        mtime_ns=max(p.mtime_ns for p in parts),
        size=sum(p.size for p in parts),
        inode=0,
        loader="composite",
        info=info,
        access=first.access[: len(levels)],
        parts=tuple(parts),
    )
