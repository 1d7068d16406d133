"""Render a plan from the stored tiles of a local TIFF without libvips' loader: read the tiles
under the region (one pread each), decode them (JPEG at the DCT scale closest above the one
needed), assemble them in numpy, crop, resize once with libvips, encode with libjpeg-turbo.
Downscaled renders of YCbCr/grey JPEG tiles go to engine/planar.py (any number of tiles, in
Y/Cb/Cr planes); otherwise it takes renders of at most 4 tiles at full scale and DCT-scaled
ones; libvips the rest.

Blocking, CPU-bound; imports numpy, imagecodecs, pyvips, iiif.plan, sources.describe and the
engine's modules. ``render`` answers None for anything it does not handle (libvips does).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import imagecodecs
import numpy as np
import pyvips

from iiifsrv.engine import planar, resample, tiles, turbo
from iiifsrv.engine.tiffgrid import TileGrid, grids
from iiifsrv.iiif.plan import Plan
from iiifsrv.sources.describe import Source

log = logging.getLogger("iiifsrv.engine")

MAX_MOSAIC_PIXELS = 16_000_000  # larger regions go to libvips, which streams them
MAX_FULL_SCALE_TILES = 4  # more tiles at full scale: libvips (see render)


@dataclass
class Stats:
    """What the fast path decoded, for tests and benchmarks (never read by the server)."""

    renders: int = 0
    tiles: int = 0
    # decoded tiles per DCT scale, as its denominator (4 for 1/4, 8/5 for 5/8)
    scales: Counter[Fraction] = field(default_factory=Counter)
    fallbacks: int = 0
    planar: int = 0  # renders decoded, resized and encoded in YCbCr planes (engine/planar.py)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, count: int, scale: Fraction | int) -> None:
        with self._lock:
            self.renders += 1
            self.tiles += count
            self.scales[Fraction(scale)] += count

    def reset(self) -> None:
        with self._lock:
            self.renders = self.tiles = self.fallbacks = self.planar = 0
            self.scales.clear()


stats = Stats()


def eligible(source: Source, plan: Plan) -> bool:
    """A local tiled TIFF rendered to a plain JPEG (no rotation, mirror or quality change)."""
    return (
        type(source) is Source
        and source.loader == "tiffload"
        and plan.format == "jpg"
        and plan.quality == "default"
        and plan.degrees == 0
        and not plan.mirror
        and source.info.levels[0].tile_width > 0
    )


def render(
    source: Source, plan: Plan, jpeg_quality: int, kernel: str, *, planar_ok: bool = True
) -> bytes | None:
    """The encoded JPEG, or None when this path does not apply (or a tile fails to decode:
    libvips then renders the request and reports the error if there is one). Downscaled
    renders of JPEG tiles go through engine/planar.py unless ``planar_ok`` is False."""
    if not eligible(source, plan):
        return None
    grid = grids(source)[plan.level]
    if grid is None:
        return None
    box = _level_box(grid, source, plan)
    left, top, right, bottom = box
    scale = _dct_scale(grid, box, plan)
    columns = range(left // grid.tile_width, (right - 1) // grid.tile_width + 1)
    rows = range(top // grid.tile_height, (bottom - 1) // grid.tile_height + 1)
    tw, th = tiles.decoded_size(grid, scale)
    if len(columns) * tw * len(rows) * th > MAX_MOSAIC_PIXELS:
        return None
    size = (plan.width, plan.height)
    if planar_ok and grid.codec == "jpeg" and (right - left, bottom - top) != size:
        # Downscaled: decoded at a DCT scale, resized and encoded in YCbCr planes.
        n = planar.eighths(grid, box, size)
        try:
            made = planar.render(source, grid, box, n, size, jpeg_quality, kernel)
        except (turbo.TurboError, ValueError, RuntimeError, OSError, pyvips.Error) as exc:
            stats.fallbacks += 1
            log.debug("planar path declined %s: %s", source.path, exc)
            made = None
        if made is not None:
            stats.add(len(columns) * len(rows), Fraction(8, n))
            stats.planar += 1
            return made
    if scale == 1 and len(columns) * len(rows) > MAX_FULL_SCALE_TILES:
        # libvips decodes many tiles in its own threads without the GIL; here each tile is a
        # GIL hand-off, which costs more than the CPU saved once the cores are oversubscribed.
        return None
    try:
        mosaic = _assemble(
            lambda index: _tiff_tile(source, grid, index, scale),
            grid.across,
            (tw, th, grid.bands),
            columns,
            rows,
        )
    except (ValueError, RuntimeError, OSError) as exc:  # corrupt or truncated tile data
        stats.fallbacks += 1
        log.debug("fast path declined %s: %s", source.path, exc)
        return None
    stats.add(len(columns) * len(rows), scale)
    x0 = left - columns[0] * grid.tile_width
    y0 = top - rows[0] * grid.tile_height
    crop = mosaic[
        y0 // scale : math.ceil((y0 + bottom - top) / scale),
        x0 // scale : math.ceil((x0 + right - left) / scale),
    ]
    return _finish(crop, plan, jpeg_quality, kernel)


def _finish(crop: np.ndarray[Any, Any], plan: Plan, jpeg_quality: int, kernel: str) -> bytes:
    if (crop.shape[1], crop.shape[0]) == (plan.width, plan.height):
        pixels = crop
    else:
        pixels = resample.to_array(resample.resize(crop, plan.width, plan.height, kernel))
    return encode_jpeg(pixels, jpeg_quality)


def encode_jpeg(pixels: np.ndarray[Any, Any], quality: int) -> bytes:
    """libjpeg-turbo with libvips' jpegsave defaults: 4:2:0 below Q90, 4:4:4 from Q90, no
    optimised Huffman tables (the decoded pixels equal those of libvips' output)."""
    if pixels.shape[2] == 1:
        return bytes(imagecodecs.jpeg8_encode(pixels[:, :, 0], level=quality, optimize=False))
    subsampling = "444" if quality >= 90 else "420"
    encoded = imagecodecs.jpeg8_encode(
        np.ascontiguousarray(pixels), level=quality, subsampling=subsampling, optimize=False
    )
    return bytes(encoded)


def _level_box(grid: TileGrid, source: Source, plan: Plan) -> tuple[int, int, int, int]:
    """The level pixels under the plan's region (the same rounding as imaging._level_box)."""
    sx, sy = grid.width / source.info.width, grid.height / source.info.height
    r = plan.region
    left = min(grid.width - 1, math.floor(r.x * sx))
    top = min(grid.height - 1, math.floor(r.y * sy))
    right = min(grid.width, max(left + 1, math.ceil((r.x + r.w) * sx - 1e-6)))
    bottom = min(grid.height, max(top + 1, math.ceil((r.y + r.h) * sy - 1e-6)))
    return left, top, right, bottom


def _dct_scale(grid: TileGrid, box: tuple[int, int, int, int], plan: Plan) -> int:
    """The largest DCT denominator that still decodes at least the planned size."""
    if grid.codec != "jpeg" or grid.tile_width % 8 or grid.tile_height % 8:
        return 1
    shrink = min((box[2] - box[0]) / plan.width, (box[3] - box[1]) / plan.height)
    return next(d for d in tiles.DCT_SCALES if d <= shrink + 1e-9 or d == 1)


def _tiff_tile(
    source: Source, grid: TileGrid, index: int, scale: int
) -> np.ndarray[Any, Any] | None:
    count = grid.counts[index]
    if not count:  # a tile never written: black, as libtiff reads it
        return None
    data = source.read(grid.offsets[index], count)
    if len(data) != count:
        raise ValueError("stored tile is truncated")
    return tiles.decode(grid, data, scale)


def _assemble(
    decode: Callable[[int], np.ndarray[Any, Any] | None],
    across: int,
    shape: tuple[int, int, int],
    columns: range,
    rows: range,
) -> np.ndarray[Any, Any]:
    """The tiles ``columns`` x ``rows`` side by side (a tile may be smaller at the edges)."""
    tw, th, bands = shape
    mosaic = np.zeros((len(rows) * th, len(columns) * tw, bands), np.uint8)
    for j, row in enumerate(rows):
        for i, column in enumerate(columns):
            pixels = decode(row * across + column)
            if pixels is not None:
                h, w = pixels.shape[:2]
                mosaic[j * th : j * th + h, i * tw : i * tw + w] = pixels
    return mosaic
