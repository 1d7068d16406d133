"""Clipped edge tiles of a JPEG TIFF are cut from their stored tile in the DCT domain: no
decode. Pixels against libvips' rendering of the same region, the bytes of the cut stream, and
the server's own counters proving that aligned and edge tiles alike are served without a decode
(the CI guard of issue 14: it times nothing)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
import pyvips

from iiifsrv import dct_crop, imaging
from tests.ops.metrics_support import parse, value
from tests.test_passthrough import stored_tile

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
RGB_TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg-q95-rgbphotometric"

pytestmark = pytest.mark.skipif(
    not dct_crop.available(), reason="libturbojpeg0 is not installed (scripts/setup installs it)"
)


async def viewer_tiles(client: httpx.AsyncClient, ident: str, version: int = 3) -> list[dict]:  # type: ignore[type-arg]
    """Every tile a viewer asks for, built from the info.json the server publishes: region and
    size per level, as OpenSeadragon computes them, with the stored tile each one lies in."""
    info = (await client.get(f"/iiif/{version}/{ident}/info.json")).json()
    base = info["id"] if version == 3 else info["@id"]
    width, height = info["width"], info["height"]
    tile = info["tiles"][0]
    size = tile["width"]
    out = []
    for level, sf in enumerate(tile["scaleFactors"]):
        span = size * sf
        for row in range(math.ceil(height / span)):
            for column in range(math.ceil(width / span)):
                x, y = column * span, row * span
                w, h = min(span, width - x), min(span, height - y)
                tw, th = math.ceil(w / sf), math.ceil(h / sf)
                out.append(
                    {
                        "url": f"{base}/{x},{y},{w},{h}/{tw},{th}/0/default.jpg",
                        "level": level,
                        "column": column,
                        "row": row,
                        "size": (tw, th),
                        "edge": (tw, th) != (size, size),
                    }
                )
    return out


def _path(url: str) -> str:
    return httpx.URL(url).raw_path.decode()


def _level_pixels(root: Path, ident: str, level: int) -> np.ndarray:  # type: ignore[type-arg]
    """libvips' own decode of a whole pyramid level (vips writes the levels as pages)."""
    return np.asarray(pyvips.Image.tiffload(str(root / f"{ident}.tif"), page=level).numpy())


