"""Plan an Image API request against a source: pixel region, output size, pyramid level,
passthrough tile, canonical path and cache key.

PURE: imports only the standard library, iiifsrv.errors and iiif.model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import (
    ImageRequest,
    Limits,
    RegionKind,
    SizeKind,
    SourceInfo,
)


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class RawTile:
    level: int
    column: int
    row: int


@dataclass(frozen=True)
class EdgeTile:
    """A clipped tile at a level's right or bottom edge: the top-left ``width`` x ``height``
    pixels of the stored (padded) tile are exactly the output."""

    level: int
    column: int
    row: int
    width: int
    height: int


@dataclass(frozen=True)
class Plan:
    region: Box  # in full-resolution pixels, clipped to the image
    width: int  # output size before rotation
    height: int
    level: int  # index into SourceInfo.levels to read from
    degrees: float
    mirror: bool
    quality: str
    format: str
    canonical: str  # region/size/rotation/quality.format in the request's API version
    key: str  # version-neutral identity of the output pixels and encoding
    raw_tile: RawTile | None = None
    edge_tile: EdgeTile | None = None  # cut losslessly from the stored tile (no decode)


def fmt_number(value: float) -> str:
    """Integers without a decimal point; other values without trailing zeros."""
    if float(value).is_integer():
        return str(int(value))
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text


def _round(value: float) -> int:
    """Round half up (not to even), as viewers and the validator expect."""
    return int(math.floor(value + 0.5))


def resolve_region(req: ImageRequest, info: SourceInfo) -> Box:
    width, height = info.width, info.height
    r = req.region
    if r.kind is RegionKind.FULL:
        return Box(0, 0, width, height)
    if r.kind is RegionKind.SQUARE:
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side, side)
    if r.kind is RegionKind.PIXELS:
        x, y, w, h = int(r.x), int(r.y), int(r.w), int(r.h)
    else:
        x = _round(r.x * width / 100)
        y = _round(r.y * height / 100)
        w = max(1, _round(r.w * width / 100))
        h = max(1, _round(r.h * height / 100))
    if x >= width or y >= height:
        raise BadRequest("region lies entirely outside the image")
    return Box(x, y, min(w, width - x), min(h, height - y))


def _limit_scale(w: float, h: float, limits: Limits) -> float:
    """The largest scale at which a w×h image fits the limits (inf when there are none)."""
    scale = math.inf
    if limits.width:
        scale = min(scale, limits.width / w)
    if limits.height:
        scale = min(scale, limits.height / h)
    if limits.max_area:
        scale = min(scale, math.sqrt(limits.max_area / (w * h)))
    return scale


def _fit(w: int, h: int, scale: float) -> tuple[int, int]:
    """Scale w×h by ``scale`` rounding down so the result never exceeds a limit."""
    return max(1, int(math.floor(w * scale + 1e-9))), max(1, int(math.floor(h * scale + 1e-9)))


def resolve_size(req: ImageRequest, region: Box, limits: Limits) -> tuple[int, int]:
    s = req.size
    rw, rh = region.w, region.h
    if s.kind in (SizeKind.MAX, SizeKind.FULL):
        # '^max' is served like 'max': the region's own size, shrunk to the limits. Enlarging
        # to the limits (the spec's reading) would turn every '^max' into a multi-megapixel
        # render; the official validator expects the region's size too.
        return _max_size(region, limits)
    if s.kind is SizeKind.WIDTH:
        w, h = s.w, _round(rh * s.w / rw)
    elif s.kind is SizeKind.HEIGHT:
        w, h = _round(rw * s.h / rh), s.h
    elif s.kind is SizeKind.PERCENT:
        w, h = _round(rw * s.pct / 100), _round(rh * s.pct / 100)
    elif s.kind is SizeKind.EXACT:
        w, h = s.w, s.h
    else:  # CONFINED
        # 3.0 '!w,h' without '^' that would need enlarging is refused (400), as the official
        # validator requires; 2.x and '^!w,h' enlarge.
        if s.w / rw <= s.h / rh:
            w, h = s.w, min(s.h, _round(rh * s.w / rw))
        else:
            w, h = min(s.w, _round(rw * s.h / rh)), s.h
    if w <= 0 or h <= 0:
        raise BadRequest("the requested size is zero pixels wide or high")
    if not s.upscale and (w > rw or h > rh):
        raise BadRequest(f"size {w}x{h} is larger than the region {rw}x{rh}; use '^' to upscale")
    check_limits(w, h, limits)
    return w, h


def check_limits(w: int, h: int, limits: Limits) -> None:
    if (
        (limits.width and w > limits.width)
        or (limits.height and h > limits.height)
        or (limits.max_area and w * h > limits.max_area)
    ):
        # Image API 3.0 §4.2: sizes over the server's limits are a 400.
        raise BadRequest(
            f"size {w}x{h} exceeds the server's limits "
            f"(maxWidth {limits.width or '-'}, maxHeight {limits.height or '-'}, "
            f"maxArea {limits.max_area or '-'})"
        )


GIF_MAX_AREA = 4_000_000  # GIF quantisation is slow: larger GIFs are refused when limits are set


def quantise_degrees(value: float) -> float:
    """One value for the canonical form, the cache key and the render: 0 <= d < 360, six
    decimals, snapped to a right angle when within a millionth of one."""
    degrees = round(value % 360, 6)
    right = round(degrees / 90) * 90
    if abs(degrees - right) < 1e-6:
        degrees = float(right % 360)
    return degrees


def check_rotated(w: int, h: int, degrees: float, fmt: str, limits: Limits) -> None:
    """The limits apply to what is encoded: a rotation's bounding box, and GIFs (slow)."""
    if degrees % 90:
        radians = math.radians(degrees)
        cos, sin = abs(math.cos(radians)), abs(math.sin(radians))
        w, h = math.ceil(w * cos + h * sin), math.ceil(w * sin + h * cos)
        check_limits(w, h, limits)
    if fmt == "gif" and (limits.width or limits.max_area) and w * h > GIF_MAX_AREA:
        raise BadRequest(f"gif output is limited to {GIF_MAX_AREA} pixels; use png or jpg")


