"""The planar JPEG path (engine/planar.py, engine/turbo.py): downscaled renders of JPEG-tiled
TIFFs decoded, resized and encoded in YCbCr planes. Against libvips' rendering of the same
request: exact size, colours within a stated tolerance, and at least as close to the
uncompressed original; counters prove which tiles were decoded, at which DCT scale. No timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pyvips

from iiifsrv.engine import mosaic, resample, turbo
from tests.test_engine import PLANAR_MAX, PLANAR_MEAN, _client, _pixels

pytestmark = pytest.mark.skipif(not turbo.available(), reason="libturbojpeg is not installed")

PHOTO = "tif-photo-1500x1100-tiled128-jpeg.tif"
GREY = "tif-grey-1500x1100-tiled128-jpeg.tif"
ONE_LEVEL = "tif-photo-1lvl-1500x1100-tiled128-jpeg.tif"


def _photo(width: int, height: int) -> pyvips.Image:
    xyz = pyvips.Image.xyz(width, height)
    r = xyz[0] * (255 / width)
    g = xyz[1] * (255 / height)
    b = (xyz[0] + xyz[1]) * (255 / (width + height))
    noise = pyvips.Image.gaussnoise(width, height, sigma=12, seed=7)
    return (r.bandjoin([g, b]) + noise).cast("uchar").copy(interpretation="srgb")


@pytest.fixture(scope="module")
def original() -> np.ndarray[Any, Any]:
    return np.asarray(_photo(1500, 1100).numpy(), dtype=np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, original: np.ndarray[Any, Any]) -> Path:
    folder = tmp_path_factory.mktemp("planar-images")
    photo = pyvips.Image.new_from_array(original).copy(interpretation="srgb")
    options = {"tile": True, "pyramid": True, "tile_width": 128, "tile_height": 128}
    photo.tiffsave(str(folder / PHOTO), compression="jpeg", Q=80, **options)
    grey = photo.colourspace("b-w").extract_band(0)
    grey.tiffsave(str(folder / GREY), compression="jpeg", Q=80, **options)
    # One level, its last column and row of tiles padded: downscales decode at a DCT scale.
    photo.tiffsave(
        str(folder / ONE_LEVEL), compression="jpeg", Q=80, tile=True, tile_width=128,
        tile_height=128,
    )  # fmt: skip
    return folder


@pytest.fixture
async def fast(root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(root, tmp_path, True):
        yield client


@pytest.fixture
async def vips(root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(root, tmp_path, False):
        yield client


def _reference(original: np.ndarray[Any, Any], region: str, shape: tuple[int, ...]) -> Any:
    """The uncompressed original's region, resized by libvips to ``shape``."""
    x, y, w, h = (int(v) for v in region.split(","))
    image = pyvips.Image.new_from_array(np.ascontiguousarray(original[y : y + h, x : x + w]))
    image = image.copy(interpretation="srgb")
    return resample.to_array(resample.reduce(image, shape[1], shape[0], "linear")).astype(np.int16)


# (region, size, tiles decoded). The photo is 1500x1100 in 128-pixel tiles, levels 1500, 750,
# 375, 188 wide; in a complete pyramid the shrink left after the level is below 2, so these
# decode at full scale (the DCT scales: test_engine.py's one-level image).
CASES = [
    # The case in small: 60 % of the image to 1/10 of its width: level 2 (1/4,
    # 375x275) pixels 52..278 x 39..205, columns 0-2, rows 0-1.
    ("210,158,900,660", "150,", 6),
    # Level 0, a shrink below 2: pixels 37..593 x 11..455, columns 0-4, rows 0-3.
    ("37,11,556,444", "400,", 20),
    # An odd output width and height (libturbojpeg reads the luma plane padded to even).
    ("300,200,201,141", "101,", 4),
    # Level 1 (750x550): pixels 375..600 x 100..200, columns 2-4, rows 0-1.
    ("750,200,450,200", "150,", 6),
]


@pytest.mark.parametrize(("request_region", "size", "tiles"), CASES)
async def test_downscaled_region_in_planes_matches_libvips(
    fast: httpx.AsyncClient,
    vips: httpx.AsyncClient,
    original: np.ndarray[Any, Any],
    request_region: str,
    size: str,
    tiles: int,
) -> None:
    request = f"{request_region}/{size}/0/default.jpg"
    mosaic.stats.reset()
    mine = await _pixels(fast, PHOTO, request)
    assert mosaic.stats.planar == 1, request
    assert (mosaic.stats.renders, mosaic.stats.tiles) == (1, tiles), request
    assert dict(mosaic.stats.scales) == {Fraction(1): tiles}, request
    theirs = await _pixels(vips, PHOTO, request)
    assert mine.shape == theirs.shape, request
    assert mine.shape[1] == int(size.rstrip(","))
    diff = np.abs(mine - theirs)
    assert int(diff.max()) <= PLANAR_MAX, (request, int(diff.max()))
    assert float(diff.mean()) <= PLANAR_MEAN, (request, float(diff.mean()))
    truth = _reference(original, request_region, mine.shape)
    mine_error = float(np.abs(mine - truth).mean())
    their_error = float(np.abs(theirs - truth).mean())
    assert mine_error <= their_error + 0.25, (request, mine_error, their_error)


async def test_grey_region_in_planes_matches_libvips(
    fast: httpx.AsyncClient, vips: httpx.AsyncClient
) -> None:
    request = "37,11,556,444/400,/0/default.jpg"
    mosaic.stats.reset()
    mine = await _pixels(fast, GREY, request)
    assert (mosaic.stats.planar, mosaic.stats.tiles) == (1, 20)
    theirs = await _pixels(vips, GREY, request)
    assert mine.shape == theirs.shape == (319, 400, 1)
    diff = np.abs(mine - theirs)
    assert float(diff.mean()) <= 1.0, float(diff.mean())


