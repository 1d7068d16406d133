"""Resize a decoded numpy mosaic to the planned size with libvips, the way imaging does.

libvips 8.14 reduces vertically with vector code but horizontally with scalar code, about
7x slower for 8-bit pixels; for the common linear/cubic downsizing by less than 2x, the
horizontal pass is done as a vertical one on the transposed image (colours within 2 levels
of libvips' own resize). Blocking, CPU-bound; imports numpy and pyvips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyvips

MAX_HELD = 24_000_000  # larger outputs are resized by libvips' resize, streamed


def to_vips(array: np.ndarray[Any, Any]) -> pyvips.Image:
    """A libvips image over the array's memory (kept alive by the image)."""
    array = np.ascontiguousarray(array)
    height, width, bands = array.shape
    image = pyvips.Image.new_from_memory(array.data, width, height, bands, "uchar")
    return image.copy(interpretation="srgb" if bands == 3 else "b-w")


def to_array(image: pyvips.Image) -> np.ndarray[Any, Any]:
    data = image.write_to_memory()
    return np.frombuffer(data, np.uint8).reshape(image.height, image.width, image.bands)


def resize(array: np.ndarray[Any, Any], width: int, height: int, kernel: str) -> pyvips.Image:
    """The array resized to exactly ``width`` x ``height``."""
    return reduce(to_vips(array), width, height, kernel)


def reduce(image: pyvips.Image, width: int, height: int, kernel: str) -> pyvips.Image:
    """``image`` resized to exactly ``width`` x ``height`` (what imaging did with
    ``resize``; the horizontal pass of a linear/cubic shrink below 2x done vertically)."""
    if (image.width, image.height) == (width, height):
        return image
    hshrink, vshrink = image.width / width, image.height / height
    held = image.width * height * image.bands  # bytes of the vertical pass, held in memory
    if 1 <= hshrink < 2 and 1 <= vshrink < 2 and kernel in ("linear", "cubic") and held <= MAX_HELD:
        if vshrink > 1:
            image = image.reducev(vshrink, kernel=kernel)
        if hshrink > 1:
            # rot90 reads whole columns: from memory, not by re-running the decode above.
            image = image.copy_memory().rot90().reducev(hshrink, kernel=kernel).rot270()
    else:
        image = image.resize(width / image.width, vscale=height / image.height, kernel=kernel)
    if (image.width, image.height) != (width, height):
        image = image.gravity("north-west", width, height, extend="copy")
    return image


def reduce_plane(
    plane: np.ndarray[Any, Any],
    box: tuple[int, int, int, int],
    width: int,
    height: int,
    kernel: str,
) -> np.ndarray[Any, Any]:
    """The ``box`` (left, top, right, bottom) of a contiguous 2-D uint8 plane (a Y, Cb or Cr
    plane of the JPEG engine) resized to exactly ``width`` x ``height``, as a contiguous array.

    A linear/cubic shrink below 2x is two vertical passes of libvips' vector reducev with numpy
    transposes between them (~1 ms for a 1500x1200 -> 1000x800 luma plane, against ~5 ms for
    libvips' scalar horizontal pass); anything else is libvips' resize."""
    left, top, right, bottom = box
    if plane.ndim != 2 or not plane.flags.c_contiguous:
        raise ValueError("expected a contiguous 2-D plane")
    rows = plane[top:bottom]  # contiguous: one libvips image over that memory, then a crop
    image = pyvips.Image.new_from_memory(rows.data, plane.shape[1], bottom - top, 1, "uchar")
    image = image.crop(left, 0, right - left, bottom - top)
    hshrink, vshrink = (right - left) / width, (bottom - top) / height
    if 1 <= hshrink < 2 and 1 <= vshrink < 2 and kernel in ("linear", "cubic"):
        if vshrink > 1:
            image = image.reducev(vshrink, kernel=kernel)
        if hshrink > 1:
            turned = np.ascontiguousarray(to_array(image)[:, :, 0].T)
            image = pyvips.Image.new_from_memory(
                turned.data, turned.shape[1], turned.shape[0], 1, "uchar"
            )
            image = image.reducev(hshrink, kernel=kernel)
            out = to_array(image)[:, :, 0].T
        else:
            out = to_array(image)[:, :, 0]
    else:
        image = image.resize(width / image.width, vscale=height / image.height, kernel=kernel)
        out = to_array(image)[:, :, 0]
    if out.shape != (height, width):
        fixed = np.empty((height, width), np.uint8)
        h, w = min(height, out.shape[0]), min(width, out.shape[1])
        fixed[:h, :w] = out[:h, :w]
        fixed[h:, :w] = fixed[h - 1 : h, :w]  # extend by copying the last row and column
        fixed[:, w:] = fixed[:, w - 1 : w]
        out = fixed
    return np.ascontiguousarray(out)
