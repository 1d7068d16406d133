"""Read a JPEG2000 file's geometry (size, tiles, resolution levels) from its codestream header.

Blocking I/O (reads the first boxes of the file); imports only the standard library.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Callable
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
    bits = (siz[36] & 0x7F) + 1
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


# -- the tile-part index: where each tile's bytes are, to read and decode only those ---------

SOT = 0xFF90
TLM = 0xFF55
EOC = b"\xff\xd9"
SOT_LENGTH = 12  # SOT marker segment: marker, Lsot, Isot, Psot, TPsot, TNsot
TLM_PAIRS = 10921  # (65535 - 4) // 6: 16-bit tile numbers and 32-bit lengths per segment


@dataclass(frozen=True)
class Codestream:
    """Where a JPEG2000 file's codestream and its tile-parts are.

    ``box`` is the offset of the jp2c box (-1 for a raw codestream), ``start`` the SOC,
    ``header_end`` the first SOT (the main header is ``start:header_end``), ``end`` the end
    of the codestream; ``parts`` are (tile, offset, length) in file order; ``head`` is the
    file up to the first SOT (its boxes and the main header)."""

    box: int
    start: int
    header_end: int
    end: int
    parts: tuple[tuple[int, int, int], ...]
    head: bytes

    def grid(self) -> tuple[int, int, int, int] | None:
        """(width, height, tile width, tile height), or None when the image or its tiles do
        not start at the origin of the reference grid (then tiles are not simple to place)."""
        siz = self.head[self.start + 2 : self.header_end]
        if len(siz) < 40 or siz[:2] != b"\xff\x51":
            return None
        xsiz, ysiz, xo, yo, xt, yt, xto, yto = struct.unpack_from(">IIIIIIII", siz, 6)
        if xo or yo or xto or yto or not xt or not yt:
            return None
        return xsiz, ysiz, xt, yt

    def tile_parts(self, tiles: set[int]) -> list[tuple[int, int]]:
        """(offset, length) of every tile-part of ``tiles``, in file order."""
        return [(o, n) for t, o, n in self.parts if t in tiles]

    def encode(self) -> bytes:
        fields = (self.box, self.start, self.header_end, self.end, len(self.parts), len(self.head))
        out = struct.pack(">qQQQII", *fields) + self.head
        return out + b"".join(struct.pack(">HQI", *p) for p in self.parts)

    @classmethod
    def decode(cls, data: bytes) -> Codestream | None:
        try:
            box, start, header_end, end, count, n = struct.unpack_from(">qQQQII", data)
            at = struct.calcsize(">qQQQII")
            head = data[at : at + n]
            parts = tuple(struct.iter_unpack(">HQI", data[at + n : at + n + 14 * count]))
        except struct.error:
            return None
        if len(parts) != count or len(head) != n:
            return None
        return cls(box, start, header_end, end, parts, head)


def codestream_bounds(fh: BinaryIO, size: int) -> tuple[int, int, int]:
    """(jp2c box offset or -1, codestream start, codestream end) of a JP2 or raw codestream."""
    start = _find_codestream(fh)
    if start == 0:
        return -1, 0, size
    # The box header is 8 bytes, or 16 with an extended length: read it again to know which.
    for header in (8, 16):
        if start < header:
            continue
        fh.seek(start - header)
        raw = fh.read(header)
        length, kind = struct.unpack(">I4s", raw[:8])
        if kind != b"jp2c":
            continue
        if header == 16:
            length = struct.unpack(">Q", raw[8:16])[0]
        box = start - header
        return box, start, size if length == 0 else min(size, box + length)
    raise ValueError("malformed JPEG2000 box")


def main_header_end(header: bytes) -> int:
    """The offset (within ``header``, which starts at SOC) of the first SOT."""
    pos = 2
    while pos + 4 <= len(header):
        marker, length = struct.unpack(">HH", header[pos : pos + 4])
        if marker == SOT:
            return pos
        if marker >> 8 != 0xFF or length < 2:
            break
        pos += 2 + length
    raise ValueError("no SOT after the JPEG2000 main header")


def tlm_lengths(header: bytes) -> list[tuple[int, int]] | None:
    """(tile, tile-part length) from the TLM marker segments of a main header (``header``
    from SOC to the first SOT), or None when it has none or they do not number the tiles."""
    pos, out, seen = 2, [], False
    while pos + 4 <= len(header):
        marker, length = struct.unpack(">HH", header[pos : pos + 4])
        if marker == SOT:
            break
        if marker == TLM:
            seen = True
            body = header[pos + 4 : pos + 2 + length]
            if len(body) < 2:
                return None
            st, sp = (body[1] >> 4) & 3, (body[1] >> 6) & 1
            if st == 0:  # tiles in order, one part each: not worth the special case
                return None
            entry = st + (4 if sp else 2)
            for at in range(2, len(body) - entry + 1, entry):
                tile = int.from_bytes(body[at : at + st], "big")
                out.append((tile, int.from_bytes(body[at + st : at + entry], "big")))
        pos += 2 + length
    return out if seen else None


def walk_tile_parts(
    read: Callable[[int, int], bytes], first: int, end: int, limit: int
) -> list[tuple[int, int, int]]:
    """(tile, offset, length) of every tile-part from the SOT at ``first`` on, reading each
    SOT (12 bytes) with ``read(offset, length)``; ValueError past ``limit`` parts."""
    out: list[tuple[int, int, int]] = []
    at = first
    while at + SOT_LENGTH <= end:
        raw = read(at, SOT_LENGTH)
        marker, lsot, tile, psot = struct.unpack(">HHHI", raw[:10])
        if marker != SOT or lsot != 10:
            if raw[:2] == EOC:
                break
            raise ValueError(f"no SOT at {at}")
        length = psot or (end - 2 - at)  # Psot 0: the last tile-part, up to EOC
        if length < SOT_LENGTH or at + length > end:
            raise ValueError(f"bad tile-part length at {at}")
        out.append((tile, at, length))
        if len(out) > limit:
            raise ValueError("too many tile-parts")
        at += length
    return out


def parts_from_tlm(
    lengths: list[tuple[int, int]], first: int, end: int
) -> list[tuple[int, int, int]]:
    out, at = [], first
    for tile, length in lengths:
        if length < SOT_LENGTH or at + length > end:
            raise ValueError("TLM lengths do not fit the codestream")
        out.append((tile, at, length))
        at += length
    return out


def sparse_codestream(prefix: bytes, main_header: bytes, parts: list[bytes]) -> bytes:
    """A JPEG2000 file holding only some tile-parts: ``prefix`` is the file up to the jp2c
    box (empty for a raw codestream), ``main_header`` SOC up to the first SOT. OpenJPEG
    decodes the tiles present; the others must never be asked for."""
    body = main_header + b"".join(parts) + EOC
    if not prefix:
        return body
    return prefix + struct.pack(">I4s", 8 + len(body), b"jp2c") + body


def add_tlm(path: str) -> bool:
    """Write TLM marker segments (the length of every tile-part) into the main header of the
    JPEG2000 file ``path``, so that a reader finds any tile's bytes from the header alone.
    The file keeps its inode (an ingest holds a lock on it): the new content is built in an
    anonymous temporary file, then copied back. False (the file untouched) when it has them
    already or cannot have them (more than 65535 tiles, or 256 segments)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        box, start, end = codestream_bounds(fh, size)
        fh.seek(start)
        first = start + main_header_end(fh.read(1 << 20))
        fh.seek(start)
        if tlm_lengths(fh.read(first - start)) is not None:
            return False

        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)

        parts = walk_tile_parts(read, first, end, 1 << 30)
        if not parts or max(t for t, _, _ in parts) > 0xFFFF or len(parts) > 256 * TLM_PAIRS:
            return False
        segments = []
        for z, at in enumerate(range(0, len(parts), TLM_PAIRS)):
            pairs = b"".join(struct.pack(">HI", t, n) for t, _, n in parts[at : at + TLM_PAIRS])
            segments.append(struct.pack(">HHBB", TLM, 4 + len(pairs), z, 0x60) + pairs)
        tlm = b"".join(segments)
        fh.seek(0)
        head = bytearray(fh.read(first))
        if box >= 0:
            length = struct.unpack_from(">I", head, box)[0]
            if length == 1:
                extended = struct.unpack_from(">Q", head, box + 8)[0]
                struct.pack_into(">Q", head, box + 8, extended + len(tlm))
            elif length != 0:
                if length + len(tlm) > 0xFFFFFFFF:
                    return False
                struct.pack_into(">I", head, box, length + len(tlm))
        with tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(path))) as spool:
            spool.write(head + tlm)
            shutil.copyfileobj(fh, spool, 1 << 20)
            spool.seek(0)
            with open(path, "r+b") as out:
                shutil.copyfileobj(spool, out, 1 << 20)
                out.truncate()
    return True
