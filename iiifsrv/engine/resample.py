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
    plane of the JPEG engine) resized to exactly ``width`` x ``height``, as a contiguous array
    (``reduce_parts`` of one part)."""
    resized: np.ndarray[Any, Any] = reduce_parts(plane, 1, box, width, height, kernel)[0]
    return resized


def reduce_parts(
    plane: np.ndarray[Any, Any],
    parts: int,
    box: tuple[int, int, int, int],
    width: int,
    height: int,
    kernel: str,
) -> np.ndarray[Any, Any]:
    """``parts`` planes of equal width held side by side in ``plane`` (Cb and Cr as the planar
    path decodes them), the same ``box`` of each resized to ``width`` x ``height``: a
    contiguous array of shape (parts, height, width).

    A linear/cubic shrink below 2x is two vertical passes of libvips' vector reducev with
    blocked numpy transposes around the second (~1.8 ms for a 1500x1200 -> 1037x830 luma
    plane, against ~7 ms with libvips' scalar horizontal pass), each pass one pipeline for
    all the parts: a vertical pass never mixes columns, and the horizontal one runs over the
    parts transposed side by side (a reducev build costs ~0.2 ms whatever its size).
    Anything else is libvips' resize, part by part."""
    left, top, right, bottom = box
    if plane.ndim != 2 or not plane.flags.c_contiguous or plane.shape[1] % parts:
        raise ValueError("expected a contiguous 2-D plane of equal parts")
    part_width = plane.shape[1] // parts
    hshrink, vshrink = (right - left) / width, (bottom - top) / height
    rows = plane[top:bottom]  # contiguous: one libvips image over that memory, then a crop
    image = pyvips.Image.new_from_memory(rows.data, plane.shape[1], bottom - top, 1, "uchar")
    if not (1 <= hshrink < 2 and 1 <= vshrink < 2 and kernel in ("linear", "cubic")):
        out = np.empty((parts, height, width), np.uint8)
        for index in range(parts):
            part = image.crop(index * part_width + left, 0, right - left, bottom - top)
            part = part.resize(width / part.width, vscale=height / part.height, kernel=kernel)
            _fit(to_array(part)[:, :, 0], out[index])
        return out
    span = (parts - 1) * part_width + right - left  # first part's left to last part's right
    image = image.crop(left, 0, span, bottom - top)
    if vshrink > 1:
        image = image.reducev(vshrink, kernel=kernel)
    tall = to_array(image)[:, :, 0]
    rows_out = tall.shape[0]
    # (rows, parts, columns): each part's columns, the gaps between parts left out.
    cut = np.lib.stride_tricks.as_strided(
        tall, (rows_out, parts, right - left), (tall.strides[0], part_width, 1)
    )
    if hshrink > 1:
        # Each part transposed, side by side: (columns, parts * rows).
        turned = _transposed(cut, (2, 1, 0)).reshape(right - left, parts * rows_out)
        image = pyvips.Image.new_from_memory(
            turned.data, turned.shape[1], turned.shape[0], 1, "uchar"
        )
        wide = to_array(image.reducev(hshrink, kernel=kernel))[:, :, 0]
        found = _transposed(wide.reshape(wide.shape[0], parts, rows_out), (1, 2, 0))
    else:
        found = np.ascontiguousarray(cut.transpose(1, 0, 2))
    if found.shape[1:] == (height, width):
        return found
    out = np.empty((parts, height, width), np.uint8)
    for index in range(parts):
        _fit(found[index], out[index])
    return out


def _fit(found: np.ndarray[Any, Any], out: np.ndarray[Any, Any]) -> None:
    """``found`` copied into ``out``, cut or extended (by its last row and column) to its size;
    libvips may round the output size of a reduce one pixel off."""
    height, width = out.shape
    h, w = min(height, found.shape[0]), min(width, found.shape[1])
    out[:h, :w] = found[:h, :w]
    out[h:, :w] = out[h - 1 : h, :w]
    out[:, w:] = out[:, w - 1 : w]


_BLOCK = 64  # rows per transposed block


def _transposed(array: np.ndarray[Any, Any], axes: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    """``array.transpose(axes)`` as a contiguous array, where ``axes`` puts the first axis
    last; copied in blocks of rows, whose source and destination lines stay in cache (numpy's
    whole-array transpose of bytes runs ~1.5x slower)."""
    out = np.empty([array.shape[a] for a in axes], np.uint8)
    for start in range(0, array.shape[0], _BLOCK):
        out[..., start : start + _BLOCK] = array[start : start + _BLOCK].transpose(axes)
    return out
