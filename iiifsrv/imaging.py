"""Render a Plan from a Source with libvips, and read stored JPEG tiles as they are.

Blocking, CPU-bound: the service calls these in worker threads under its render limiter.
Imports pyvips, iiifsrv.errors, iiif.plan, sources.{describe,composite,computed}, bandmath
(computed images) and engine (the fast decode paths, tried first); never Starlette.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyvips

from iiifsrv import bandmath, dct_crop
from iiifsrv.catalogue import Transform
from iiifsrv.encoders import encode
from iiifsrv.engine import mosaic, resample
from iiifsrv.errors import IIIFError
from iiifsrv.iiif.plan import EdgeTile, Plan, RawTile
from iiifsrv.sources import remote
from iiifsrv.sources.composite import CompositeSource, combine
from iiifsrv.sources.computed import ComputedSource
from iiifsrv.sources.describe import Source
from iiifsrv.sources.remote import RemoteSource

# Counts renders actually started: pixel decodes, and lossless crops of clipped edge tiles (which
# make new bytes without decoding). Tests use it to prove a refused request rendered nothing;
# it is never read by the server itself.
renders_started = 0
# Counts pixel decodes only (render()): tests prove with it that stored tiles, full or clipped at
# an edge, are served without one.
decodes_started = 0


class RenderError(IIIFError):
    """The file was described but its pixels cannot be decoded (corrupt data): 501."""

    status = 501


_CACHE_MAX_OPERATIONS = 200


def configure(cache_mb: int, concurrency: int = 1) -> None:
    """Process-wide libvips settings: operation cache size and threads per operation."""
    pyvips.cache_set_max_mem(cache_mb * 1024 * 1024)
    pyvips.cache_set_max(_CACHE_MAX_OPERATIONS)
    pyvips.cache_set_max_files(50)
    if hasattr(pyvips, "concurrency_set"):
        pyvips.concurrency_set(concurrency)


Box = tuple[int, int, int, int]  # left, top, right, bottom in level pixels


def load_level(source: Source, level: int, box: Box | None = None) -> pyvips.Image:
    """The level as a (lazy) image. ``box`` is the part a render needs: sources in object
    storage read only the tiles under it (the rest of the image is black); files ignore it."""
    if isinstance(source, CompositeSource):
        return _composite_level(source, level, box)
    if isinstance(source, ComputedSource):
        level_info = source.info.levels[level]
        return _computed_pixels(source, level, (0, 0, level_info.width, level_info.height))
    if isinstance(source, RemoteSource):
        return remote.load_level(source, level, box)
    options: dict[str, Any] = dict(source.access[level].options)
    _forget_replaced(source)
    if source.loader == "tiffload":
        return pyvips.Image.tiffload(source.path, **options)
    if source.loader == "jp2kload":
        return _jp2_decoder(source, options)
    if source.loader == "jpegload":
        return pyvips.Image.jpegload(source.path, **options)
    return pyvips.Image.new_from_file(source.path, **options)


# The file version each path was last loaded at. libvips 8.14 caches a load operation by its
# arguments (the file name), so a file replaced under the same name would keep decoding as the
# old one; when a path comes back with another version, libvips' operation cache is emptied
# (setting its size to 0 trims it). Replacements are rare: the common case is one dict look-up.
_loaded_versions: dict[str, str] = {}
_LOADED_VERSIONS_MAX = 100_000


def _forget_replaced(source: Source) -> None:
    version = source.identity
    seen = _loaded_versions.get(source.path)
    if seen == version:
        return
    if seen is not None:
        pyvips.cache_set_max(0)
        pyvips.cache_set_max(_CACHE_MAX_OPERATIONS)
    if len(_loaded_versions) >= _LOADED_VERSIONS_MAX:
        _loaded_versions.clear()
    _loaded_versions[source.path] = version


_threads = threading.local()
_DECODERS_PER_THREAD = 8


def _jp2_decoder(source: Source, options: dict[str, Any]) -> pyvips.Image:
    """A JPEG2000 decoder owned by this render thread.

    libvips' operation cache hands every caller the same jp2kload image, and OpenJPEG decodes
    of one image are serialised: concurrent tile renders of one JP2 would queue behind each
    other. Each render thread keeps its own decoders instead (a new one costs a header parse,
    ~20 ms), keyed by file version, at most a few per thread.
    """
    decoders: OrderedDict[tuple[str, int, int, int], pyvips.Image] | None = getattr(
        _threads, "jp2", None
    )
    if decoders is None:
        decoders = _threads.jp2 = OrderedDict()
    key = (source.path, source.mtime_ns, source.size, int(options.get("page", 0)))
    image = decoders.get(key)
    if image is None:
        stream = pyvips.Source.new_from_file(source.path)
        image = pyvips.Image.jp2kload_source(stream, **options)
        decoders[key] = image
        while len(decoders) > _DECODERS_PER_THREAD:
            decoders.popitem(last=False)
    else:
        decoders.move_to_end(key)
    return image


def _composite_level(source: CompositeSource, level: int, box: Box | None) -> pyvips.Image:
    """The same level of each band pyramid, joined as red, green and blue."""
    planes = [load_level(part, level, box).extract_band(0) for part in source.parts]
    if any(p.format == "ushort" for p in planes):
        planes = [p if p.format == "ushort" else p.cast("ushort") * 257 for p in planes]
        planes = [p.cast("ushort") for p in planes]
    joined = planes[0].bandjoin(planes[1:])
    return joined.copy(interpretation="rgb16" if joined.format == "ushort" else "srgb")


# -- computed images (pca, ratio, difference, stretch:) -----------------------------------------


def _band_pixels(
    part: Source, level: int, box: tuple[int, int, int, int], levels: DecodedLevels | None = None
) -> Any:
    left, top, width, height = box
    needed = (left, top, left + width, top + height)  # parts in object storage read just these
    image = levels.load(part, level, needed) if levels else load_level(part, level, needed)
    return image.extract_band(0).crop(*box).numpy()


def _computed_pixels(
    source: ComputedSource,
    level: int,
    box: tuple[int, int, int, int],
    levels: DecodedLevels | None = None,
) -> pyvips.Image:
    """The computed image's pixels in ``box`` (left, top, width, height) of ``level``, 8-bit."""
    assert source.transform is not None
    arrays = [_band_pixels(part, level, box, levels) for part in source.parts]
    pixels = bandmath.apply(source.transform, arrays, source.channels)
    image = pyvips.Image.new_from_array(pixels)
    return image.copy(interpretation="srgb" if image.bands == 3 else "b-w")


