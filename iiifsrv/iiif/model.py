"""Value objects of the Image API: a parsed request and a protocol-neutral description of a source.

PURE: imports only the standard library. No I/O, no pyvips, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FORMATS: dict[str, str] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tif": "image/tiff",
    "gif": "image/gif",
    "jp2": "image/jp2",
}
QUALITIES = ("default", "color", "gray", "bitonal", "stretch")  # stretch: per-band contrast


class RegionKind(Enum):
    FULL = "full"
    SQUARE = "square"
    PIXELS = "px"
    PERCENT = "pct"


class SizeKind(Enum):
    FULL = "full"  # 2.x only: same as max
    MAX = "max"
    WIDTH = "w,"
    HEIGHT = ",h"
    PERCENT = "pct"
    EXACT = "w,h"
    CONFINED = "!w,h"


@dataclass(frozen=True)
class Region:
    kind: RegionKind
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0


@dataclass(frozen=True)
class Size:
    kind: SizeKind
    w: int = 0
    h: int = 0
    pct: float = 0.0
    upscale: bool = False


@dataclass(frozen=True)
class Rotation:
    degrees: float = 0.0
    mirror: bool = False


@dataclass(frozen=True)
class ImageRequest:
    version: int
    region: Region
    size: Size
    rotation: Rotation
    quality: str
    format: str


@dataclass(frozen=True)
class Level:
    """One resolution level as stored: its pixel size and its real tile size (0 = untiled)."""

    width: int
    height: int
    tile_width: int = 0
    tile_height: int = 0
    raw_jpeg: bool = False  # tiles are JPEG streams a client can decode once JPEGTables are spliced


@dataclass(frozen=True)
class SourceInfo:
    """What the planner needs to know about a source, read once per file version."""

    kind: str  # "tiff", "jp2", "jpeg", "flat"
    width: int
    height: int
    levels: tuple[Level, ...]
    bands: int = 3
    bits: int = 8

    @property
    def pyramidal(self) -> bool:
        return len(self.levels) > 1 and self.levels[0].tile_width > 0


@dataclass(frozen=True)
class Limits:
    max_width: int = 0
    max_height: int = 0
    max_area: int = 0

    @property
    def width(self) -> int:
        return self.max_width

    @property
    def height(self) -> int:
        # Image API 3.0: if maxWidth is given without maxHeight, maxHeight equals maxWidth.
        return self.max_height or self.max_width
