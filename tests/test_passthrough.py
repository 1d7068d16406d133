"""Raw tile passthrough: the response is the stored JPEG tile, byte for byte, tables spliced."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import pyvips
import tifffile

from iiifsrv import imaging

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"


ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def stored_tile(path: Path, level: int, column: int, row: int) -> bytes:
    """The tile's bytes as stored, with the level's JPEGTables spliced in (read with tifffile).

    For RGB-photometric tiles an Adobe APP14 marker (transform 0) follows SOI, so decoders do
    not mistake the RGB components for YCbCr."""
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        across = -(-page.imagewidth // page.tilewidth)
        index = row * across + column
        tif.filehandle.seek(page.dataoffsets[index])
        data = tif.filehandle.read(page.databytecounts[index])
        tables = page.jpegtables
        rgb = page.photometric == 2
    assert tables is not None and tables.endswith(b"\xff\xd9")
    assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")
    if rgb:
        return b"\xff\xd8" + ADOBE_RGB + tables[2:-2] + data[2:]
    return tables[:-2] + data[2:]


@pytest.mark.parametrize(
    ("path", "level", "column", "row"),
    [
        ("0,0,256,256/256,/0/default.jpg", 0, 0, 0),
        ("256,256,256,256/256,256/0/default.jpg", 0, 1, 1),
        ("512,0,256,256/max/0/color.jpg", 0, 2, 0),
        ("256,0,256,256/,256/0/default.jpg", 0, 1, 0),
        ("256,0,256,256/!256,256/0/default.jpg", 0, 1, 0),
        ("0,0,512,512/256,/0/default.jpg", 1, 0, 0),
    ],
)
async def test_response_is_the_stored_tile(
    client: httpx.AsyncClient, image_root: Path, path: str, level: int, column: int, row: int
) -> None:
    before = imaging.renders_started
    r = await client.get(f"/iiif/3/{TIF}/{path}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content == stored_tile(image_root / f"{TIF}.tif", level, column, row)
    assert imaging.renders_started == before  # nothing was decoded
    image = pyvips.Image.new_from_buffer(r.content, "")
    assert (image.width, image.height) == (256, 256)
    # Tile (0,0) lies in the red quadrant: the spliced stream decodes to the right colours.
    if (level, column, row) == (0, 0, 0):
        assert [round(v) for v in image(128, 128)][:1] == [pytest.approx(254, abs=3)]


async def test_rgb_photometric_tiles_decode_to_the_right_colours(
    client: httpx.AsyncClient, image_root: Path
) -> None:
    ident = "tif-rgb-3lvl-1000x700-tiled256-jpeg-q95-rgbphotometric"
    before = imaging.renders_started
    r = await client.get(f"/iiif/3/{ident}/512,0,256,256/256,/0/default.jpg")
    assert imaging.renders_started == before
    assert r.content == stored_tile(image_root / f"{ident}.tif", 0, 2, 0)
    image = pyvips.Image.new_from_buffer(r.content, "")
    # Column 2 of row 0 spans x 512..767: its right part is green (x >= 500).
    assert [round(v) for v in image(200, 100)] == [
        pytest.approx(0, abs=4),
        pytest.approx(255, abs=4),
        pytest.approx(0, abs=4),
    ]


async def test_2_1_tile_is_passed_through_too(client: httpx.AsyncClient, image_root: Path) -> None:
    r = await client.get(f"/iiif/2/{TIF}/256,256,256,256/256,/0/default.jpg")
    assert r.content == stored_tile(image_root / f"{TIF}.tif", 0, 1, 1)


@pytest.mark.parametrize(
    "path",
    [
        "0,0,256,256/256,/90/default.jpg",
        "0,0,256,256/256,/0/gray.jpg",
        "0,0,256,256/128,/0/default.jpg",
        "768,512,232,188/232,/0/default.jpg",  # a partial edge tile: rendered, exact size
    ],
)
async def test_other_requests_are_rendered(client: httpx.AsyncClient, path: str) -> None:
    before = imaging.renders_started
    r = await client.get(f"/iiif/3/{TIF}/{path}")
    assert r.status_code == 200
    assert imaging.renders_started == before + 1
    if path.startswith("768"):
        image = pyvips.Image.new_from_buffer(r.content, "")
        assert (image.width, image.height) == (232, 188)


async def test_passthrough_can_be_turned_off(image_root: Path) -> None:
    from iiifsrv.settings import load
    from iiifsrv.web.app import create_app

    app = create_app(load(overrides={"images": str(image_root), "passthrough": False}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        before = imaging.renders_started
        r = await c.get(f"/iiif/3/{TIF}/0,0,256,256/256,/0/default.jpg")
        assert r.status_code == 200 and imaging.renders_started == before + 1