def _fresh_level(source: Source, level: int) -> pyvips.Image:
    """A level read from the file as it is now: libvips' operation cache knows files by name
    only, and may still hold the pixels of a file replaced since (a re-ingest)."""
    if source.loader == "tiffload":
        options: dict[str, Any] = dict(source.access[level].options)
        return pyvips.Image.tiffload_source(pyvips.Source.new_from_file(source.path), **options)
    return load_level(source, level)


def fit_transform(op: str, bands: tuple[str, ...], parts: list[Source]) -> Transform:
    """Fit ``op`` on ``parts`` (the sources of ``bands``, same size) at one reduced level."""
    sizes = [(lvl.width, lvl.height) for lvl in combine("fit", parts).info.levels]
    level = bandmath.fit_level(sizes)
    width, height = sizes[level]
    arrays = [_fresh_level(part, level).extract_band(0).numpy() for part in parts]
    return bandmath.fit(op, bands, arrays, (width, height))


# Per-band contrast stretch ("stretch" quality): the 1st and 99th percentiles of each band,
# measured once per source version on its smallest level, so every tile is stretched alike.
STRETCH_LOW, STRETCH_HIGH = 1.0, 99.0
_stretch_stats: dict[str, list[tuple[float, float]]] = {}


def _stretch_base(image: pyvips.Image) -> pyvips.Image:
    """The image in the space the stretch works in: its own grey/RGB values, 8 or 16 bit."""
    if image.bands <= 4 and image.interpretation in ("b-w", "grey16", "srgb", "rgb", "rgb16"):
        return image
    return _to_display(image)


def _colour_bands(image: pyvips.Image) -> int:
    bands = int(image.bands)
    return bands - 1 if bands in (2, 4) else bands


def stretch_stats(source: Source) -> list[tuple[float, float]]:
    known = _stretch_stats.get(source.identity)
    if known is not None:
        return known
    small = _stretch_base(load_level(source, len(source.info.levels) - 1))
    if small.format not in ("uchar", "ushort"):
        small = small.cast("ushort")
    stats = []
    for index in range(_colour_bands(small)):
        band = small.extract_band(index)
        low, high = float(band.percent(STRETCH_LOW)), float(band.percent(STRETCH_HIGH))
        stats.append((low, max(high, low + 1)))
    if len(_stretch_stats) > 256:
        _stretch_stats.clear()
    _stretch_stats[source.identity] = stats
    return stats