def choose_level(info: SourceInfo, region: Box, width: int, height: int) -> int:
    """The smallest stored level whose resolution still covers the output size."""
    shrink = min(region.w / width, region.h / height)
    best = 0
    for index, level in enumerate(info.levels):
        factor = min(info.width / level.width, info.height / level.height)
        if factor <= shrink * 1.0001:
            best = index
    return best


def scale_factor(info: SourceInfo, index: int) -> int:
    """The power-of-two scale factor a level stands for, or 0 if it is not one."""
    level = info.levels[index]
    sf = 1 << index if index < 31 else 0
    for candidate in (sf, round(info.width / level.width)):
        if candidate < 1:
            continue
        if level.width in (
            -(-info.width // candidate),
            info.width // candidate,
        ) and level.height in (
            -(-info.height // candidate),
            info.height // candidate,
        ):
            return candidate if candidate & (candidate - 1) == 0 else 0
    return 0


def find_raw_tile(info: SourceInfo, region: Box, width: int, height: int) -> RawTile | None:
    """The stored tile this output is exactly equal to, if any (full tiles only)."""
    for index, level in enumerate(info.levels):
        if not level.raw_jpeg or level.tile_width != width or level.tile_height != height:
            continue
        sf = scale_factor(info, index)
        if not sf:
            continue
        span_w, span_h = level.tile_width * sf, level.tile_height * sf
        if region.x % span_w or region.y % span_h:
            continue
        column, row = region.x // span_w, region.y // span_h
        if (column + 1) * level.tile_width > level.width:
            continue
        if (row + 1) * level.tile_height > level.height:
            continue
        if region.w != min(span_w, info.width - region.x):
            continue
        if region.h != min(span_h, info.height - region.y):
            continue
        return RawTile(index, column, row)
    return None


def find_edge_tile(info: SourceInfo, region: Box, width: int, height: int) -> EdgeTile | None:
    """The stored tile whose top-left part this output exactly is: a clipped tile at a level's
    right or bottom edge, asked for at the level's own resolution (what viewers request there)."""
    for index, level in enumerate(info.levels):
        if not level.raw_jpeg or not level.tile_width or not level.tile_height:
            continue
        tw, th = level.tile_width, level.tile_height
        if width > tw or height > th or (width == tw and height == th):
            continue
        sf = scale_factor(info, index)
        if not sf:
            continue
        span_w, span_h = tw * sf, th * sf
        if region.x % span_w or region.y % span_h:
            continue
        column, row = region.x // span_w, region.y // span_h
        left, top = column * tw, row * th
        if left >= level.width or top >= level.height:
            continue
        if (width, height) != (min(tw, level.width - left), min(th, level.height - top)):
            continue
        if region.w != min(span_w, info.width - region.x):
            continue
        if region.h != min(span_h, info.height - region.y):
            continue
        return EdgeTile(index, column, row, width, height)
    return None


def canonical_region(region: Box, info: SourceInfo) -> str:
    if region.x == 0 and region.y == 0 and region.w == info.width and region.h == info.height:
        return "full"
    return f"{region.x},{region.y},{region.w},{region.h}"


def canonical_size(req: ImageRequest, region: Box, width: int, height: int, limits: Limits) -> str:
    if req.version >= 3:
        upscaled = width > region.w or height > region.h
        max_w, max_h = _max_size(region, limits)
        if (width, height) == (max_w, max_h) and not upscaled:
            return "max"
        return f"{'^' if upscaled else ''}{width},{height}"
    # 2.1 §4.7: "full" for the full size, "w," keeping the aspect ratio, "w,h" distorting it.
    if (width, height) == (region.w, region.h):
        return "full"
    if height == _round(region.h * width / region.w):
        return f"{width},"
    return f"{width},{height}"


def _max_size(region: Box, limits: Limits) -> tuple[int, int]:
    scale = min(1.0, _limit_scale(region.w, region.h, limits))
    return (region.w, region.h) if scale == 1.0 else _fit(region.w, region.h, scale)


def plan(req: ImageRequest, info: SourceInfo, limits: Limits, *, passthrough: bool = True) -> Plan:
    """Turn a parsed request into everything later stages need. Raises BadRequest/Forbidden."""
    region = resolve_region(req, info)
    width, height = resolve_size(req, region, limits)
    degrees = quantise_degrees(req.rotation.degrees)
    mirror = req.rotation.mirror
    check_rotated(width, height, degrees, req.format, limits)
    quality = "default" if req.quality in ("default", "color") else req.quality
    rotation_text = ("!" if mirror else "") + fmt_number(degrees)
    canonical = "/".join(
        (
            canonical_region(region, info),
            canonical_size(req, region, width, height, limits),
            rotation_text,
            f"{req.quality}.{req.format}",
        )
    )
    key = (
        f"{region.x},{region.y},{region.w},{region.h}/{width},{height}/"
        f"{'!' if mirror else ''}{fmt_number(degrees)}/{quality}.{req.format}"
    )
    raw = edge = None
    if passthrough and req.format == "jpg" and quality == "default" and degrees == 0 and not mirror:
        raw = find_raw_tile(info, region, width, height)
        if raw is None:
            edge = find_edge_tile(info, region, width, height)
    return Plan(
        region=region,
        width=width,
        height=height,
        level=raw.level
        if raw
        else edge.level
        if edge
        else choose_level(info, region, width, height),
        degrees=degrees,
        mirror=mirror,
        quality=quality,
        format=req.format,
        canonical=canonical,
        key=key,
        raw_tile=raw,
        edge_tile=edge,
    )
