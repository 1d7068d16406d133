"""Downscaled renders of a JPEG-tiled TIFF level in YCbCr planes: each stored tile under the
region is decoded by libjpeg-turbo (at the DCT scale chosen by the mosaic) straight into its
place in a Y, Cb, Cr mosaic, without colour conversion or chroma upsampling; each plane is
cropped and resized once (engine.resample: Y, then Cb and Cr together), and the planes are
encoded as they are.

Blocking, CPU-bound; imports numpy and the engine's modules. ``render`` answers None where it
does not apply (RGB-coded tiles, chroma subsampling other than 4:2:0 and 4:4:4, outputs that
would need chroma upsampling): the caller decodes to RGB instead.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from iiifsrv.engine import resample, turbo
from iiifsrv.engine.tiffgrid import TileGrid
from iiifsrv.sources.describe import Source

Box = tuple[int, int, int, int]
_probes: dict[int, tuple[TileGrid, int | None]] = {}  # id(grid) -> (grid, TJSAMP or None)
_probe_lock = threading.Lock()
_MAX_PROBES = 1024


def subsampling(source: Source, grid: TileGrid) -> int | None:
    """The TJSAMP_* of the level's tiles if this path can decode them (YCbCr 4:2:0 or 4:4:4,
    or grey), else None; read from the first stored tile, once per grid."""
    with _probe_lock:
        known = _probes.get(id(grid))
    if known is not None and known[0] is grid:
        return known[1]
    samp: int | None = None
    index = next((i for i, count in enumerate(grid.counts) if count), None)
    if turbo.available() and grid.codec == "jpeg" and index is not None:
        data = source.read(grid.offsets[index], grid.counts[index])
        try:
            _, _, found, space = turbo.header(grid.jpeg_header + data[2:])
        except turbo.TurboError:
            found, space = -1, -1
        if (
            (grid.bands, space, found) == (1, turbo.CS_GRAY, turbo.SAMP_GRAY)
            or grid.bands == 3
            and space == turbo.CS_YCBCR
            and found in turbo.CHROMA_DIVISOR
        ):
            samp = found
    with _probe_lock:
        if len(_probes) >= _MAX_PROBES:
            _probes.clear()
        _probes[id(grid)] = (grid, samp)
    return samp


# DCT scales (eighths) a downscale may decode at: libjpeg-turbo's 1/8, 1/4, 1/2 and 1/1, which
# have SIMD IDCTs. 5/8 and 6/8 were measured too: per 256-pixel tile 0.92x and 1.2x the cost of
# 8/8 (7/8: 1.55x), a smaller mosaic to resize, but further from libvips' pixels (mean 2.9
# against 1.3) and from the uncompressed original: not used.
EIGHTHS = (1, 2, 4, 8)


def eighths(grid: TileGrid, box: Box, size: tuple[int, int]) -> int:
    """The smallest DCT scale (in eighths) whose decode of ``box`` still covers ``size``; 8/8
    where the box reaches a level edge inside a tile: a scaled IDCT blends each 8x8 block into
    fewer pixels, and the edge block holds the tile's padding (black, from libvips)."""
    if (box[2] == grid.width and grid.width % grid.tile_width) or (
        box[3] == grid.height and grid.height % grid.tile_height
    ):
        return 8
    width, height = box[2] - box[0], box[3] - box[1]
    return next(
        n for n in EIGHTHS if n == 8 or (width * n >= 8 * size[0] and height * n >= 8 * size[1])
    )


def render(
    source: Source,
    grid: TileGrid,
    box: Box,
    n: int,
    size: tuple[int, int],
    quality: int,
    kernel: str,
) -> bytes | None:
    """The JPEG of ``box`` (level pixels) decoded at ``n``/8 and resized to ``size``, or None
    when this path does not apply. Raises turbo.TurboError (or OSError, ValueError) on a tile
    that does not decode."""
    samp = subsampling(source, grid)
    if samp is None or grid.tile_width % 16 or grid.tile_height % 16:
        return None
    out_samp = (
        samp if samp == turbo.SAMP_GRAY else turbo.SAMP_444 if quality >= 90 else turbo.SAMP_420
    )
    if samp == turbo.SAMP_420 and out_samp == turbo.SAMP_444:
        return None  # the stored chroma is coarser than the output's
    planes, luma = decode(source, grid, box, n, samp)
    resized = resize(planes, luma, size, samp, out_samp, kernel)
    return turbo.encode(resized, out_samp, quality)


