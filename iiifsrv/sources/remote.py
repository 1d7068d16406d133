"""Images in a Storage that is not a local file (an S3 bucket): described once per object
version with a few ranged reads, then read tile by tile.

A tiled TIFF's structure (levels, tile offsets and byte counts, JPEGTables, the decoder of each
level) is read once per (key, version) through a block-cached ranged reader and kept in the
RemoteSource. Afterwards a stored JPEG tile passed through costs one ranged read
(Source.read); a rendered region reads the byte ranges of the tiles it covers (adjacent tiles in
one read) and decodes them. Untiled sources (flat TIFF, JPEG, PNG) are read whole when they are
at most ``max_whole`` bytes, else refused with 501 ("ingest it"). JPEG2000 is read whole up to
``max_whole``, beyond through a pyvips source over ranged reads of 1 MiB blocks kept in a
bounded shared block cache (Blocks).

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
    fh.seek(0)  # tifffile takes the current position as the start of the file
    if kind == "tiff":
        info, access = _describe_tiff(cast(Any, fh))
        loader = "tiffload"
        if info.levels[0].tile_width:
            tiles = _tile_levels(fh, info)
    elif kind == "jp2":
        info, access = _describe_jp2(fh)
        loader = "jp2kload"
    else:
        info, access = _describe_flat(storage, key, version, kind, max_whole)
        loader = "jpegload" if kind == "jpeg" else ""
    whole = not tiles and (kind != "jp2" or version.size <= max_whole)
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
    )


BLOCKS_FORMAT = b"B1"


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
    """Blocks of objects read by range, kept by (storage, key, version, index) up to a byte
    budget and shared by all threads (JPEG2000 decoders read through it).

    OpenJPEG (through libvips 8.14, whose source "skip" reads rather than seeks) walks every
    tile-part of a codestream when it opens one: the first decode of a JPEG2000 object reads
    most of it, in SIZE ranged GETs, and later decodes find the blocks here."""

    SIZE = 1024 * 1024

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, str, str, int], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, source: Source, index: int) -> bytes:
        k = (id(source.storage), source.key, source.version, index)
        with self._lock:
            data = self._items.get(k)
            if data is not None:
                self._items.move_to_end(k)
                return data
        start = index * self.SIZE
        data = source.read(start, min(self.SIZE, source.size - start))
        with self._lock:
            if k not in self._items:
                self._items[k] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data


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


def read_tiles(source: Source, level: TileLevel, indices: list[int]) -> list[bytes]:
    """The stored bytes of tiles ``indices``: runs of nearby tiles come in one ranged read."""
    wanted = sorted(
        (level.offsets[i], level.counts[i], n) for n, i in enumerate(indices) if level.counts[i]
    )
    out: list[bytes] = [b""] * len(indices)
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
