"""Decode one stored TIFF tile into a numpy array: deflate (ISA-L's inflate where the isal
package is installed, else libdeflate), LZW, zstd (imagecodecs) with the horizontal predictor
undone, or JPEG (libjpeg-turbo through simplejpeg) at a DCT scale of 1/1, 1/2, 1/4
or 1/8.

Blocking, CPU-bound; imports numpy, imagecodecs, simplejpeg, isal (optional) and
engine.tiffgrid. The codecs release the GIL while they decode.
"""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np
import simplejpeg

try:  # ISA-L's inflate: ~20 % less CPU than libdeflate on a 256x256 RGB tile (docs/benchmarks.md)
    from isal import isal_zlib

    _isal_error: type[Exception] = isal_zlib.error  # type: ignore[assignment]
except ImportError:  # pragma: no cover - isal is a dependency; libdeflate is the fallback
    isal_zlib = None  # type: ignore[assignment]

from iiifsrv.engine.tiffgrid import PREDICTOR_HORIZONTAL, TileGrid

DCT_SCALES = (8, 4, 2, 1)  # denominators libjpeg-turbo decodes with its fast (SIMD) IDCTs


def decoded_size(grid: TileGrid, scale: int) -> tuple[int, int]:
    """Width and height of a tile decoded at 1/``scale``."""
    return -(-grid.tile_width // scale), -(-grid.tile_height // scale)


def decode(grid: TileGrid, data: bytes, scale: int = 1) -> np.ndarray[Any, Any]:
    """The tile's pixels, shape (height, width, bands), uint8; JPEG tiles at 1/``scale``."""
    tw, th, bands = grid.tile_width, grid.tile_height, grid.bands
    if grid.codec == "jpeg":
        stream = grid.jpeg_header + data[2:]
        space = "GRAY" if bands == 1 else "RGB"
        width, height = decoded_size(grid, scale)
        # libjpeg-turbo picks the smallest of its N/8 scales that is at least this size.
        array: np.ndarray[Any, Any] = simplejpeg.decode_jpeg(
            stream, colorspace=space, min_width=width, min_height=height
        )
        if array.shape[:2] != (height, width):
            raise ValueError(f"JPEG tile decoded to {array.shape}, not {height}x{width}")
        return array.reshape(height, width, bands)
    if scale != 1:
        raise ValueError("only JPEG tiles decode at a reduced scale")
    size = tw * th * bands
    if grid.codec == "deflate":
        raw: Any = inflate(data, size)
    elif grid.codec == "lzw":
        raw = imagecodecs.lzw_decode(data, buffersize=size)
    elif grid.codec == "zstd":
        raw = imagecodecs.zstd_decode(data, out=size)
    else:
        raw = data
    if len(raw) < size:
        raise ValueError(f"tile decoded to {len(raw)} bytes, not {size}")
    pixels: np.ndarray[Any, Any] = np.frombuffer(raw, np.uint8, size).reshape(th, tw, bands)
    if grid.predictor == PREDICTOR_HORIZONTAL:
        pixels = imagecodecs.delta_decode(pixels, axis=-2)
    return pixels


def inflate(data: bytes, size: int) -> bytes | bytearray:
    """A zlib stream (TIFF compression 8 / 32946) inflated: ISA-L, or libdeflate without it (or
    when ISA-L refuses the stream: libdeflate then decides whether it is corrupt)."""
    if isal_zlib is not None:
        try:
            return isal_zlib.decompress(data, bufsize=size)
        except _isal_error:
            pass
    result: bytes | bytearray = imagecodecs.deflate_decode(data, out=size)
    return result
