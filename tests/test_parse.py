"""Table-driven tests of the pure request parser (3.0 and 2.1)."""

from __future__ import annotations

import pytest

from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import Region, RegionKind, Rotation, Size, SizeKind
from iiifsrv.iiif.parse import (
    parse_image_request,
    parse_quality_format,
    parse_region,
    parse_rotation,
    parse_size,
)

REGIONS = [
    ("full", Region(RegionKind.FULL)),
    ("square", Region(RegionKind.SQUARE)),
    ("0,0,1,1", Region(RegionKind.PIXELS, 0, 0, 1, 1)),
    ("125,15,120,140", Region(RegionKind.PIXELS, 125, 15, 120, 140)),
    ("pct:41.6,7.5,40,70", Region(RegionKind.PERCENT, 41.6, 7.5, 40, 70)),
    ("pct:0,0,100,100", Region(RegionKind.PERCENT, 0, 0, 100, 100)),
    ("pct:0.5,.5,10.,1", Region(RegionKind.PERCENT, 0.5, 0.5, 10, 1)),
]
BAD_REGIONS = [
    "",
    "Full",
    "0,0,0,10",
    "0,0,10,0",
    "-1,0,10,10",
    "0,0,10",
    "0,0,10,10,10",
    "1.5,0,10,10",
    "pct:0,0,0,10",
    "pct:100,0,10,10",
    "pct:a,0,10,10",
    "pct:-1,0,10,10",
    "pct:1e2,0,10,10",
    "squared",
    "0, 0,10,10",
]


@pytest.mark.parametrize(("text", "expected"), REGIONS)
def test_region(text: str, expected: Region) -> None:
    assert parse_region(text) == expected


@pytest.mark.parametrize("text", BAD_REGIONS)
def test_bad_region(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_region(text)


SIZES_3 = [
    ("max", Size(SizeKind.MAX)),
    ("^max", Size(SizeKind.MAX, upscale=True)),
    ("150,", Size(SizeKind.WIDTH, w=150)),
    ("^360,", Size(SizeKind.WIDTH, w=360, upscale=True)),
    (",150", Size(SizeKind.HEIGHT, h=150)),
    ("^,240", Size(SizeKind.HEIGHT, h=240, upscale=True)),
    ("pct:50", Size(SizeKind.PERCENT, pct=50)),
    ("^pct:120", Size(SizeKind.PERCENT, pct=120, upscale=True)),
    ("225,100", Size(SizeKind.EXACT, w=225, h=100)),
    ("^360,360", Size(SizeKind.EXACT, w=360, h=360, upscale=True)),
    ("!225,100", Size(SizeKind.CONFINED, w=225, h=100)),
    ("^!360,360", Size(SizeKind.CONFINED, w=360, h=360, upscale=True)),
]
BAD_SIZES_3 = [
    "full",  # 2.x only
    "pct:120",  # over 100 without ^
    "pct:0",
    "0,",
    ",0",
    "0,10",
    "!0,10",
    ",^240",  # the spec's typo, not a defined form
    "^^max",
    "max,",
    "!150,",
    "10,10,10",
    "pct:",
    "abcdef",
    "",
]


@pytest.mark.parametrize(("text", "expected"), SIZES_3)
def test_size_3(text: str, expected: Size) -> None:
    assert parse_size(text, 3) == expected


@pytest.mark.parametrize("text", BAD_SIZES_3)
def test_bad_size_3(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_size(text, 3)


SIZES_2 = [
    ("full", Size(SizeKind.FULL)),
    ("max", Size(SizeKind.MAX)),
    ("150,", Size(SizeKind.WIDTH, w=150, upscale=True)),
    (",150", Size(SizeKind.HEIGHT, h=150, upscale=True)),
    ("pct:50", Size(SizeKind.PERCENT, pct=50, upscale=True)),
    ("pct:120", Size(SizeKind.PERCENT, pct=120, upscale=True)),
    ("225,100", Size(SizeKind.EXACT, w=225, h=100, upscale=True)),
    ("!225,100", Size(SizeKind.CONFINED, w=225, h=100, upscale=True)),
]


@pytest.mark.parametrize(("text", "expected"), SIZES_2)
def test_size_2(text: str, expected: Size) -> None:
    assert parse_size(text, 2) == expected


@pytest.mark.parametrize("text", ["^max", "^150,", "^pct:50", "0,", "pct:0", ""])
def test_bad_size_2(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_size(text, 2)


ROTATIONS = [
    ("0", Rotation(0, False)),
    ("!0", Rotation(0, True)),
    ("90", Rotation(90, False)),
    ("22.5", Rotation(22.5, False)),
    ("!345", Rotation(345, True)),
    ("360", Rotation(360, False)),
    ("0.5", Rotation(0.5, False)),
]


@pytest.mark.parametrize(("text", "expected"), ROTATIONS)
def test_rotation(text: str, expected: Rotation) -> None:
    assert parse_rotation(text) == expected


@pytest.mark.parametrize("text", ["", "-90", "361", "!!90", "90!", "abc", "1e2", "9 0"])
def test_bad_rotation(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_rotation(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default.jpg", ("default", "jpg")),
        ("color.png", ("color", "png")),
        ("gray.webp", ("gray", "webp")),
        ("bitonal.tif", ("bitonal", "tif")),
        ("default.gif", ("default", "gif")),
        ("default.jp2", ("default", "jp2")),
    ],
)
def test_quality_format(text: str, expected: tuple[str, str]) -> None:
    assert parse_quality_format(text) == expected


@pytest.mark.parametrize(
    "text", ["default", "default.", ".jpg", "grey.jpg", "default.bmp", "default.JPG", "a.b.jpg"]
)
def test_bad_quality_format(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_quality_format(text)


def test_whole_request() -> None:
    req = parse_image_request(3, "125,15,120,140", "90,", "!345", "gray.jpg")
    assert req.region == Region(RegionKind.PIXELS, 125, 15, 120, 140)
    assert req.size == Size(SizeKind.WIDTH, w=90)
    assert req.rotation == Rotation(345, True)
    assert (req.quality, req.format) == ("gray", "jpg")
