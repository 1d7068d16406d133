"""libjpeg-turbo's TurboJPEG API without colour conversion: decode a JPEG (at a DCT scale)
straight into Y, Cb, Cr planes held by numpy, and encode such planes, so a downscaled render
never converts to RGB and back, nor upsamples the stored chroma only to subsample it again.

Blocking, CPU-bound; imports ctypes, numpy and the standard library. The library is Debian's
libturbojpeg0 (also used by dct_crop), loaded on first use; calls release the GIL (CDLL).
Without it ``available()`` is False and callers decode as before.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import Any

import numpy as np

from iiifsrv import turbojpeg

# TJSAMP_* values the planar path handles, and the chroma plane divisor (x, y) of each.
SAMP_444, SAMP_420, SAMP_GRAY = 0, 2, 3
CHROMA_DIVISOR = {SAMP_444: (1, 1), SAMP_420: (2, 2)}
CS_YCBCR, CS_GRAY = 1, 2  # TJCS_*

_c_int_p = ctypes.POINTER(ctypes.c_int)
_planes_t = ctypes.c_void_p * 3
_strides_t = ctypes.c_int * 3


class TurboError(Exception):
    """libturbojpeg refused a stream (the caller falls back to its other decoders)."""


_local = threading.local()


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The shared libturbojpeg with the planar decode and encode functions declared (TurboJPEG
    >= 1.4); None without it."""
    lib = turbojpeg.library()
    if lib is None or not hasattr(lib, "tjDecompressToYUVPlanes"):
        return None
    lib.tjInitDecompress.restype = ctypes.c_void_p
    lib.tjInitDecompress.argtypes = []
    lib.tjInitCompress.restype = ctypes.c_void_p
    lib.tjInitCompress.argtypes = []
    lib.tjDecompressHeader3.restype = ctypes.c_int
    lib.tjDecompressHeader3.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, _c_int_p, _c_int_p, _c_int_p,
        _c_int_p,
    ]  # fmt: skip
    lib.tjDecompressToYUVPlanes.restype = ctypes.c_int
    lib.tjDecompressToYUVPlanes.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, _planes_t, ctypes.c_int,
        _strides_t, ctypes.c_int, ctypes.c_int,
    ]  # fmt: skip
    lib.tjCompressFromYUVPlanes.restype = ctypes.c_int
    lib.tjCompressFromYUVPlanes.argtypes = [
        ctypes.c_void_p, _planes_t, ctypes.c_int, _strides_t, ctypes.c_int, ctypes.c_int,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)), ctypes.POINTER(ctypes.c_ulong),
        ctypes.c_int, ctypes.c_int,
    ]  # fmt: skip
    return lib


def available() -> bool:
    """Whether libturbojpeg could be loaded."""
    return _library() is not None


def _handles(lib: ctypes.CDLL) -> tuple[int, int]:
    """This thread's decompress and compress handles (a TurboJPEG handle is not thread-safe)."""
    handles: tuple[int, int] | None = getattr(_local, "handles", None)
    if handles is None:
        handles = (lib.tjInitDecompress(), lib.tjInitCompress())
        if not all(handles):
            raise TurboError("tjInit failed")
        _local.handles = handles
    return handles


def _lib_or_fail() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise TurboError("libturbojpeg is not installed")
    return lib


def _error(lib: ctypes.CDLL, handle: int) -> TurboError:
    message = lib.tjGetErrorStr2(handle) or b"unknown error"
    return TurboError(message.decode("latin-1", "replace"))


def header(stream: bytes) -> tuple[int, int, int, int]:
    """Width, height, chroma subsampling (TJSAMP_*) and colour space (TJCS_*) of a stream."""
    lib = _lib_or_fail()
    handle = _handles(lib)[0]
    w, h, samp, space = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    status = lib.tjDecompressHeader3(
        handle, stream, len(stream), ctypes.byref(w), ctypes.byref(h), ctypes.byref(samp),
        ctypes.byref(space),
    )  # fmt: skip
    if status != 0:
        raise _error(lib, handle)
    return w.value, h.value, samp.value, space.value


_SOF_BASELINE = (0xC0, 0xC1)  # the frames a TIFF JPEG tile uses (8-bit Huffman)


def frame(stream: bytes) -> tuple[int, int, int] | None:
    """Width, height and TJSAMP_* from the stream's frame header, parsed here (a ctypes call
    to tjDecompressHeader3 would give the GIL away once more per tile); None if the stream is
    not a baseline/extended Huffman JPEG of 1 or 3 components in a layout this module knows."""
    pos, end = 2, len(stream)
    while pos + 4 <= end:
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        if marker in _SOF_BASELINE:
            body = stream[pos + 4 : pos + 2 + length]
            if len(body) < 6 or body[0] != 8:
                return None
            height, width, count = (body[1] << 8) | body[2], (body[3] << 8) | body[4], body[5]
            factors = [body[7 + 3 * i] for i in range(count) if 8 + 3 * i < len(body)]
            if count == 1 and len(factors) == 1:
                return width, height, SAMP_GRAY
            if count == 3 and len(factors) == 3 and factors[1] == factors[2] == 0x11:
                samp = {0x11: SAMP_444, 0x22: SAMP_420}.get(factors[0])
                return (width, height, samp) if samp is not None else None
            return None
        if marker in (0xDA, 0xD9) or 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # a scan before any frame, or a progressive/lossless/arithmetic frame
        pos += 2 + length
    return None


