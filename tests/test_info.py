"""info.json documents (pure): tiles and sizes from the real levels, limits, profiles."""

from __future__ import annotations

from iiifsrv.iiif.info import info_v2, info_v3, sizes, tiles
from iiifsrv.iiif.model import Level, Limits, SourceInfo

PYRAMID = SourceInfo(
    "tiff",
    1000,
    700,
    (Level(1000, 700, 256, 256), Level(500, 350, 256, 256), Level(250, 175, 256, 256)),
)


def test_tiles_are_the_files_real_tiles() -> None:
    assert tiles(PYRAMID) == [{"width": 256, "scaleFactors": [1, 2, 4]}]


def test_non_square_tiles_give_height() -> None:
    info = SourceInfo("tiff", 1000, 700, (Level(1000, 700, 512, 128), Level(500, 350, 512, 128)))
    assert tiles(info) == [{"width": 512, "height": 128, "scaleFactors": [1, 2]}]


def test_levels_with_different_tiles_are_listed_apart() -> None:
    info = SourceInfo("tiff", 1000, 700, (Level(1000, 700, 256, 256), Level(500, 350, 128, 128)))
    assert tiles(info) == [
        {"width": 256, "scaleFactors": [1]},
        {"width": 128, "scaleFactors": [2]},
    ]


def test_untiled_source_gets_a_virtual_grid() -> None:
    flat = SourceInfo("flat", 3000, 2000, (Level(3000, 2000),))
    assert tiles(flat) == [{"width": 512, "height": 512, "scaleFactors": [1, 2, 4, 8]}]


def test_sizes_smallest_first_within_limits() -> None:
    assert sizes(PYRAMID, Limits()) == [
        {"width": 250, "height": 175},
        {"width": 500, "height": 350},
        {"width": 1000, "height": 700},
    ]
    assert sizes(PYRAMID, Limits(max_width=600)) == [
        {"width": 250, "height": 175},
        {"width": 500, "height": 350},
    ]


def test_info_v3_shape() -> None:
    doc = info_v3("http://x/iiif/3/a", PYRAMID, Limits(5000, 5000, 10_000_000))
    assert list(doc)[:4] == ["@context", "id", "type", "protocol"]
    assert doc["@context"] == "http://iiif.io/api/image/3/context.json"
    assert doc["type"] == "ImageService3" and doc["profile"] == "level2"
    assert (doc["maxWidth"], doc["maxHeight"], doc["maxArea"]) == (5000, 5000, 10_000_000)
    assert doc["extraFormats"] == ["webp", "tif", "gif", "jp2"]
    assert doc["extraQualities"] == ["color", "gray", "bitonal", "stretch"]
    assert "sizeUpscaling" in doc["extraFeatures"] and "mirroring" in doc["extraFeatures"]


def test_info_v2_shape() -> None:
    doc = info_v2("http://x/iiif/2/a", PYRAMID, Limits(5000, 0, 0))
    assert doc["@context"] == "http://iiif.io/api/image/2/context.json"
    assert doc["@id"] == "http://x/iiif/2/a"
    assert doc["profile"][0] == "http://iiif.io/api/image/2/level2.json"
    extras = doc["profile"][1]
    assert extras["maxWidth"] == 5000 and "maxHeight" not in extras
    assert {"sizeAboveFull", "rotationArbitrary", "mirroring"} <= set(extras["supports"])
    assert extras["formats"] == ["jpg", "png", "webp", "tif", "gif", "jp2"]


def test_gray_image_does_not_offer_color() -> None:
    gray = SourceInfo("tiff", 100, 100, (Level(100, 100, 256, 256),), bands=1)
    assert "color" not in info_v3("http://x/iiif/3/g", gray, Limits())["extraQualities"]
    assert "gray" in info_v3("http://x/iiif/3/g", gray, Limits())["extraQualities"]
