"""Images in a Storage that is not a local file (an S3 bucket): described once per object
version with a few ranged reads, then read tile by tile.

A tiled TIFF's structure (levels, tile offsets and byte counts, JPEGTables, the decoder of each
level) is read once per (key, version) through a block-cached ranged reader and kept in the
RemoteSource. Afterwards a stored JPEG tile passed through costs one ranged read
(Source.read); a rendered region reads the byte ranges of the tiles it covers (adjacent tiles in
one read) and decodes them. Untiled sources (flat TIFF, JPEG, PNG) are read whole when they are
at most ``max_whole`` bytes, else refused with 501 ("ingest it"), and so is an untiled
JPEG2000. A tiled JPEG2000's tile-part index (from TLM markers, else one small read per SOT) is
kept like a TIFF's structure, and a render reads only the tile-parts under its box and decodes
a codestream made of those alone (libvips 8.14 and OpenJPEG 2.5.0 would read every tile-part).

Blocking I/O and CPU; imports pyvips, numpy, tifffile, iiifsrv.errors, iiif.model and sources.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from struct import error as struct_error
from typing import Any, cast

import numpy as np
import pyvips
import tifffile

from iiifsrv.errors import NotImplementedFeature
from iiifsrv.iiif.model import Level, SourceInfo
from iiifsrv.sources import jp2
from iiifsrv.sources.describe import (
    JPEG_COMPRESSION,
    LevelAccess,
    NotAnImage,
    Source,
    _describe_jp2,
    _describe_tiff,
    sniff,
)
from iiifsrv.sources.storage import Storage, Version

log = logging.getLogger("iiifsrv.sources")

BLOCK = 64 * 1024  # header reads: IFDs of a pyramid are ~16 B per tile, scattered in the file
COALESCE_GAP = 16 * 1024  # tiles closer than this are fetched in one ranged read


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over ranged reads, in BLOCK-sized cached blocks."""

    def __init__(
        self,
        storage: Storage,
        key: str,
        size: int,
        etag: str = "",
        blocks: dict[int, bytes] | None = None,
    ) -> None:
        super().__init__()
        self.storage = storage
        self.key = key
        self.size = size
        self.etag = etag
        self.name = key
        self.pos = 0
        # Blocks read so far (or given: then those are not read again).
        self.blocks: dict[int, bytes] = {} if blocks is None else blocks

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            self.pos = self.size + offset
        return self.pos

    def _block(self, index: int) -> bytes:
        data = self.blocks.get(index)
        if data is None:
            start = index * BLOCK
            data = _read(self.storage, self.key, start, min(BLOCK, self.size - start), self.etag)
            self.blocks[index] = data
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self.size - self.pos))
        done = 0
        while done < want:
            index, within = divmod(self.pos, BLOCK)
            block = self._block(index)
            chunk = block[within : within + want - done]
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.size - self.pos)
        buffer = bytearray(min(size, max(0, self.size - self.pos)))
        n = self.readinto(buffer)
        return bytes(buffer[:n])

    def readall(self) -> bytes:
        return self.read(-1)


def _read(storage: Storage, key: str, offset: int, length: int, etag: str) -> bytes:
    return storage.read(key, offset, length, etag=etag)