Planes = list[np.ndarray[Any, Any]]


def decode(source: Source, grid: TileGrid, box: Box, n: int, samp: int) -> tuple[Planes, Box]:
    """The mosaics of the tiles under ``box`` decoded at ``n``/8: Y, and for colour one array
    holding Cb and Cr side by side (``resize`` resizes both in one pass); and the box in the
    luma mosaic's pixels (the same rounding as mosaic.render's RGB crop)."""
    left, top, right, bottom = box
    tw, th = grid.tile_width, grid.tile_height
    columns = range(left // tw, (right - 1) // tw + 1)
    rows = range(top // th, (bottom - 1) // th + 1)
    stw, sth = tw * n // 8, th * n // 8  # a tile decoded at the DCT scale
    divisors = _divisors(samp)
    # Every pixel is written (a tile decoded or filled), so nothing is zeroed first.
    mosaics = [np.empty((len(rows) * sth, len(columns) * stw), np.uint8)]
    planes = list(mosaics)
    if len(divisors) > 1:
        dx, dy = divisors[1]
        mosaics.append(np.empty((len(rows) * sth // dy, 2 * len(columns) * stw // dx), np.uint8))
        half = mosaics[1].shape[1] // 2
        planes += [mosaics[1][:, :half], mosaics[1][:, half:]]
    for j, row in enumerate(rows):
        for i, column in enumerate(columns):
            views = [
                plane[j * sth // dy : (j + 1) * sth // dy, i * stw // dx : (i + 1) * stw // dx]
                for plane, (dx, dy) in zip(planes, divisors, strict=True)
            ]
            index = row * grid.across + column
            count = grid.counts[index]
            if not count:  # a tile never written: black, as libtiff reads it
                for plane_index, view in enumerate(views):
                    view.fill(128 if plane_index else 0)
                continue
            data = source.read(grid.offsets[index], count)
            if len(data) != count:
                raise ValueError("stored tile is truncated")
            turbo.decode_into(grid.jpeg_header + data[2:], views, (tw, th), samp)
    x0, y0 = left - columns[0] * tw, top - rows[0] * th
    x1, y1 = x0 + right - left, y0 + bottom - top
    return mosaics, (x0 * n // 8, y0 * n // 8, -(-x1 * n // 8), -(-y1 * n // 8))


def resize(
    mosaics: Planes, luma: Box, size: tuple[int, int], samp: int, out_samp: int, kernel: str
) -> Planes:
    """The output's Y (and Cb, Cr) planes from ``decode``'s mosaics: the part under ``luma``
    (the box in luma pixels) resized to ``size`` for Y, to the chroma grid of ``out_samp`` for
    Cb and Cr."""
    width, height = size
    resized = [resample.reduce_plane(mosaics[0], luma, width, height, kernel)]
    if samp == turbo.SAMP_GRAY:
        return resized
    dx, dy = turbo.CHROMA_DIVISOR[samp]
    out_d = 2 if out_samp == turbo.SAMP_420 else 1
    crop = (luma[0] // dx, luma[1] // dy, -(-luma[2] // dx), -(-luma[3] // dy))
    cb, cr = resample.reduce_parts(
        mosaics[1], 2, crop, -(-width // out_d), -(-height // out_d), kernel
    )
    return [*resized, cb, cr]


def _divisors(samp: int) -> list[tuple[int, int]]:
    """The (x, y) divisor of each plane of a stream with ``samp`` chroma subsampling."""
    return [(1, 1)] + ([turbo.CHROMA_DIVISOR[samp]] * 2 if samp != turbo.SAMP_GRAY else [])