def _stretch(image: pyvips.Image, source: Source) -> pyvips.Image:
    image = _stretch_base(image)
    stats = stretch_stats(source)
    count = _colour_bands(image)
    planes = []
    for index in range(count):
        low, high = stats[min(index, len(stats) - 1)]
        scaled = (image.extract_band(index) - low) * (255.0 / (high - low))
        planes.append(scaled.cast("uchar"))  # cast clips to 0-255
    if count < image.bands:
        alpha = image.extract_band(count)
        planes.append(alpha.cast("uchar", shift=True) if alpha.format == "ushort" else alpha)
    out = planes[0].bandjoin(planes[1:]) if len(planes) > 1 else planes[0]
    return out.copy(interpretation="srgb" if count >= 3 else "b-w")


def _to_display(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB or 8-bit grey, keeping an alpha band if there is one."""
    interpretation = image.interpretation
    if (
        interpretation in ("cmyk", "lab", "labs", "lch", "xyz", "yxy", "hsv", "scrgb")
        or interpretation == "rgb16"
    ):
        image = image.colourspace("srgb")
    elif interpretation == "grey16":
        image = image.colourspace("b-w")
    if image.bands > 4 or (image.bands > 2 and image.interpretation not in ("srgb", "rgb")):
        # Multiband data without colour meaning: show its first three bands.
        image = image.extract_band(0, n=3) if image.bands >= 3 else image.extract_band(0)
        image = image.copy(interpretation="srgb" if image.bands == 3 else "b-w")
    if image.format != "uchar":
        if image.format in ("ushort", "short"):
            image = image.cast("uchar", shift=True)
        else:
            image = image.cast("uchar")
    return image


@dataclass(frozen=True)
class RenderOptions:
    jpeg_quality: int = 80
    kernel: str = "linear"  # resampling kernel of the residual (< 2x) after the pyramid level
    fast_decode: bool = True  # stored TIFF tiles decoded by engine/ where it applies


class DecodedLevels:
    """Small pyramid levels kept decoded in memory (byte-bounded, shared by render threads).

    Overview levels are read again and again (thumbnails, every distinct downscaled view, a
    viewer's first zoom levels); decoding one whole costs about as much as resizing it."""

    def __init__(self, max_bytes: int, max_pixels: int = 3_000_000) -> None:
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[str, str, str, int, int], pyvips.Image] = OrderedDict()
        self._bytes = 0

    def keeps(self, source: Source, level: int) -> bool:
        """Whether ``level`` is one this keeps decoded (read whole once, then no read)."""
        info = source.info.levels[level]
        return bool(self.max_bytes) and info.width * info.height <= self.max_pixels

    def load(self, source: Source, level: int, box: Box | None = None) -> pyvips.Image:
        if not self.keeps(source, level):
            return load_level(source, level, box)
        key = (source.loader, source.path, source.identity, source.size, level)
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self._images.move_to_end(key)
                return image
        image = load_level(source, level).copy_memory()
        size = image.width * image.height * image.bands * _BYTES.get(image.format, 4)
        with self._lock:
            if key not in self._images:
                self._images[key] = image
                self._bytes += size
                while self._bytes > self.max_bytes and len(self._images) > 1:
                    _, old = self._images.popitem(last=False)
                    self._bytes -= old.width * old.height * old.bands * _BYTES.get(old.format, 4)
        return image


_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2}


def _level_box(width: int, height: int, source: Source, plan: Plan) -> Box:
    """The pixels of a ``width`` x ``height`` level that the plan's region covers."""
    sx = width / source.info.width
    sy = height / source.info.height
    r = plan.region
    left = min(width - 1, int(math.floor(r.x * sx)))
    top = min(height - 1, int(math.floor(r.y * sy)))
    right = min(width, max(left + 1, int(math.ceil((r.x + r.w) * sx - 1e-6))))
    bottom = min(height, max(top + 1, int(math.ceil((r.y + r.h) * sy - 1e-6))))
    return left, top, right, bottom


def _crop_resize(
    image: pyvips.Image, source: Source, plan: Plan, kernel: str = "linear"
) -> pyvips.Image:
    left, top, right, bottom = _level_box(image.width, image.height, source, plan)
    if (left, top, right, bottom) != (0, 0, image.width, image.height):
        image = image.crop(left, top, right - left, bottom - top)
    return _resize(image, plan, kernel)


def _computed_crop_resize(
    source: ComputedSource, plan: Plan, levels: DecodedLevels | None, kernel: str
) -> pyvips.Image:
    """Computed images are computed on the level's crop only (never on the whole level)."""
    level = source.info.levels[plan.level]
    left, top, right, bottom = _level_box(level.width, level.height, source, plan)
    image = _computed_pixels(source, plan.level, (left, top, right - left, bottom - top), levels)
    return _resize(image, plan, kernel)


