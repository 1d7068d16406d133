"""Pixels through HTTP for every source kind: sizes, colours at known points, crops, rotation,
mirroring, qualities and formats. Fixtures are 1000×700 quadrants: red | green / blue | white."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
import pyvips

from tests.conftest import BLUE, GREEN, RED, WHITE

SOURCES = [
    "tif-rgb-3lvl-1000x700-tiled256-jpeg",
    "tif-rgb-4lvl-1000x700-tiled128-deflate-subifd",
    "tif-rgb-3lvl-1000x700-tiled256-lzw",
    "tif-rgb-3lvl-1000x700-tiled256-zstd",
    "tif-rgb-3lvl-1000x700-tiled256-webp",
    "btf-rgb-3lvl-1000x700-tiled256-jpeg-bigtiff",
    "tif-rgb16-3lvl-1000x700-tiled256-deflate",
    "tif-5band-3lvl-1000x700-tiled256-deflate",
    "tif-rgb-flat-1000x700-strips",
    "jp2-rgb-1000x700-tiled256",
    "j2k-rgb-1000x700-codestream",
    "jpeg-rgb-flat-1000x700",
    "png-rgb-flat-1000x700",
]
GRAY_SOURCES = [
    "tif-gray8-3lvl-1000x700-tiled256-deflate",
    "tif-gray16-3lvl-1000x700-tiled256-deflate",
]
TOL = 14


def decode(body: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "")


def colour_at(image: pyvips.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in image(x, y))


def near(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = TOL) -> bool:
    return len(actual) >= len(expected) and all(
        abs(a - e) <= tol for a, e in zip(actual, expected, strict=False)
    )


async def get_image(client: httpx.AsyncClient, ident: str, path: str) -> pyvips.Image:
    r = await client.get(f"/iiif/3/{quote(ident, safe='')}/{path}")
    assert r.status_code == 200, r.text
    return decode(r.content)


@pytest.mark.parametrize("ident", SOURCES)
async def test_info_and_full_image(client: httpx.AsyncClient, ident: str) -> None:
    r = await client.get(f"/iiif/3/{ident}/info.json")
    assert r.status_code == 200
    info = r.json()
    assert (info["width"], info["height"]) == (1000, 700)
    image = await get_image(client, ident, "full/max/0/default.png")
    assert (image.width, image.height) == (1000, 700)
    assert near(colour_at(image, 250, 175), RED)
    assert near(colour_at(image, 750, 175), GREEN)
    assert near(colour_at(image, 250, 525), BLUE)
    assert near(colour_at(image, 750, 525), WHITE)


@pytest.mark.parametrize("ident", SOURCES)
async def test_crop_offsets_and_sizes(client: httpx.AsyncClient, ident: str) -> None:
    # A region straddling the centre: its own four quadrants must land where expected.
    image = await get_image(client, ident, "400,250,200,200/max/0/default.png")
    assert (image.width, image.height) == (200, 200)
    assert near(colour_at(image, 50, 50), RED)
    assert near(colour_at(image, 150, 50), GREEN)
    assert near(colour_at(image, 50, 150), BLUE)
    assert near(colour_at(image, 150, 150), WHITE)
    for size, dims in [
        ("100,", (100, 100)),
        (",50", (50, 50)),
        ("pct:25", (50, 50)),
        ("!80,40", (40, 40)),
        ("120,30", (120, 30)),
    ]:
        image = await get_image(client, ident, f"400,250,200,200/{size}/0/default.png")
        assert (image.width, image.height) == dims, size


@pytest.mark.parametrize("ident", SOURCES[:1] + SOURCES[9:10] + SOURCES[11:12])
@pytest.mark.parametrize(
    ("rotation", "dims", "corners"),
    [
        ("90", (700, 1000), (BLUE, RED, WHITE, GREEN)),
        ("180", (1000, 700), (WHITE, BLUE, GREEN, RED)),
        ("270", (700, 1000), (GREEN, WHITE, RED, BLUE)),
        ("!0", (1000, 700), (GREEN, RED, WHITE, BLUE)),
        ("!90", (700, 1000), (WHITE, GREEN, BLUE, RED)),
        ("!180", (1000, 700), (BLUE, WHITE, RED, GREEN)),
    ],
)
async def test_rotation_and_mirroring(
    client: httpx.AsyncClient, ident: str, rotation: str, dims: tuple[int, int], corners: tuple
) -> None:
    """corners: top-left, top-right, bottom-left, bottom-right after the transform."""
    image = await get_image(client, ident, f"full/max/{rotation}/default.png")
    assert (image.width, image.height) == dims
    w, h = dims
    points = [
        (w // 8, h // 8),
        (w - w // 8, h // 8),
        (w // 8, h - h // 8),
        (w - w // 8, h - h // 8),
    ]
    for (x, y), colour in zip(points, corners, strict=True):
        assert near(colour_at(image, x, y), colour), (rotation, x, y)


async def test_arbitrary_rotation_expands_with_transparent_corners(
    client: httpx.AsyncClient,
) -> None:
    image = await get_image(client, SOURCES[0], "full/200,140/45/default.png")
    # Bounding box of a 200x140 rectangle turned 45°: 240.4 x 240.4.
    assert abs(image.width - 240) <= 2 and abs(image.height - 240) <= 2
    assert image.bands == 4
    assert colour_at(image, 2, 2)[3] == 0  # corner outside the rotated image is transparent
    assert colour_at(image, image.width // 2, image.height // 2)[3] == 255


async def test_arbitrary_rotation_jpeg_has_white_corners(client: httpx.AsyncClient) -> None:
    image = await get_image(client, SOURCES[0], "full/200,140/30/default.jpg")
    assert image.bands == 3
    assert near(colour_at(image, 1, 1), WHITE)


@pytest.mark.parametrize("ident", SOURCES[:2] + GRAY_SOURCES)
async def test_gray_is_one_band(client: httpx.AsyncClient, ident: str) -> None:
    image = await get_image(client, ident, "full/500,/0/gray.png")
    assert image.bands == 1 and (image.width, image.height) == (500, 350)
    # Lightness order of the quadrants: blue < red < green < white.
    red, green = colour_at(image, 125, 87)[0], colour_at(image, 375, 87)[0]
    blue, white = colour_at(image, 125, 262)[0], colour_at(image, 375, 262)[0]
    assert blue < red < green < white
    assert white > 240 and blue < 110


@pytest.mark.parametrize("ident", SOURCES[:2] + GRAY_SOURCES)
async def test_bitonal_is_black_and_white_only(client: httpx.AsyncClient, ident: str) -> None:
    image = await get_image(client, ident, "full/500,/0/bitonal.png")
    assert image.bands == 1
    histogram = image.hist_find()
    counts = [int(histogram(i, 0)[0]) for i in range(256)]
    assert sum(counts[1:255]) == 0
    assert counts[0] > 0 and counts[255] > 0


@pytest.mark.parametrize("ident", GRAY_SOURCES)
async def test_gray_source_default_stays_gray(client: httpx.AsyncClient, ident: str) -> None:
    image = await get_image(client, ident, "full/max/0/default.png")
    assert image.bands == 1 and image.format == "uchar"
    assert colour_at(image, 750, 525)[0] > 240


@pytest.mark.parametrize(
    ("fmt", "media_type", "magic"),
    [
        ("jpg", "image/jpeg", b"\xff\xd8\xff"),
        ("png", "image/png", b"\x89PNG\r\n\x1a\n"),
        ("webp", "image/webp", b"RIFF"),
        ("tif", "image/tiff", b"II*\x00"),
        ("gif", "image/gif", b"GIF8"),
        ("jp2", "image/jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n"),
    ],
)
async def test_formats_magic_bytes_and_decoding(
    client: httpx.AsyncClient, fmt: str, media_type: str, magic: bytes
) -> None:
    r = await client.get(f"/iiif/3/{SOURCES[0]}/full/200,/0/default.{fmt}")
    assert r.status_code == 200
    assert r.headers["content-type"] == media_type
    assert r.content.startswith(magic)
    if fmt == "webp":
        assert r.content[8:12] == b"WEBP"
    image = decode(r.content)
    assert (image.width, image.height) == (200, 140)
    assert near(colour_at(image, 150, 100), WHITE, 20)


async def test_upscaling_with_caret(client: httpx.AsyncClient) -> None:
    image = await get_image(client, SOURCES[0], "0,0,100,100/^300,/0/default.png")
    assert (image.width, image.height) == (300, 300)
    assert near(colour_at(image, 150, 150), RED)


async def test_2_1_upscales_without_caret(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/iiif/2/{SOURCES[0]}/0,0,100,100/300,/0/default.png")
    assert r.status_code == 200
    assert decode(r.content).width == 300


async def test_nested_identifier_with_escaped_slashes(client: httpx.AsyncClient) -> None:
    ident = quote("collection/box 1/page-0001", safe="")
    r = await client.get(f"/iiif/3/{ident}/info.json")
    assert r.status_code == 200
    assert r.json()["id"].endswith(f"/iiif/3/{ident}")
    r = await client.get(f"/iiif/3/{ident}/full/100,/0/default.jpg")
    assert r.status_code == 200


async def test_sixteen_bit_source_keeps_its_tones(client: httpx.AsyncClient) -> None:
    image = await get_image(
        client, "tif-rgb16-3lvl-1000x700-tiled256-deflate", "full/100,/0/default.png"
    )
    assert image.format == "uchar"
    assert near(colour_at(image, 75, 52), WHITE, 2)
