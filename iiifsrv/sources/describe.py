"""Describe an image file: its kind by magic bytes, its levels and tiling, and how to read them.

Blocking I/O (tifffile reads only the TIFF structure); may import pyvips for header-only reads of
flat images, iiifsrv.errors and iiifsrv.iiif.model. Never decodes pixels.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from struct import error as struct_error
from typing import Any

import tifffile

from iiifsrv.errors import NotFound, NotImplementedFeature
from iiifsrv.iiif.model import Level, SourceInfo
from iiifsrv.sources import jp2
from iiifsrv.sources.local import OPEN_FILES
from iiifsrv.sources.storage import Storage

log = logging.getLogger("iiifsrv.sources")

JPEG_COMPRESSION = 7
PHOTOMETRIC_MINISBLACK = 1
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6
# An Adobe APP14 segment with transform 0: tells a decoder the 3 components are RGB, not YCbCr.
# libtiff strips it from RGB-photometric JPEG tiles (libvips writes those at Q >= 90).
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def sniff(head: bytes) -> str | None:
    """The container kind from the first bytes, or None for anything that is not an image."""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "jp2"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class LevelAccess:
    """How to read one level: libvips loader options and, for JPEG tiles, the raw tile index."""

    options: dict[str, Any]
    offsets: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    tiles_across: int = 0
    jpeg_header: bytes = b""  # JPEGTables without their EOI, to splice before a tile's data


class NotAnImage(NotFound):
    """The file is not an image: the caller answers exactly as for a missing identifier."""


@dataclass(frozen=True)
class Source:
    path: str
    mtime_ns: int
    size: int
    inode: int
    loader: str  # pyvips loader: tiffload, jp2kload, jpegload, or "" for new_from_file
    info: SourceInfo
    access: tuple[LevelAccess, ...] = field(repr=False)
    # Stored elsewhere than a local file (sources/s3.py): the storage, the key and the version
    # tag (ETag) the description was read from. None/"" for a local file.
    storage: Storage | None = field(default=None, repr=False, compare=False)
    key: str = ""
    version: str = ""

    @property
    def identity(self) -> str:
        if self.version:
            return f"{self.key}@{self.version}"
        return f"{self.inode}:{self.mtime_ns}:{self.size}"

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the stored object: one ranged read (a pread on a descriptor kept open for
        the version described, or one ranged GET of the version described: If-Match its ETag)."""
        if self.storage is not None:
            return self.storage.read(self.key, offset, length, etag=self.version)
        return OPEN_FILES.read(self.path, (self.inode, self.mtime_ns, self.size), offset, length)

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


def describe(path: str, st: os.stat_result) -> Source:
    with open(path, "rb") as fh:
        head = fh.read(16)
        kind = sniff(head)
        if kind is None:
            raise NotAnImage("no image with that identifier")
        if kind == "tiff":
            info, access = _describe_tiff(path)
            loader = "tiffload"
        elif kind == "jp2":
            info, access = _describe_jp2(fh)
            loader = "jp2kload"
        else:
            info, access = _describe_flat(path, kind)
            loader = "jpegload" if kind == "jpeg" else ""
    if not info.pyramidal:
        log.info(
            "%s is not a tiled pyramid (%s, %dx%d): it is served, slower; "
            "`iiifsrv ingest` would make a pyramidal derivative",
            os.path.basename(path),
            kind,
            info.width,
            info.height,
        )
    return Source(
        path=path,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size,
        inode=st.st_ino,
        loader=loader,
        info=info,
        access=access,
    )


def _describe_tiff(path: str) -> tuple[SourceInfo, tuple[LevelAccess, ...]]:
    try:
        with tifffile.TiffFile(path) as tif:
            top = {page.offset: i for i, page in enumerate(tif.pages)}
            series = tif.series[0]
            levels: list[Level] = []
            access: list[LevelAccess] = []
            for index, lvl in enumerate(series.levels):
                page = lvl.keyframe
                options: dict[str, Any]
                if index == 0 or page.offset in top:
                    options = {"page": top.get(page.offset, 0)}
                else:
                    options = {"subifd": index - 1}
                tw, th = page.tilewidth, page.tilelength
                raw = bool(
                    tw
                    and page.compression == JPEG_COMPRESSION
                    and page.photometric
                    in (PHOTOMETRIC_MINISBLACK, PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
                    and page.bitspersample == 8
                    and page.planarconfig == 1
                    and page.samplesperpixel in (1, 3)
                )
                levels.append(Level(page.imagewidth, page.imagelength, tw, th, raw))
                if raw:
                    tables = page.jpegtables or b"\xff\xd8"
                    if tables.endswith(b"\xff\xd9"):
                        tables = tables[:-2]
                    if page.photometric == PHOTOMETRIC_RGB:
                        tables = b"\xff\xd8" + ADOBE_RGB + tables[2:]
                    access.append(
                        LevelAccess(
                            options,
                            tuple(int(o) for o in page.dataoffsets),
                            tuple(int(c) for c in page.databytecounts),
                            math.ceil(page.imagewidth / tw),
                            tables,
                        )
                    )
                else:
                    access.append(LevelAccess(options))
            first = series.levels[0].keyframe
            bands = first.samplesperpixel
            bits = first.bitspersample
    except (tifffile.TiffFileError, ValueError, IndexError, struct_error) as exc:
        log.warning("cannot read the TIFF %s: %s", path, exc)
        raise NotImplementedFeature("cannot read this TIFF file") from None
    # Keep only levels that really shrink (some files repeat a thumbnail or a mask).
    keep = [0] + [i for i in range(1, len(levels)) if levels[i].width < levels[i - 1].width]
    info = SourceInfo(
        kind="tiff",
        width=levels[0].width,
        height=levels[0].height,
        levels=tuple(levels[i] for i in keep),
        bands=bands,
        bits=bits,
    )
    return info, tuple(access[i] for i in keep)


def _describe_jp2(fh: Any) -> tuple[SourceInfo, tuple[LevelAccess, ...]]:
    try:
        header = jp2.read_header(fh)
    except (ValueError, IndexError, OSError, struct_error) as exc:
        log.warning("cannot read the JPEG2000 file %s: %s", getattr(fh, "name", "?"), exc)
        raise NotImplementedFeature("cannot read this JPEG2000 file") from None
    tiled = header.tile_width < header.width or header.tile_height < header.height
    tw, th = (header.tile_width, header.tile_height) if tiled else (0, 0)
    levels = []
    access = []
    for r in range(header.levels + 1):
        w = math.ceil(header.width / (1 << r))
        h = math.ceil(header.height / (1 << r))
        if w < 1 or h < 1:
            break
        levels.append(Level(w, h, tw, th))
        access.append(LevelAccess({"page": r}))
    info = SourceInfo(
        kind="jp2",
        width=header.width,
        height=header.height,
        levels=tuple(levels),
        bands=header.components,
        bits=header.bits,
    )
    return info, tuple(access)


def _describe_flat(path: str, kind: str) -> tuple[SourceInfo, tuple[LevelAccess, ...]]:
    import pyvips

    try:
        image = pyvips.Image.new_from_file(path)
    except pyvips.Error as exc:
        log.warning("cannot read the %s file %s: %s", kind, path, exc)
        raise NotImplementedFeature(f"cannot read this {kind} file") from None
    width, height = image.width, image.height
    levels = [Level(width, height)]
    access = [LevelAccess({})]
    if kind == "jpeg":
        # libjpeg decodes at 1/2, 1/4 and 1/8 scale directly (shrink-on-load).
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