def _pointers(planes: list[np.ndarray[Any, Any]]) -> tuple[Any, Any]:
    pointers = _planes_t(*[p.ctypes.data for p in planes], *([None] * (3 - len(planes))))
    strides = _strides_t(*[p.strides[0] for p in planes], *([0] * (3 - len(planes))))
    return pointers, strides


def decode_into(
    stream: bytes, planes: list[np.ndarray[Any, Any]], size: tuple[int, int], subsampling: int
) -> None:
    """Decode ``stream``, a JPEG of ``size`` (width, height) with ``subsampling`` (TJSAMP_*),
    into ``planes`` (row-contiguous uint8 views, e.g. a tile's place in a mosaic): Y (and Cb,
    Cr) at the scale the Y view's shape asks for (a libjpeg-turbo DCT scale: 1/8, 2/8 ... 8/8
    of ``size``), the chroma planes as the stream stores them. A stream of another size or
    subsampling raises TurboError (nothing is written outside the views)."""
    lib = _lib_or_fail()
    handle = _handles(lib)[0]
    height, width = planes[0].shape
    expected = _plane_sizes(width, height, subsampling)
    if len(planes) != len(expected):
        raise ValueError("one plane per component")
    for plane, (w, h) in zip(planes, expected, strict=True):
        if plane.dtype != np.uint8 or plane.ndim != 2 or plane.strides[1] != 1:
            raise ValueError("planes must be 2-D uint8 views with contiguous rows")
        if plane.shape[0] < h or plane.shape[1] < w:
            raise ValueError(f"plane {plane.shape} smaller than {h}x{w}")
    found = frame(stream)
    if found != (*size, subsampling):
        raise TurboError(f"tile is {found}, not {(*size, subsampling)}")
    if width * size[1] != height * size[0] or (8 * width) % size[0]:
        raise ValueError(f"{width}x{height} is not a DCT scale of {size}")
    pointers, strides = _pointers(planes)
    status = lib.tjDecompressToYUVPlanes(
        handle, stream, len(stream), pointers, width, strides, height, turbojpeg.FLAGS
    )
    if status != 0:
        raise _error(lib, handle)


def _plane_sizes(width: int, height: int, subsampling: int) -> list[tuple[int, int]]:
    """Width and height of each plane libturbojpeg reads or writes (tjPlaneWidth/Height)."""
    if subsampling == SAMP_GRAY:
        return [(width, height)]
    dx, dy = CHROMA_DIVISOR[subsampling]
    pw, ph = -(-width // dx) * dx, -(-height // dy) * dy
    return [(pw, ph), (pw // dx, ph // dy), (pw // dx, ph // dy)]


def encode(planes: list[np.ndarray[Any, Any]], subsampling: int, quality: int) -> bytes:
    """A baseline JPEG of the planes (Y alone for TJSAMP_GRAY), as libvips' jpegsave writes it
    (standard Huffman tables, no optimisation)."""
    for plane in planes:
        if plane.dtype != np.uint8 or plane.ndim != 2 or plane.strides[1] != 1:
            raise ValueError("planes must be 2-D uint8 arrays with contiguous rows")
    lib = _lib_or_fail()
    handle = _handles(lib)[1]
    height, width = planes[0].shape
    if subsampling == SAMP_420 and (width % 2 or height % 2):
        # libturbojpeg reads the luma plane padded to the chroma grid (tjPlaneWidth/Height).
        padded = np.empty((height + height % 2, width + width % 2), np.uint8)
        padded[:height, :width] = planes[0]
        padded[:height, width:] = planes[0][:, width - 1 :]
        padded[height:] = padded[height - 1 : height]
        planes = [padded, *planes[1:]]
    for plane, (w, h) in zip(planes, _plane_sizes(width, height, subsampling), strict=False):
        if plane.shape[0] < h or plane.shape[1] < w:
            raise ValueError(f"plane {plane.shape} smaller than {h}x{w}")
    pointers, strides = _pointers(planes)
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    status = lib.tjCompressFromYUVPlanes(
        handle, pointers, width, strides, height, subsampling, ctypes.byref(out),
        ctypes.byref(size), quality, 0,
    )  # fmt: skip
    try:
        if status != 0 or not out:
            raise _error(lib, handle)
        return ctypes.string_at(out, size.value)
    finally:
        if out:
            lib.tjFree(out)
