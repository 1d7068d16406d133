"""The tile grid of each level of a local TIFF, as the fast decode path needs it: offsets,
byte counts, compression, predictor, and the JPEG header to splice before a tile.

Blocking I/O (tifffile reads the structure once per file version); imports tifffile,
iiifsrv.sources.describe. A level that is not 8-bit grey/RGB in contiguous tiles of a codec
this path knows has no grid (None): libvips renders it.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from struct import error as struct_error

import tifffile

from iiifsrv.sources.describe import (
    JPEG_COMPRESSION,
    PHOTOMETRIC_MINISBLACK,
    PHOTOMETRIC_RGB,
    PHOTOMETRIC_YCBCR,
    Source,
)

NONE, LZW, DEFLATE, ADOBE_DEFLATE, ZSTD = 1, 5, 32946, 8, 50000
CODECS = {NONE: "none", LZW: "lzw", DEFLATE: "deflate", ADOBE_DEFLATE: "deflate", ZSTD: "zstd"}
PREDICTOR_NONE, PREDICTOR_HORIZONTAL = 1, 2


@dataclass(frozen=True)
class TileGrid:
    """One stored level: its size, its tiles and how to turn one into pixels."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    bands: int  # 1 (grey) or 3 (RGB)
    codec: str  # "jpeg", "deflate", "lzw", "zstd" or "none"
    predictor: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    jpeg_header: bytes = b""  # JPEGTables without EOI (and an Adobe marker for RGB tiles)

    @property
    def across(self) -> int:
        return math.ceil(self.width / self.tile_width)

    @property
    def down(self) -> int:
        return math.ceil(self.height / self.tile_height)


_lock = threading.Lock()
_grids: OrderedDict[tuple[str, str], tuple[TileGrid | None, ...]] = OrderedDict()
_MAX_FILES = 256


def grids(source: Source) -> tuple[TileGrid | None, ...]:
    """The grid of each of ``source.info.levels`` (None where the fast path does not apply),
    read once per file version."""
    key = (source.path, source.identity)
    with _lock:
        known = _grids.get(key)
        if known is not None:
            _grids.move_to_end(key)
            return known
    made = _read(source)
    with _lock:
        _grids[key] = made
        while len(_grids) > _MAX_FILES:
            _grids.popitem(last=False)
    return made


def _read(source: Source) -> tuple[TileGrid | None, ...]:
    try:
        with tifffile.TiffFile(source.path) as tif:
            pages = [lvl.keyframe for lvl in tif.series[0].levels]
            out = []
            for index, level in enumerate(source.info.levels):
                page = next(
                    (
                        p
                        for p in pages
                        if (p.imagewidth, p.imagelength) == (level.width, level.height)
                    ),
                    None,
                )
                header = source.access[index].jpeg_header if level.raw_jpeg else b""
                out.append(_grid(page, header) if page is not None else None)
            return tuple(out)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, struct_error):
        return tuple(None for _ in source.info.levels)


def _grid(page: tifffile.TiffPage, jpeg_header: bytes) -> TileGrid | None:
    bands = page.samplesperpixel
    if (
        not page.is_tiled
        or page.tiledepth != 1
        or page.planarconfig != 1
        or page.bitspersample != 8
        or page.sampleformat != 1
        or bands not in (1, 3)
        or page.extrasamples
        or page.fillorder != 1
    ):
        return None
    compression, photometric = int(page.compression), int(page.photometric)
    if compression == JPEG_COMPRESSION:
        if not jpeg_header or page.predictor != PREDICTOR_NONE:
            return None
        codec = "jpeg"
    elif compression in CODECS and page.predictor in (PREDICTOR_NONE, PREDICTOR_HORIZONTAL):
        if photometric not in (PHOTOMETRIC_MINISBLACK, PHOTOMETRIC_RGB):
            return None
        codec = CODECS[compression]
    else:
        return None
    if bands == 1 and photometric != PHOTOMETRIC_MINISBLACK:
        return None
    if bands == 3 and photometric not in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR):
        return None
    return TileGrid(
        width=page.imagewidth,
        height=page.imagelength,
        tile_width=page.tilewidth,
        tile_height=page.tilelength,
        bands=bands,
        codec=codec,
        predictor=int(page.predictor),
        offsets=tuple(int(o) for o in page.dataoffsets),
        counts=tuple(int(c) for c in page.databytecounts),
        jpeg_header=jpeg_header,
    )
