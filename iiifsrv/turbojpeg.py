"""Debian's libturbojpeg0 through ctypes, opened once per process and shared by dct_crop (lossless
edge crops) and engine.turbo (planar decode and encode). Calls through a CDLL release the GIL.

Imports ctypes and the standard library only. ``library()`` is None when it cannot be loaded;
callers then fall back to their other paths.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

STOPONWARNING = 8192  # TJFLAG_STOPONWARNING: a damaged tile fails instead of yielding grey blocks
LIMITSCANS = 32768  # TJFLAG_LIMITSCANS: refuse progressive streams with absurd scan counts
FLAGS = STOPONWARNING | LIMITSCANS
_NAMES = ("turbojpeg", "libturbojpeg.so.0")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The library with the functions both users share declared (tjFree, tjGetErrorStr2)."""
    for name in _NAMES:
        path = ctypes.util.find_library(name) if "." not in name else name
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.tjFree.restype = None
        lib.tjFree.argtypes = [ctypes.POINTER(ctypes.c_ubyte)]
        lib.tjGetErrorStr2.restype = ctypes.c_char_p
        lib.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
        return lib
    return None
