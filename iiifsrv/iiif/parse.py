"""Parse Image API 3.0 and 2.1 request path segments into an ImageRequest.

PURE: imports only the standard library, iiifsrv.errors and iiif.model. Syntax errors raise
BadRequest (400); well-formed but unsupported values raise BadRequest too, as the spec asks.
"""

from __future__ import annotations

import functools
import math
import re

from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import (
    FORMATS,
    QUALITIES,
    ImageRequest,
    Region,
    RegionKind,
    Rotation,
    Size,
    SizeKind,
)

# ASCII digits only, and never more than Python converts cheaply (10 digits, 10 decimals).
_NUM = r"(?:[0-9]{1,10}(?:\.[0-9]{0,10})?|\.[0-9]{1,10})"
_INT = r"[0-9]{1,10}"
_REGION_PX = re.compile(rf"^({_INT}),({_INT}),({_INT}),({_INT})$")
_REGION_PCT = re.compile(rf"^pct:({_NUM}),({_NUM}),({_NUM}),({_NUM})$")
_SIZE_W = re.compile(rf"^({_INT}),$")
_SIZE_H = re.compile(rf"^,({_INT})$")
_SIZE_WH = re.compile(rf"^(!?)({_INT}),({_INT})$")
_SIZE_PCT = re.compile(rf"^pct:({_NUM})$")
_ROTATION = re.compile(rf"^(!?)({_NUM})$")
_MAX_INT = 10**9


def _int(text: str, what: str) -> int:
    value = int(text)
    if value > _MAX_INT:
        raise BadRequest(f"{what} is too large: {text}")
    return value


def _float(text: str, what: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value > _MAX_INT:
        raise BadRequest(f"{what} is out of range: {text}")
    return value


def parse_region(text: str) -> Region:
    if text == "full":
        return Region(RegionKind.FULL)
    if text == "square":
        return Region(RegionKind.SQUARE)
    m = _REGION_PX.match(text)
    if m:
        x, y, w, h = (_int(g, "region") for g in m.groups())
        if w == 0 or h == 0:
            raise BadRequest(f"region {text!r} has zero width or height")
        return Region(RegionKind.PIXELS, x, y, w, h)
    m = _REGION_PCT.match(text)
    if m:
        x2, y2, w2, h2 = (_float(g, "region") for g in m.groups())
        if w2 <= 0 or h2 <= 0:
            raise BadRequest(f"region {text!r} has zero width or height")
        if x2 >= 100 or y2 >= 100:
            raise BadRequest(f"region {text!r} lies outside the image")
        return Region(RegionKind.PERCENT, x2, y2, w2, h2)
    raise BadRequest(f"invalid region {text!r}")


# Sizes, rotations and quality.format segments take few distinct values (every tile of a level
# asks for the same ones): each is parsed once per process. The results are immutable; errors
# are raised each time (lru_cache keeps no exceptions).
@functools.lru_cache(maxsize=1024)
def parse_size(text: str, version: int) -> Size:
    upscale = False
    body = text
    if version >= 3:
        if body.startswith("^"):
            upscale = True
            body = body[1:]
        if body == "max":
            return Size(SizeKind.MAX, upscale=upscale)
        if body == "full":
            raise BadRequest("size 'full' is not valid in Image API 3.0; use 'max'")
    else:
        # 2.x: upscaling is implicit; 'full' and 'max' both mean the full region size.
        if body == "full":
            return Size(SizeKind.FULL, upscale=False)
        if body == "max":
            return Size(SizeKind.MAX, upscale=False)
        upscale = True
    m = _SIZE_W.match(body)
    if m:
        w = _int(m.group(1), "size")
        if w == 0:
            raise BadRequest(f"size {text!r} has zero width")
        return Size(SizeKind.WIDTH, w=w, upscale=upscale)
    m = _SIZE_H.match(body)
    if m:
        h = _int(m.group(1), "size")
        if h == 0:
            raise BadRequest(f"size {text!r} has zero height")
        return Size(SizeKind.HEIGHT, h=h, upscale=upscale)
    m = _SIZE_WH.match(body)
    if m:
        w, h = _int(m.group(2), "size"), _int(m.group(3), "size")
        if w == 0 or h == 0:
            raise BadRequest(f"size {text!r} has zero width or height")
        kind = SizeKind.CONFINED if m.group(1) else SizeKind.EXACT
        return Size(kind, w=w, h=h, upscale=upscale)
    m = _SIZE_PCT.match(body)
    if m:
        pct = _float(m.group(1), "size")
        if pct <= 0:
            raise BadRequest(f"size {text!r} is zero")
        if pct > 100 and version >= 3 and not upscale:
            raise BadRequest(f"size {text!r} is over 100% without '^'")
        return Size(SizeKind.PERCENT, pct=pct, upscale=upscale)
    raise BadRequest(f"invalid size {text!r}")


@functools.lru_cache(maxsize=256)
def parse_rotation(text: str) -> Rotation:
    m = _ROTATION.match(text)
    if not m:
        raise BadRequest(f"invalid rotation {text!r}")
    degrees = float(m.group(2))
    if degrees > 360:
        raise BadRequest(f"rotation {text!r} is over 360")
    return Rotation(degrees=degrees, mirror=bool(m.group(1)))


@functools.lru_cache(maxsize=256)
def parse_quality_format(text: str) -> tuple[str, str]:
    quality, dot, fmt = text.rpartition(".")
    if not dot or not quality:
        raise BadRequest(f"invalid quality and format {text!r}: expected quality.format")
    if quality not in QUALITIES:
        raise BadRequest(f"unsupported quality {quality!r}")
    if fmt not in FORMATS:
        raise BadRequest(f"unsupported format {fmt!r}")
    return quality, fmt


def parse_image_request(
    version: int, region: str, size: str, rotation: str, quality_format: str
) -> ImageRequest:
    """Parse the four path segments after the identifier. Raises BadRequest."""
    quality, fmt = parse_quality_format(quality_format)
    return ImageRequest(
        version=version,
        region=parse_region(region),
        size=parse_size(size, version),
        rotation=parse_rotation(rotation),
        quality=quality,
        format=fmt,
    )