def _segments(stream: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every segment before the entropy-coded data."""
    out, pos = [], 2
    while pos < len(stream):
        marker = stream[pos + 1]
        length = struct.unpack(">H", stream[pos + 2 : pos + 4])[0]
        out.append((marker, stream[pos + 4 : pos + 2 + length]))
        if marker == 0xDA:  # start of scan
            break
        pos += 2 + length
    return out


@pytest.mark.parametrize("ident", [TIF, RGB_TIF])
async def test_edge_tiles_match_libvips_exactly_sized(
    client: httpx.AsyncClient, image_root: Path, ident: str
) -> None:
    tiles = [t for t in await viewer_tiles(client, ident) if t["edge"]]
    assert len(tiles) >= 6  # right column, bottom row and corner of every level
    before = imaging.decodes_started
    for t in tiles:
        r = await client.get(_path(t["url"]))
        assert r.status_code == 200, t["url"]
        assert r.headers["content-type"] == "image/jpeg"
        got = pyvips.Image.new_from_buffer(r.content, "")
        tw, th = t["size"]
        assert (got.width, got.height, got.bands) == (tw, th, 3), t["url"]
        left, top = t["column"] * 256, t["row"] * 256
        want = _level_pixels(image_root, ident, t["level"])[top : top + th, left : left + tw]
        diff = np.abs(got.numpy().astype(int) - want.astype(int))
        # The same DCT coefficients: identical pixels, except in the last row and column, where
        # libvips' chroma upsampling of the padded tile blends in the padding below/right of the
        # image and the cut tile's replicates its own edge (it is the truer colour there).
        assert diff[: th - 1, : tw - 1].max() <= 1, t["url"]
        assert diff.max() <= 64 and diff.mean() < 1.0, t["url"]
        own, ref = got.numpy().astype(int), want.astype(int)
        # ... no farther from its neighbour row (column) than libvips' is: nothing bleeds in.
        assert np.abs(own[-1] - own[-2]).mean() <= np.abs(ref[-1] - ref[-2]).mean() + 1
        assert np.abs(own[:, -1] - own[:, -2]).mean() <= np.abs(ref[:, -1] - ref[:, -2]).mean() + 1
    assert imaging.decodes_started == before  # not one decode


async def test_cut_stream_keeps_the_stored_quantisation_and_declares_the_edge_size(
    client: httpx.AsyncClient, image_root: Path
) -> None:
    """Lossless: the same quantisation tables as the stored tile (no re-encode at another
    quality), a baseline frame of exactly the clipped size, one complete stream; the same bytes
    for the same URL every time."""
    tiles = [t for t in await viewer_tiles(client, TIF) if t["edge"]]
    corner = max(tiles, key=lambda t: (t["level"] == 0, t["row"] + t["column"]))
    body = (await client.get(_path(corner["url"]))).content
    stored = stored_tile(
        image_root / f"{TIF}.tif", corner["level"], corner["column"], corner["row"]
    )
    assert body.startswith(b"\xff\xd8") and body.endswith(b"\xff\xd9")
    ours, theirs = _segments(body), _segments(stored)
    assert [p for m, p in ours if m == 0xDB] == [p for m, p in theirs if m == 0xDB]
    sof = next(p for m, p in ours if m == 0xC0)  # baseline, as stored
    height, width = struct.unpack(">HH", sof[1:5])
    assert (width, height) == corner["size"] == (232, 188)
    stored_sof = next(p for m, p in theirs if m == 0xC0)
    assert struct.unpack(">HH", stored_sof[1:5]) == (256, 256)
    assert sof[5:] == stored_sof[5:]  # same components and sampling factors
    again = await client.get(_path(corner["url"]))
    assert again.content == body


async def test_2_1_edge_tiles_are_cut_too(client: httpx.AsyncClient, image_root: Path) -> None:
    before = imaging.decodes_started
    r = await client.get(f"/iiif/2/{TIF}/768,512,232,188/232,/0/default.jpg")
    assert r.status_code == 200
    image = pyvips.Image.new_from_buffer(r.content, "")
    assert (image.width, image.height) == (232, 188)
    assert imaging.decodes_started == before


async def test_counters_prove_aligned_and_edge_tiles_need_no_decode(
    client: httpx.AsyncClient,
) -> None:
    """The regression guard: a viewer's every tile of a JPEG TIFF, at every level, is served
    by passthrough (aligned) or by a lossless cut (edge) — the renders counter does not move."""
    tiles = await viewer_tiles(client, TIF)
    edges = sum(t["edge"] for t in tiles)
    aligned = len(tiles) - edges
    assert edges and aligned
    before = parse((await client.get("/metrics")).text)
    decodes = imaging.decodes_started
    for t in tiles:
        assert (await client.get(_path(t["url"]))).status_code == 200
    after = parse((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("iiifsrv_passthrough_total") == aligned
    assert delta("iiifsrv_edge_crops_total") == edges
    assert delta("iiifsrv_renders_total") == 0
    assert delta("iiifsrv_source_reads_total", op="render") == 0
    assert delta("iiifsrv_source_reads_total", op="raw_tile") == len(tiles)
    assert imaging.decodes_started == decodes


async def test_other_sizes_at_the_edge_are_still_rendered(client: httpx.AsyncClient) -> None:
    before = imaging.decodes_started
    r = await client.get(f"/iiif/3/{TIF}/768,512,232,188/116,/0/default.jpg")
    assert r.status_code == 200
    assert imaging.decodes_started == before + 1
    image = pyvips.Image.new_from_buffer(r.content, "")
    assert (image.width, image.height) == (116, 94)


def test_crop_refuses_what_is_not_a_jpeg() -> None:
    with pytest.raises(dct_crop.CropError):
        dct_crop.crop(b"not a jpeg at all", 16, 16)