def _resize(image: pyvips.Image, plan: Plan, kernel: str) -> pyvips.Image:
    # Exactly the planned size; linear/cubic shrinks below 2x reduce horizontally as a vertical
    # pass on the transposed image (libvips 8.14's horizontal reduce is ~7x slower).
    return resample.reduce(image, plan.width, plan.height, kernel)


def _has_alpha(image: pyvips.Image) -> bool:
    return image.bands in (2, 4)


def _orient(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if plan.mirror:
        image = image.fliphor()
    degrees = plan.degrees
    if degrees == 0:
        return image
    if degrees in (90, 180, 270):
        return image.rot({90: "d90", 180: "d180", 270: "d270"}[int(degrees)])
    if plan.format in ("png", "webp", "gif", "tif") and not _has_alpha(image):
        image = image.bandjoin(255)
    background = [0] * image.bands if _has_alpha(image) else [255] * image.bands
    return image.rotate(degrees, background=background)


def _quality(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if plan.quality in ("gray", "bitonal"):
        alpha = None
        if _has_alpha(image):
            alpha = image.extract_band(image.bands - 1)
            image = image.extract_band(0, n=image.bands - 1)
        if image.bands >= 3:
            image = image.colourspace("b-w")
        image = image.extract_band(0)
        if plan.quality == "bitonal":
            image = image > 127
        if alpha is not None:
            image = image.bandjoin(alpha)
        return image.copy(interpretation="b-w")
    # default/color: as it is (a grey source stays grey: that is all its colour information).
    return image


def render(
    source: Source,
    plan: Plan,
    options: RenderOptions,
    levels: DecodedLevels | None = None,
) -> bytes:
    """Decode only what the plan needs from the chosen level, transform, encode."""
    global renders_started, decodes_started
    renders_started += 1
    decodes_started += 1
    try:
        if options.fast_decode and mosaic.eligible(source, plan):  # tiles without libvips' loader
            # A level kept decoded (every whole view of an overview) is resized from memory,
            # not decoded again from its stored tiles.
            held = levels is not None and levels.keeps(source, plan.level)
            made = mosaic.render(
                source, plan, options.jpeg_quality, options.kernel, planar_ok=not held
            )
            if made is not None:
                return made
        if isinstance(source, ComputedSource):
            image = _computed_crop_resize(source, plan, levels, options.kernel)
        else:
            stored = source.info.levels[plan.level]
            box = _level_box(stored.width, stored.height, source, plan)
            if levels:
                image = levels.load(source, plan.level, box)
            else:
                image = load_level(source, plan.level, box)
            image = _crop_resize(image, source, plan, options.kernel)
        if plan.quality == "stretch":
            image = _stretch(image, source)
        image = _to_display(image)
        image = _orient(image, plan)
        image = _quality(image, plan)
        return encode(image, plan.format, options.jpeg_quality)
    except pyvips.Error as exc:
        logging.getLogger("iiifsrv.imaging").warning("cannot decode %s: %s", source.path, exc)
        raise RenderError("cannot decode this image") from None


def read_raw_tile(source: Source, tile: RawTile | EdgeTile) -> bytes:
    """The stored JPEG tile as a complete JPEG stream (JPEGTables spliced in), not decoded."""
    offset, count = raw_tile_range(source, tile)
    return raw_tile_stream(source, tile, source.read(offset, count))


def raw_tile_range(source: Source, tile: RawTile | EdgeTile) -> tuple[int, int]:
    """(offset, byte count) of the stored tile in its file or object."""
    access = source.access[tile.level]
    index = tile.row * access.tiles_across + tile.column
    return access.offsets[index], access.counts[index]


def raw_tile_stream(source: Source, tile: RawTile | EdgeTile, data: bytes) -> bytes:
    """The stored tile's bytes ``data`` as a complete JPEG stream (JPEGTables spliced in)."""
    access = source.access[tile.level]
    if len(data) != raw_tile_range(source, tile)[1] or data[:2] != b"\xff\xd8":
        raise RenderError("stored tile is damaged")
    return access.jpeg_header + memoryview(data)[2:]  # one copy, not two


def crop_edge_tile(source: Source, tile: EdgeTile, stored: bytes | None = None) -> bytes:
    """A clipped edge tile cut from its stored (padded) tile in the DCT domain: no decode, no
    re-quantisation; ``stored`` is the tile as read_raw_tile gives it (read here when None).
    Raises dct_crop.CropError when libturbojpeg refuses (the caller renders instead)."""
    global renders_started
    renders_started += 1
    data = stored if stored is not None else read_raw_tile(source, tile)
    return dct_crop.crop(data, tile.width, tile.height)
