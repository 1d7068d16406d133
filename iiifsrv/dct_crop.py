"""Lossless top-left crop of a baseline JPEG in the DCT domain (libjpeg-turbo's tjTransform with
TJXOPT_CROP): how a clipped edge tile is cut from its padded stored tile without a decode.

Blocking, CPU-light (entropy decode and re-encode of one tile, no IDCT, no colour conversion).
Imports ctypes, the standard library and turbojpeg (Debian's libturbojpeg0, loaded on first
use). Without it ``available()`` is False and callers render as before.
"""

from __future__ import annotations

import ctypes
import functools
import threading

from iiifsrv import turbojpeg

_TJXOPT_CROP = 4


class CropError(Exception):
    """libturbojpeg refused the stream or the crop (the caller renders instead)."""


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    _fields_ = [
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    ]


_local = threading.local()


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The shared libturbojpeg with the transform functions declared."""
    lib = turbojpeg.library()
    if lib is None:
        return None
    lib.tjInitTransform.restype = ctypes.c_void_p
    lib.tjInitTransform.argtypes = []
    lib.tjTransform.restype = ctypes.c_int
    lib.tjTransform.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(_Transform),
        ctypes.c_int,
    ]
    return lib


def available() -> bool:
    """Whether libturbojpeg could be loaded."""
    return _library() is not None


def _handle(lib: ctypes.CDLL) -> int:
    """This thread's transform handle (a TurboJPEG handle is not thread-safe)."""
    handle: int | None = getattr(_local, "handle", None)
    if handle is None:
        handle = lib.tjInitTransform()
        if not handle:
            raise CropError("tjInitTransform failed")
        _local.handle = handle
    return handle


def crop(jpeg: bytes, width: int, height: int) -> bytes:
    """The top-left ``width`` x ``height`` pixels of ``jpeg`` as a new JPEG, losslessly: the
    same DCT coefficients (the partial blocks at the new right and bottom edges are kept whole
    and hidden by the smaller frame size), re-entropy-coded with the standard Huffman tables."""
    lib = _library()
    if lib is None:
        raise CropError("libturbojpeg is not installed")
    handle = _handle(lib)
    transform = _Transform(_Region(0, 0, width, height), 0, _TJXOPT_CROP, None, None)
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    status = lib.tjTransform(
        handle,
        jpeg,
        len(jpeg),
        1,
        ctypes.byref(out),
        ctypes.byref(size),
        transform,
        turbojpeg.FLAGS,
    )
    try:
        if status != 0 or not out:
            message = lib.tjGetErrorStr2(handle) or b"unknown error"
            raise CropError(message.decode("latin-1", "replace"))
        return ctypes.string_at(out, size.value)
    finally:
        if out:
            lib.tjFree(out)