@dataclass(frozen=True)
class TileLevel:
    """One stored level of a tiled TIFF: its tile grid and how to decode a tile."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    jpeg_header: bytes  # for raw JPEG tiles: decode header + tile with libjpeg
    decode: Callable[..., Any] | None = field(default=None, compare=False)
    jpegtables: bytes | None = None
    interpretation: str = "srgb"

    @property
    def across(self) -> int:
        return math.ceil(self.width / self.tile_width)


@dataclass(frozen=True)
class RemoteSource(Source):
    """A Source in a Storage: tiles to read by range, or a small object read whole."""

    tiles: tuple[TileLevel, ...] = ()
    whole: bool = False  # pixels come from the whole object (untiled and small enough)
    codestream: jp2.Codestream | None = None  # a JPEG2000 read tile-part by tile-part


def describe_object(
    storage: Storage,
    key: str,
    version: Version,
    where: str,
    max_whole: int,
    blocks: dict[int, bytes] | None = None,
) -> RemoteSource:
    """Describe the object ``key`` at ``version`` with as few ranged reads as it takes.

    ``blocks`` (BLOCK-sized, by index) are the object's header blocks when known (another
    replica read them: see encode_blocks); the blocks read here are added to it."""
    if version.size <= 0:
        raise NotAnImage("not an image file")
    fh = RangedFile(storage, key, version.size, version.tag, blocks)
    kind = sniff(fh.read(16))
    if kind is None:
        raise NotAnImage("not an image file")
    tiles: tuple[TileLevel, ...] = ()
    codestream: jp2.Codestream | None = None
    fh.seek(0)  # tifffile takes the current position as the start of the file
    if kind == "tiff":
        info, access = _describe_tiff(cast(Any, fh))
        loader = "tiffload"
        if info.levels[0].tile_width:
            tiles = _tile_levels(fh, info)
    elif kind == "jp2":
        info, access = _describe_jp2(fh)
        loader = "jp2kload"
        if info.levels[0].tile_width:  # tiled: read by tile-parts, never whole
            codestream = _codestream(fh, blocks if blocks is not None else fh.blocks)
            if codestream.grid() is None and version.size <= max_whole:
                codestream = None  # tiles off the grid's origin: small enough to read whole
    else:
        info, access = _describe_flat(storage, key, version, kind, max_whole)
        loader = "jpegload" if kind == "jpeg" else ""
    whole = not tiles and codestream is None
    if whole and version.size > max_whole:
        raise NotImplementedFeature(
            f"this image is stored untiled ({kind}, {version.size} bytes) and larger than "
            f"s3_max_whole_object ({max_whole} bytes): make a pyramidal derivative with "
            "iiifsrv ingest"
        )
    fh.blocks = {}  # the structure is parsed: the header blocks are no longer needed here
    mtime_ns = int(version.mtime * 1e9)
    return RemoteSource(
        path=f"{where}{key}",
        mtime_ns=mtime_ns,
        size=version.size,
        inode=0,
        loader=loader,
        info=info,
        access=access,
        storage=storage,
        key=key,
        version=version.tag,
        tiles=tiles,
        whole=whole,
        codestream=codestream,
    )


BLOCKS_FORMAT = b"B1"
INDEX_BLOCK = (1 << 64) - 1  # in a description's blocks: a JPEG2000's tile-part index
MAX_TILE_PARTS = 100_000  # a codestream without TLM costs one small GET per tile-part, once


def _codestream(fh: RangedFile, blocks: dict[int, bytes]) -> jp2.Codestream:
    """The tile-part index of the JPEG2000 object ``fh``: from ``blocks`` when another
    replica found it, else from the TLM markers of its main header, else by reading every
    SOT (12 bytes each) with small ranged reads; then kept in ``blocks`` for the next."""
    known = blocks.get(INDEX_BLOCK)
    if known is not None and (found := jp2.Codestream.decode(known)) is not None:
        return found
    try:
        box, start, end = jp2.codestream_bounds(cast(Any, fh), fh.size)
        fh.seek(start)
        header = fh.read(64 * 1024)
        while True:
            try:
                first = start + jp2.main_header_end(header)
                break
            except ValueError:
                if len(header) >= min(16 << 20, end - start):
                    raise
                header += fh.read(len(header))
        fh.seek(0)
        head = fh.read(first)
        lengths = jp2.tlm_lengths(head[start:])
        if lengths is not None:
            parts = jp2.parts_from_tlm(lengths, first, end)
        else:
            log.info("%s has no TLM markers: reading its tile-part headers once", fh.key)
            parts = jp2.walk_tile_parts(
                lambda o, n: _read(fh.storage, fh.key, o, n, fh.etag), first, end, MAX_TILE_PARTS
            )
    except (ValueError, IndexError, struct_error) as exc:
        log.warning("cannot index the JPEG2000 object %s: %s", fh.key, exc)
        raise NotImplementedFeature(
            "cannot read this JPEG2000 file tile by tile: make a pyramidal derivative with "
            "iiifsrv ingest"
        ) from None
    found = jp2.Codestream(box, start, first, end, tuple(parts), head)
    blocks[INDEX_BLOCK] = found.encode()
    return found


def encode_blocks(blocks: dict[int, bytes]) -> bytes:
    """The header blocks a description read, as bytes for the shared cache (zlib: IFDs and
    tile indexes compress well)."""
    out = bytearray(BLOCKS_FORMAT)
    for index, data in sorted(blocks.items()):
        out += struct.pack(">QI", index, len(data)) + data
    return zlib.compress(bytes(out), 1)


def decode_blocks(data: bytes) -> dict[int, bytes] | None:
    """The blocks ``encode_blocks`` wrote, or None for anything else."""
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    if not raw.startswith(BLOCKS_FORMAT):
        return None
    blocks: dict[int, bytes] = {}
    at = len(BLOCKS_FORMAT)
    while at < len(raw):
        if at + 12 > len(raw):
            return None
        index, length = struct.unpack_from(">QI", raw, at)
        blocks[index] = raw[at + 12 : at + 12 + length]
        at += 12 + length
    return blocks


def _tile_levels(fh: RangedFile, info: SourceInfo) -> tuple[TileLevel, ...]:
    """The tile index of every level ``info`` kept (blocks are cached: no new reads)."""
    out: list[TileLevel] = []
    fh.seek(0)
    try:
        with tifffile.TiffFile(cast(Any, fh)) as tif:
            stored = [lvl.keyframe for lvl in tif.series[0].levels]
            for level in info.levels:
                page = next(p for p in stored if p.imagewidth == level.width)
                if not page.tilewidth or page.planarconfig != 1:
                    raise NotImplementedFeature(
                        "this TIFF stores its samples in separate planes: make a pyramidal "
                        "derivative with iiifsrv ingest"
                    )
                header = b""
                if page.compression == JPEG_COMPRESSION and level.raw_jpeg:
                    header = _jpeg_header(page)
                out.append(
                    TileLevel(
                        page.imagewidth,
                        page.imagelength,
                        page.tilewidth,
                        page.tilelength,
                        tuple(int(o) for o in page.dataoffsets),
                        tuple(int(c) for c in page.databytecounts),
                        header,
                        None if header else page.decode,
                        page.jpegtables,
                        _interpretation(page.samplesperpixel, page.bitspersample),
                    )
                )
    except (tifffile.TiffFileError, ValueError, IndexError, StopIteration, struct_error) as exc:
        log.warning("cannot read the TIFF structure of %s: %s", fh.key, exc)
        raise NotImplementedFeature("cannot read this TIFF file") from None
    return tuple(out)


def _jpeg_header(page: Any) -> bytes:
    from iiifsrv.sources.describe import ADOBE_RGB, PHOTOMETRIC_RGB

    tables: bytes = page.jpegtables or b"\xff\xd8"
    if tables.endswith(b"\xff\xd9"):
        tables = tables[:-2]
    if page.photometric == PHOTOMETRIC_RGB:
        tables = b"\xff\xd8" + ADOBE_RGB + tables[2:]
    return tables


def _interpretation(bands: int, bits: int) -> str:
    if bands in (1, 2):
        return "grey16" if bits > 8 else "b-w"
    if bands in (3, 4):
        return "rgb16" if bits > 8 else "srgb"
    return "multiband"


def _describe_flat(
    storage: Storage, key: str, version: Version, kind: str, max_whole: int
) -> tuple[SourceInfo, tuple[LevelAccess, ...]]:
    if version.size > max_whole:
        return SourceInfo(kind="flat", width=1, height=1, levels=(Level(1, 1),)), (LevelAccess({}),)
    data = WHOLE.get(storage, key, version)
    try:
        image = pyvips.Image.new_from_buffer(data, "")
    except pyvips.Error as exc:
        log.warning("cannot read the %s object %s: %s", kind, key, exc)
        raise NotImplementedFeature(f"cannot read this {kind} file") from None
    width, height = image.width, image.height
    levels = [Level(width, height)]
    access = [LevelAccess({})]
    if kind == "jpeg":
        for shrink in (2, 4, 8):
            levels.append(Level(math.ceil(width / shrink), math.ceil(height / shrink)))
            access.append(LevelAccess({"shrink": shrink}))
    info = SourceInfo(
        kind="jpeg" if kind == "jpeg" else "flat",
        width=width,
        height=height,
        levels=tuple(levels),
        bands=image.bands,
        bits=16 if image.format in ("ushort", "short") else 8,
    )
    return info, tuple(access)


class WholeObjects:
    """Small untiled objects read whole, kept by (key, version) up to ``max_bytes``."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, storage: Storage, key: str, version: Version) -> bytes:
        k = (id(storage), key, version.tag)
        with self._lock:
            data = self._items.get(k)
            if data is not None:
                self._items.move_to_end(k)
                return data
        data = _read(storage, key, 0, version.size, version.tag)
        with self._lock:
            if k not in self._items:
                self._items[k] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data


