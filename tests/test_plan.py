"""The pure planner: levels, raw tiles, limits, rounding, canonical forms."""

from __future__ import annotations

import pytest

from iiifsrv.errors import BadRequest
from iiifsrv.iiif.model import Level, Limits, SourceInfo
from iiifsrv.iiif.parse import parse_image_request
from iiifsrv.iiif.plan import Box, RawTile, choose_level, plan, scale_factor

NO_LIMITS = Limits()

# A 10000x8000 JPEG pyramid with 256 tiles, levels halving (ceil) down to 157x125.
PYRAMID = SourceInfo(
    kind="tiff",
    width=10000,
    height=8000,
    levels=tuple(
        Level(-(-10000 // 2**k), -(-8000 // 2**k), 256, 256, raw_jpeg=True) for k in range(7)
    ),
)


def p(
    region: str,
    size: str,
    rotation: str = "0",
    qf: str = "default.jpg",
    version: int = 3,
    limits: Limits = NO_LIMITS,
):  # type: ignore[no-untyped-def]
    return plan(parse_image_request(version, region, size, rotation, qf), PYRAMID, limits)


def test_scale_factors_of_levels() -> None:
    assert [scale_factor(PYRAMID, i) for i in range(7)] == [1, 2, 4, 8, 16, 32, 64]


def test_non_power_of_two_level_has_no_scale_factor() -> None:
    odd = SourceInfo("tiff", 1000, 1000, (Level(1000, 1000, 256, 256), Level(300, 300, 256, 256)))
    assert scale_factor(odd, 1) == 0


@pytest.mark.parametrize(
    ("region", "size", "level"),
    [
        ("full", "max", 0),
        ("full", "5000,", 1),
        ("full", "4999,", 1),
        ("full", "5001,", 0),
        ("full", "1000,", 3),
        ("full", "157,", 5),  # 157x126 needs level 5: level 6 is 157x125
        ("full", "100,", 6),
        ("0,0,1024,1024", "256,", 2),
        ("0,0,1024,1024", "300,", 1),
    ],
)
def test_smallest_level_that_covers_the_output(region: str, size: str, level: int) -> None:
    assert p(region, size).level == level


@pytest.mark.parametrize(
    ("region", "size", "tile"),
    [
        ("0,0,256,256", "256,", RawTile(0, 0, 0)),
        ("256,512,256,256", "256,256", RawTile(0, 1, 2)),
        ("256,512,256,256", "max", RawTile(0, 1, 2)),
        ("256,512,256,256", ",256", RawTile(0, 1, 2)),
        ("256,512,256,256", "!256,256", RawTile(0, 1, 2)),
        ("512,1024,512,512", "256,", RawTile(1, 1, 2)),
        ("4096,0,1024,1024", "256,", RawTile(2, 4, 0)),
    ],
)
def test_raw_tile_for_every_equivalent_size_form(region: str, size: str, tile: RawTile) -> None:
    assert p(region, size).raw_tile == tile


@pytest.mark.parametrize(
    ("region", "size", "rotation", "qf"),
    [
        ("0,0,256,256", "256,", "90", "default.jpg"),  # rotated
        ("0,0,256,256", "256,", "!0", "default.jpg"),  # mirrored
        ("0,0,256,256", "256,", "0", "gray.jpg"),  # other quality
        ("0,0,256,256", "256,", "0", "default.png"),  # other format
        ("0,0,256,256", "128,", "0", "default.jpg"),  # not the stored size
        ("1,0,256,256", "256,", "0", "default.jpg"),  # not aligned
        ("9984,0,16,256", "16,", "0", "default.jpg"),  # partial edge tile: rendered
    ],
)
def test_no_raw_tile(region: str, size: str, rotation: str, qf: str) -> None:
    assert p(region, size, rotation, qf).raw_tile is None


def test_color_quality_is_the_same_output_as_default() -> None:
    a, b = p("0,0,256,256", "256,", qf="default.jpg"), p("0,0,256,256", "256,", qf="color.jpg")
    assert a.key == b.key and b.raw_tile is not None


def test_cache_key_is_version_neutral() -> None:
    assert p("full", "500,", version=3).key == p("full", "500,", version=2).key


def test_max_is_shrunk_to_the_limits_not_refused() -> None:
    result = p("full", "max", limits=Limits(4000, 4000, 10_000_000))
    assert (result.width, result.height) == (3535, 2828)
    assert result.width * result.height <= 10_000_000
    assert result.canonical.startswith("full/max/")


@pytest.mark.parametrize("size", ["5000,", ",4001", "4001,10", "pct:50"])
def test_explicit_sizes_over_the_limits_are_400(size: str) -> None:
    with pytest.raises(BadRequest, match="limits"):
        p("full", size, limits=Limits(4000, 4000, 10_000_000))


def test_region_outside_is_400() -> None:
    with pytest.raises(BadRequest):
        p("10000,0,10,10", "max")


def test_region_overhanging_is_cropped() -> None:
    assert p("9990,7990,100,100", "max").region == Box(9990, 7990, 10, 10)


def test_rotation_360_is_the_same_pixels_as_0() -> None:
    assert p("full", "100,", "360").key == p("full", "100,", "0").key


def test_choose_level_on_flat_source() -> None:
    flat = SourceInfo("flat", 300, 200, (Level(300, 200),))
    assert choose_level(flat, Box(0, 0, 300, 200), 10, 7) == 0
