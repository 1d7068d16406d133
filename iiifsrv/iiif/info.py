"""Build info.json documents (Image API 3.0 and 2.1) from a SourceInfo.

PURE: imports only the standard library and iiif.model / iiif.plan.
Tiles and sizes are derived from the levels the file really has; nothing is invented.
"""

from __future__ import annotations

import math
from typing import Any

from iiifsrv.iiif.model import FORMATS, Limits, SourceInfo
from iiifsrv.iiif.plan import scale_factor

CONTEXT_3 = "http://iiif.io/api/image/3/context.json"
CONTEXT_2 = "http://iiif.io/api/image/2/context.json"
PROFILE_3 = "http://iiif.io/api/image/3/level2.json"
PROFILE_2 = "http://iiif.io/api/image/2/level2.json"
PROTOCOL = "http://iiif.io/api/image"

# Level 2 already requires jpg and png, default/color quality, and the region/size/rotation-by-90
# features; these are the extras this server really implements.
EXTRA_FORMATS_3 = [f for f in FORMATS if f not in ("jpg", "png")]
EXTRA_QUALITIES_3 = ["color", "gray", "bitonal", "stretch"]  # stretch: per-band contrast
EXTRA_FEATURES_3 = [
    "canonicalLinkHeader",
    "mirroring",
    "profileLinkHeader",
    "rotationArbitrary",
    "sizeUpscaling",
]
SUPPORTS_2 = [
    "baseUriRedirect",
    "canonicalLinkHeader",
    "cors",
    "jsonldMediaType",
    "mirroring",
    "profileLinkHeader",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationArbitrary",
    "rotationBy90s",
    "sizeAboveFull",
    "sizeByConfinedWh",
    "sizeByDistortedWh",
    "sizeByForcedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
]
VIRTUAL_TILE = 512


def tiles(info: SourceInfo) -> list[dict[str, Any]]:
    """One entry per real tile size, with the scale factors of the levels that really exist.

    A source with no tiling at all (a flat JPEG or PNG, an untiled JPEG2000) gets a virtual
    512-pixel grid over power-of-two scale factors, since viewers need a tile grid to zoom.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, level in enumerate(info.levels):
        if not level.tile_width:
            continue
        sf = scale_factor(info, index)
        if sf:
            groups.setdefault((level.tile_width, level.tile_height), []).append(sf)
    if not groups or 1 not in {sf for sfs in groups.values() for sf in sfs}:
        factors = [1]
        while max(info.width, info.height) / (factors[-1] * 2) >= VIRTUAL_TILE / 2:
            factors.append(factors[-1] * 2)
        return [{"width": VIRTUAL_TILE, "height": VIRTUAL_TILE, "scaleFactors": factors}]
    out = []
    for (tw, th), factors in groups.items():
        entry: dict[str, Any] = {"width": tw, "scaleFactors": sorted(set(factors))}
        if th != tw:
            entry["height"] = th
        out.append(entry)
    return out


def sizes(info: SourceInfo, limits: Limits) -> list[dict[str, int]]:
    """The stored levels' sizes (smallest first) that the limits allow a client to request."""
    seen: set[tuple[int, int]] = set()
    out = []
    for level in info.levels:
        w, h = level.width, level.height
        if limits.width and w > limits.width:
            continue
        if limits.height and h > limits.height:
            continue
        if limits.max_area and w * h > limits.max_area:
            continue
        if (w, h) not in seen:
            seen.add((w, h))
            out.append({"width": w, "height": h})
    if not out:
        # Even a source with one huge level offers a thumbnail-sized view.
        w, h = info.width, info.height
        while (
            (limits.width and w > limits.width)
            or (limits.height and h > limits.height)
            or (limits.max_area and w * h > limits.max_area)
        ):
            w, h = math.ceil(w / 2), math.ceil(h / 2)
        out.append({"width": w, "height": h})
    return sorted(out, key=lambda s: s["width"])


def _limit_props(limits: Limits) -> dict[str, int]:
    props = {}
    if limits.max_width:
        props["maxWidth"] = limits.max_width
    if limits.max_height:
        props["maxHeight"] = limits.max_height
    if limits.max_area:
        props["maxArea"] = limits.max_area
    return props


def info_v3(
    image_id: str,
    info: SourceInfo,
    limits: Limits,
    *,
    services: list[dict[str, Any]] | None = None,
    extra_qualities: list[str] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": CONTEXT_3,
        "id": image_id,
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": "level2",
        "width": info.width,
        "height": info.height,
    }
    doc.update(_limit_props(limits))
    doc["sizes"] = sizes(info, limits)
    doc["tiles"] = tiles(info)
    qualities = (
        EXTRA_QUALITIES_3 if info.bands >= 3 else [q for q in EXTRA_QUALITIES_3 if q != "color"]
    )
    # 3.0 §4.4: no "color" for an image without colour (a request for it still works).
    doc["extraQualities"] = qualities + list(extra_qualities or [])
    doc["extraFormats"] = EXTRA_FORMATS_3
    doc["extraFeatures"] = EXTRA_FEATURES_3
    if services:
        doc["service"] = services
    return doc


def info_v2(
    image_id: str,
    info: SourceInfo,
    limits: Limits,
    *,
    services: list[dict[str, Any]] | None = None,
    extra_qualities: list[str] | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "formats": list(FORMATS),
        "qualities": ["default", "color", "gray", "bitonal", "stretch"]
        + list(extra_qualities or []),
        "supports": SUPPORTS_2,
    }
    profile.update(_limit_props(limits))
    doc: dict[str, Any] = {
        "@context": CONTEXT_2,
        "@id": image_id,
        "protocol": PROTOCOL,
        "width": info.width,
        "height": info.height,
        "sizes": sizes(info, limits),
        "tiles": tiles(info),
        "profile": [PROFILE_2, profile],
    }
    if services:
        doc["service"] = services
    return doc