WHOLE = WholeObjects()


def load_level(source: RemoteSource, level: int, box: tuple[int, int, int, int] | None) -> Any:
    """Level ``level`` as a pyvips image; for a tiled source only the tiles under ``box``
    (left, top, right, bottom in level pixels) are read and decoded, the rest is black."""
    options: dict[str, Any] = dict(source.access[level].options)
    if source.whole:
        storage = source.storage
        assert storage is not None
        data = WHOLE.get(
            storage, source.key, Version(source.version, source.size, source.mtime_ns / 1e9)
        )
        if source.loader == "tiffload":
            return pyvips.Image.tiffload_buffer(data, **options)
        if source.loader == "jp2kload":
            return pyvips.Image.jp2kload_buffer(data, **options)
        if source.loader == "jpegload":
            return pyvips.Image.jpegload_buffer(data, **options)
        return pyvips.Image.new_from_buffer(data, "", **options)
    if source.loader == "jp2kload":
        if source.codestream is not None and source.codestream.grid() is not None:
            return _jp2_tiles(source, source.codestream, level, box)
        return _jp2_ranged(source, options)
    t = source.tiles[level]
    left, top, right, bottom = box or (0, 0, t.width, t.height)
    c0, c1 = left // t.tile_width, (max(right, left + 1) - 1) // t.tile_width
    r0, r1 = top // t.tile_height, (max(bottom, top + 1) - 1) // t.tile_height
    c1, r1 = min(c1, t.across - 1), min(r1, math.ceil(t.height / t.tile_height) - 1)
    indices = [r * t.across + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    datas = read_tiles(source, t, indices)
    images = [_decode_tile(t, i, d) for i, d in zip(indices, datas, strict=True)]
    mosaic = images[0] if len(images) == 1 else pyvips.Image.arrayjoin(images, across=c1 - c0 + 1)
    x, y = c0 * t.tile_width, r0 * t.tile_height
    mosaic = mosaic.crop(0, 0, min(mosaic.width, t.width - x), min(mosaic.height, t.height - y))
    if (x, y, mosaic.width, mosaic.height) == (0, 0, t.width, t.height):
        return mosaic
    return mosaic.embed(x, y, t.width, t.height)


class Blocks:
    """Bytes of objects read by range, kept by (storage, key, version, index) up to a byte
    budget and shared by all threads: JPEG2000 tile-parts (``ranges``, keyed by offset), and
    SIZE blocks for the rare JPEG2000 whose tiles do not start at the grid's origin.

    Those are decoded through a pyvips source over the blocks; OpenJPEG (through libvips 8.14,
    whose source "skip" reads rather than seeks) then walks every tile-part of the codestream,
    so its first decode reads most of the object."""

    SIZE = 1024 * 1024

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, str, str, int], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, source: Source, index: int) -> bytes:
        k = (id(source.storage), source.key, source.version, index)
        data = self._get(k)
        if data is None:
            start = index * self.SIZE
            data = source.read(start, min(self.SIZE, source.size - start))
            self._put(k, data)
        return data

    def ranges(self, source: Source, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of (offset, length) ``ranges`` (JPEG2000 tile-parts), each kept here;
        the missing ones read together where they are close (read_ranges)."""
        keys = [(id(source.storage), source.key, source.version, -1 - o) for o, _ in ranges]
        out = [self._get(k) for k in keys]
        missing = [n for n, d in enumerate(out) if d is None]
        for n, data in zip(missing, read_ranges(source, [ranges[n] for n in missing]), strict=True):
            out[n] = data
            self._put(keys[n], data)
        return [d or b"" for d in out]

    def _get(self, k: tuple[int, str, str, int]) -> bytes | None:
        with self._lock:
            data = self._items.get(k)
            if data is not None:
                self._items.move_to_end(k)
            return data

    def _put(self, k: tuple[int, str, str, int], data: bytes) -> None:
        with self._lock:
            if k not in self._items:
                self._items[k] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)


BLOCKS = Blocks()


def _ranged_source(source: Source) -> Any:
    """A pyvips source reading ``source`` through BLOCKS (seekable, so libvips reads lazily)."""
    stream = pyvips.SourceCustom()
    position = [0]

    def on_read(size: int) -> bytes:
        # libvips 8.14 needs full reads: a short one mid-header is "not in a known format".
        out = bytearray()
        while len(out) < size and position[0] < source.size:
            index, within = divmod(position[0], Blocks.SIZE)
            chunk = BLOCKS.get(source, index)[within : within + size - len(out)]
            if not chunk:
                break
            out += chunk
            position[0] += len(chunk)
        return bytes(out)

    def on_seek(offset: int, whence: int) -> int:
        if whence == 0:
            position[0] = offset
        elif whence == 1:
            position[0] += offset
        else:
            position[0] = source.size + offset
        return position[0]

    stream.on_read(on_read)
    stream.on_seek(on_seek)
    return stream


_threads = threading.local()
# pyvips does not keep a custom source's Python callbacks alive for the image that reads it:
# a decoder's source stays referenced while the decoder is in a thread's cache, then two more
# minutes (longer than any render), before it may be collected.
_retired: deque[tuple[float, Any]] = deque()
_retired_lock = threading.Lock()
RETIRE_AFTER = 120.0


def _retire(stream: Any) -> None:
    now = time.monotonic()
    with _retired_lock:
        _retired.append((now, stream))
        while _retired and now - _retired[0][0] > RETIRE_AFTER:
            _retired.popleft()


def _jp2_ranged(source: RemoteSource, options: dict[str, Any]) -> Any:
    """A JPEG2000 decoder over ranged reads, owned by this render thread (as imaging does for
    files: OpenJPEG decodes of one image are serialised), at most a few per thread."""
    decoders: OrderedDict[tuple[str, str, int], tuple[Any, Any]] | None = getattr(
        _threads, "jp2", None
    )
    if decoders is None:
        decoders = _threads.jp2 = OrderedDict()
    key = (source.key, source.version, int(options.get("page", 0)))
    entry = decoders.get(key)
    if entry is None:
        stream = _ranged_source(source)
        entry = (pyvips.Image.jp2kload_source(stream, **options), stream)
        decoders[key] = entry
        while len(decoders) > 8:
            _retire(decoders.popitem(last=False)[1][1])
    else:
        decoders.move_to_end(key)
    return entry[0]


def _jp2_tiles(
    source: RemoteSource,
    codestream: jp2.Codestream,
    level: int,
    box: tuple[int, int, int, int] | None,
) -> Any:
    """Resolution ``level`` of a JPEG2000 object where only the tiles under ``box`` are read
    and decoded (the rest is black): their tile-parts (cached in BLOCKS) behind the file's
    own headers make a small JPEG2000 that libvips decodes like any other."""
    grid = codestream.grid()
    assert grid is not None
    width, height, tile_width, tile_height = grid
    lw, lh = source.info.levels[level].width, source.info.levels[level].height
    left, top, right, bottom = box or (0, 0, lw, lh)
    # libvips decodes (and caches) a level in tiles of the full-resolution tile size: at a
    # reduced level one of those covers several JPEG2000 tiles, all of which must be there.
    left, top = left - left % tile_width, top - top % tile_height
    right = min(lw, -(-max(right, left + 1) // tile_width) * tile_width)
    bottom = min(lh, -(-max(bottom, top + 1) // tile_height) * tile_height)
    across, down = math.ceil(width / tile_width), math.ceil(height / tile_height)
    # Tile p covers level pixels ceil(p * tile / 2^level) up to the next tile's first.
    c0 = min((left << level) // tile_width, across - 1)
    c1 = min(((max(right, left + 1) - 1) << level) // tile_width, across - 1)
    r0 = min((top << level) // tile_height, down - 1)
    r1 = min(((max(bottom, top + 1) - 1) << level) // tile_height, down - 1)
    tiles = {r * across + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    ranges = codestream.tile_parts(tiles)
    data = BLOCKS.ranges(source, ranges)
    head = codestream.head
    prefix = head[: codestream.box] if codestream.box >= 0 else b""
    small = jp2.sparse_codestream(prefix, head[codestream.start :], data)
    try:
        image = pyvips.Image.jp2kload_buffer(small, page=level)
    except pyvips.Error as exc:
        from iiifsrv.imaging import RenderError

        log.warning("cannot decode tiles of %s: %s", source.key, exc)
        raise RenderError("cannot decode this JPEG2000 image") from None
    x0, y0 = -(-(c0 * tile_width) >> level), -(-(r0 * tile_height) >> level)
    x1 = min(lw, -(-((c1 + 1) * tile_width) >> level))
    y1 = min(lh, -(-((r1 + 1) * tile_height) >> level))
    # Decoded here, in this thread: OpenJPEG finds a tile of this small codestream by reading
    # on from the last one it read, so concurrent decodes by libvips' threads (a lazy image)
    # can lose their place (measured: 1 in 4 multi-tile regions failed to decode).
    try:
        pixels = pyvips.Region.new(image).fetch(x0, y0, x1 - x0, y1 - y0)
    except pyvips.Error as exc:
        from iiifsrv.imaging import RenderError

        log.warning("cannot decode tiles of %s: %s", source.key, exc)
        raise RenderError("cannot decode this JPEG2000 image") from None
    image = pyvips.Image.new_from_memory(pixels, x1 - x0, y1 - y0, image.bands, image.format).copy(
        interpretation=image.interpretation, xres=image.xres, yres=image.yres
    )
    if (x0, y0, x1, y1) == (0, 0, lw, lh):
        return image
    return image.embed(x0, y0, lw, lh)


def read_tiles(source: Source, level: TileLevel, indices: list[int]) -> list[bytes]:
    """The stored bytes of tiles ``indices``: runs of nearby tiles come in one ranged read."""
    return read_ranges(source, [(level.offsets[i], level.counts[i]) for i in indices])


def read_ranges(source: Source, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of (offset, length) ``ranges``: runs of nearby ones come in one ranged read."""
    wanted = sorted((o, c, n) for n, (o, c) in enumerate(ranges) if c)
    out: list[bytes] = [b""] * len(ranges)
    run: list[tuple[int, int, int]] = []

    def flush() -> None:
        if not run:
            return
        start = run[0][0]
        end = max(o + c for o, c, _ in run)
        data = source.read(start, end - start)
        for o, c, n in run:
            out[n] = data[o - start : o - start + c]
        run.clear()

    for item in wanted:
        if run and item[0] - max(o + c for o, c, _ in run) > COALESCE_GAP:
            flush()
        run.append(item)
    flush()
    return out


def _decode_tile(level: TileLevel, index: int, data: bytes) -> Any:
    if not data:
        bands = 1 if level.interpretation in ("b-w", "grey16") else 3
        return pyvips.Image.black(level.tile_width, level.tile_height, bands=bands)
    if level.jpeg_header:
        return pyvips.Image.jpegload_buffer(level.jpeg_header + data[2:])
    assert level.decode is not None
    try:
        array, _, _ = level.decode(data, index, jpegtables=level.jpegtables)
    except Exception as exc:  # decoders raise many kinds (imagecodecs, zlib, ValueError)
        from iiifsrv.imaging import RenderError

        log.warning("cannot decode tile %d: %s", index, exc)
        raise RenderError("cannot decode a stored tile") from None
    array = np.ascontiguousarray(np.asarray(array).reshape(array.shape[-3:]))
    image = pyvips.Image.new_from_array(array)
    return image.copy(interpretation=level.interpretation)


__all__ = ["RemoteSource", "describe_object", "load_level", "jp2"]