@pytest.mark.parametrize(
    ("request_path", "scales"),
    [
        # Inside the level: shrink 4, decoded at 1/4 (columns 0-3, rows 0-3).
        ("0,0,512,512/128,/0/default.jpg", {Fraction(4): 16}),
        # Reaching the level's right and bottom edges, inside padded tiles: a scaled IDCT
        # would blend the padding (black) into the last rows and columns, so 8/8.
        ("full/375,/0/default.jpg", {Fraction(1): 108}),
    ],
)
async def test_dct_scale_except_at_a_padded_edge(
    fast: httpx.AsyncClient,
    vips: httpx.AsyncClient,
    request_path: str,
    scales: dict[Fraction, int],
) -> None:
    mosaic.stats.reset()
    mine = await _pixels(fast, ONE_LEVEL, request_path)
    assert mosaic.stats.planar == 1
    assert dict(mosaic.stats.scales) == scales
    theirs = await _pixels(vips, ONE_LEVEL, request_path)
    assert mine.shape == theirs.shape
    diff = np.abs(mine - theirs)
    assert float(diff.mean()) <= 3.0, float(diff.mean())  # as test_engine's DCT-scale bound
    assert float(diff[-2:].mean()) <= 3.0 and float(diff[:, -2:].mean()) <= 3.0


async def test_unresized_and_other_requests_are_not_planar(fast: httpx.AsyncClient) -> None:
    mosaic.stats.reset()
    for request in (
        "100,50,300,200/max/0/default.jpg",  # not resized: exactly libvips' pixels elsewhere
        "37,11,556,444/400,/0/default.png",
        "37,11,556,444/400,/90/default.jpg",
        "37,11,556,444/400,/0/gray.jpg",
    ):
        r = await fast.get(f"/iiif/3/{PHOTO}/{request}")
        assert r.status_code == 200, request
    assert mosaic.stats.planar == 0


def test_encode_pads_odd_luma_planes() -> None:
    rng = np.random.default_rng(3)
    luma = np.full((301, 401), 120, np.uint8) + rng.integers(0, 9, (301, 401), dtype=np.uint8)
    cb = np.full((151, 201), 100, np.uint8)
    cr = np.full((151, 201), 160, np.uint8)
    data = turbo.encode([luma, cb, cr], turbo.SAMP_420, 95)
    assert turbo.frame(data) == (401, 301, turbo.SAMP_420)
    decoded = pyvips.Image.new_from_buffer(data, "")
    assert (decoded.width, decoded.height) == (401, 301)
    y = decoded.colourspace("b-w").numpy().astype(np.int16)
    assert abs(float(y.mean()) - float(luma.mean())) < 8  # grey-ish, not garbage


def test_decode_refuses_a_tile_of_another_size() -> None:
    image = pyvips.Image.black(128, 128, bands=3).copy(interpretation="srgb") + 90
    stream = image.cast("uchar").jpegsave_buffer(Q=80, subsample_mode="on")
    assert turbo.frame(stream) == (128, 128, turbo.SAMP_420)
    luma = np.zeros((64, 64), np.uint8)
    chroma = [np.zeros((32, 32), np.uint8) for _ in range(2)]
    with pytest.raises(turbo.TurboError):
        turbo.decode_into(stream, [luma, *chroma], (64, 64), turbo.SAMP_420)  # the frame is 128
    with pytest.raises(turbo.TurboError):
        big = [np.zeros((64, 64), np.uint8) for _ in range(2)]
        turbo.decode_into(stream, [luma, *big], (128, 128), turbo.SAMP_444)
    assert not any(c.any() for c in big)
    assert not luma.any() and not any(c.any() for c in chroma)
    turbo.decode_into(stream, [luma, *chroma], (128, 128), turbo.SAMP_420)  # at 1/2
    assert abs(int(luma.mean()) - 90) <= 2


def test_reduce_plane_matches_libvips_resize() -> None:
    rng = np.random.default_rng(5)
    plane = (np.add.outer(np.arange(600), np.arange(700)) % 256).astype(np.uint8)
    plane = np.ascontiguousarray(plane + rng.integers(0, 5, plane.shape, dtype=np.uint8))
    box = (13, 7, 613, 487)
    mine = resample.reduce_plane(plane, box, 407, 333, "linear")
    assert mine.shape == (333, 407) and mine.flags.c_contiguous
    image = pyvips.Image.new_from_array(np.ascontiguousarray(plane[7:487, 13:613]))
    theirs = image.resize(407 / 600, vscale=333 / 480, kernel="linear").numpy()
    assert float(np.abs(mine.astype(np.int16) - theirs).mean()) <= 1.0


@pytest.mark.parametrize(
    ("box", "size"),
    [
        ((13, 7, 313, 247), (207, 166)),  # shrink below 2: the shared vertical passes
        ((0, 0, 350, 250), (350, 173)),  # only a vertical shrink
        ((5, 3, 345, 243), (100, 70)),  # shrink above 2: libvips' resize, part by part
    ],
)
def test_reduce_parts_equals_each_part_alone(
    box: tuple[int, int, int, int], size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(8)
    cb = rng.integers(0, 256, (250, 350), dtype=np.uint8)
    cr = (np.add.outer(np.arange(250), np.arange(350)) % 256).astype(np.uint8)
    both = np.ascontiguousarray(np.hstack([cb, cr]))
    together = resample.reduce_parts(both, 2, box, *size, "linear")
    assert together.shape == (2, size[1], size[0]) and together.flags.c_contiguous
    for part, alone in zip(together, (cb, cr), strict=True):
        expected = resample.reduce_plane(alone, box, *size, "linear")
        assert np.array_equal(part, expected)
