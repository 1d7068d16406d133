"""Read a JPEG2000 file's geometry (size, tiles, resolution levels) from its codestream header.

Blocking I/O (reads the first boxes of the file); imports only the standard library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class J2KHeader:
    width: int
    height: int
    tile_width: int
    tile_height: int
    components: int
    bits: int
    levels: int  # decomposition levels: resolutions 0..levels are decodable


def _find_codestream(fh: BinaryIO) -> int:
    """Offset of the codestream: 0 for a raw .j2k, else the content of the jp2c box."""
    fh.seek(0)
    head = fh.read(12)
    if head[:4] == b"\xff\x4f\xff\x51":
        return 0
    offset = 0
    while True:
        fh.seek(offset)
        box = fh.read(16)
        if len(box) < 8:
            raise ValueError("no codestream box in JPEG2000 file")
        length, kind = struct.unpack(">I4s", box[:8])
        header = 8
        if length == 1:
            length = struct.unpack(">Q", box[8:16])[0]
            header = 16
        if kind == b"jp2c":
            return offset + header
        if length == 0 or length < header:
            raise ValueError("malformed JPEG2000 box")
        offset += length


def read_header(fh: BinaryIO) -> J2KHeader:
    start = _find_codestream(fh)
    fh.seek(start)
    data = fh.read(65536)
    if data[:2] != b"\xff\x4f":
        raise ValueError("JPEG2000 codestream does not start with SOC")
    pos = 2
    siz = cod = None
    while pos + 4 <= len(data) and (siz is None or cod is None):
        marker, length = struct.unpack(">HH", data[pos : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xFF51:
            siz = body
        elif marker == 0xFF52:
            cod = body
        elif marker == 0xFF90:  # SOT: main header is over
            break
        pos += 2 + length
    if siz is None or cod is None:
        raise ValueError("JPEG2000 header lacks SIZ or COD")
    (_, xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, _xto, _yto, csiz) = struct.unpack(
        ">HIIIIIIIIH", siz[:36]
    )
    bits = (siz[36] & 0x7F) + 1  # Ssiz of the first component follows Csiz
    levels = cod[5]
    return J2KHeader(
        width=xsiz - xosiz,
        height=ysiz - yosiz,
        tile_width=xtsiz,
        tile_height=ytsiz,
        components=csiz,
        bits=bits,
        levels=levels,
    )
