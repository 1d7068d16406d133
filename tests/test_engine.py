"""The fast decode path (iiifsrv/engine/) against libvips' rendering of the same request:
exact size, and the same colours (exactly where nothing is resized; within a stated tolerance
where the mosaic is resized), plus counters proving that a region decodes only the tiles, and
the DCT scale, it needs. No timing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pyvips

from iiifsrv.engine import mosaic
from iiifsrv.settings import load
from iiifsrv.web.app import create_app
from tests.ingest_support import run_cli

# Resized outputs: the same reduce either way (engine/resample.py); a mosaic and libvips' region
# can differ at the level's last partial tile, and JPEG coding spreads a level's difference.
RESIZED_MAX, RESIZED_MEAN = 12, 1.0
# Resizing in YCbCr keeps the out-of-gamut values that libvips clips when it goes through RGB,
# so single pixels of saturated, noisy colours differ more than the RGB engine's (12 / 1.0).
PLANAR_MAX, PLANAR_MEAN = 40, 1.5

PYRAMID = {"tile": True, "pyramid": True, "tile_width": 128, "tile_height": 128}


def _photo(width: int, height: int) -> pyvips.Image:
    """Smooth colour gradients plus grain: every resampling difference shows."""
    xyz = pyvips.Image.xyz(width, height)
    r = xyz[0] * (255 / width)
    g = xyz[1] * (255 / height)
    b = (xyz[0] + xyz[1]) * (255 / (width + height))
    noise = pyvips.Image.gaussnoise(width, height, sigma=12, seed=7)
    image = r.bandjoin([g, b]) + noise
    return image.cast("uchar").copy(interpretation="srgb")


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine-images")
    photo = _photo(1000, 700).copy_memory()
    photo.tiffsave(
        str(root / "tif-photo-1000x700-tiled128-jpeg.tif"), compression="jpeg", Q=80, **PYRAMID
    )
    photo.tiffsave(
        str(root / "tif-photo-1000x700-tiled128-deflate.tif"), compression="deflate", **PYRAMID
    )
    photo.tiffsave(str(root / "tif-photo-1000x700-tiled128-lzw.tif"), compression="lzw", **PYRAMID)
    photo.tiffsave(
        str(root / "tif-photo-1000x700-tiled128-zstd-predictor.tif"),
        compression="zstd",
        predictor="horizontal",
        **PYRAMID,
    )
    photo.tiffsave(
        str(root / "tif-photo-1000x700-tiled128-jpeg-q95-rgbphotometric.tif"),
        compression="jpeg",
        Q=95,
        **PYRAMID,
    )
    grey = photo.colourspace("b-w").extract_band(0)
    grey.tiffsave(
        str(root / "tif-grey-1000x700-tiled128-deflate.tif"), compression="deflate", **PYRAMID
    )
    # One level only: downscaled views must come from the DCT scale, not from a smaller level.
    _photo(1024, 768).tiffsave(
        str(root / "tif-photo-1lvl-1024x768-tiled128-jpeg.tif"),
        compression="jpeg",
        Q=80,
        tile=True,
        tile_width=128,
        tile_height=128,
    )
    return root


async def _client(
    root: Path, tmp: Path, fast: bool, held_mb: int = 0
) -> AsyncIterator[httpx.AsyncClient]:
    # held_mb 0: no level is kept decoded, so every render reads stored tiles.
    settings = load(
        overrides={
            "images": str(root),
            "data": str(tmp / f"{fast}-{held_mb}"),
            "fast_decode": fast,
            "cache_bytes": 0,
            "decoded_cache_mb": held_mb,
        }
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def fast(photo_root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(photo_root, tmp_path, True):
        yield client


@pytest.fixture
async def fast_held(photo_root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(photo_root, tmp_path, True, held_mb=48):
        yield client


@pytest.fixture
async def vips(photo_root: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(photo_root, tmp_path, False):
        yield client


async def _pixels(client: httpx.AsyncClient, ident: str, request: str) -> np.ndarray[Any, Any]:
    info = (await client.get(f"/iiif/3/{ident}/info.json")).json()
    r = await client.get(f"{info['id']}/{request}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    image = pyvips.Image.new_from_buffer(r.content, "")
    return np.asarray(image.numpy(), dtype=np.int16).reshape(image.height, image.width, -1)


FILES = [
    "tif-photo-1000x700-tiled128-jpeg.tif",
    "tif-photo-1000x700-tiled128-deflate.tif",
    "tif-photo-1000x700-tiled128-lzw.tif",
    "tif-photo-1000x700-tiled128-zstd-predictor.tif",
    "tif-photo-1000x700-tiled128-jpeg-q95-rgbphotometric.tif",
    "tif-grey-1000x700-tiled128-deflate.tif",
]
# (request, resized): aligned tiles, a clipped edge tile, a lower-level tile, the full image.
EXACT = [
    "256,128,128,128/128,/0/default.jpg",
    "896,640,104,60/104,/0/default.jpg",
    "512,256,256,256/128,/0/default.jpg",
    "full/max/0/default.jpg",
    "100,50,300,200/max/0/color.jpg",
]
RESIZED = [
    "100,50,700,600/300,/0/default.jpg",
    "full/333,/0/default.jpg",
    "37,11,555,444/400,/0/default.jpg",
]


@pytest.mark.parametrize("ident", FILES)
async def test_unresized_pixels_equal_libvips(
    fast: httpx.AsyncClient, vips: httpx.AsyncClient, ident: str
) -> None:
    for request in EXACT:
        mosaic.stats.reset()
        mine = await _pixels(fast, ident, request)
        # One stored tile: the engine renders it (an aligned stored JPEG tile is passed
        # through, a clipped edge tile of a JPEG TIFF is cut losslessly in the DCT domain: see
        # tests/test_edge_tiles.py); more tiles at full scale: libvips.
        passthrough = "jpeg" in ident and request in (EXACT[0], EXACT[2])
        edge_crop = "jpeg" in ident and request == EXACT[1]
        engine = request in EXACT[:3] and not passthrough and not edge_crop
        assert mosaic.stats.renders == (1 if engine else 0), request
        theirs = await _pixels(vips, ident, request)
        assert mine.shape == theirs.shape, request
        if edge_crop:
            # libvips blends the tile's padding into the last row and column; the cut tile
            # repeats its own edge: the interior is the same.
            assert int(np.abs(mine[:-1, :-1] - theirs[:-1, :-1]).max()) <= 1, request
        else:
            assert int(np.abs(mine - theirs).max()) == 0, request


@pytest.mark.parametrize("ident", FILES)
async def test_resized_pixels_match_libvips(
    fast: httpx.AsyncClient, vips: httpx.AsyncClient, ident: str
) -> None:
    for request in RESIZED:
        mosaic.stats.reset()
        mine = await _pixels(fast, ident, request)
        # YCbCr JPEG tiles are resized in planes (tests/test_engine_planar.py: its bounds).
        planar = ident == "tif-photo-1000x700-tiled128-jpeg.tif"
        assert mosaic.stats.planar == (1 if planar else 0), request
        bound_max, bound_mean = (PLANAR_MAX, PLANAR_MEAN) if planar else (RESIZED_MAX, RESIZED_MEAN)
        theirs = await _pixels(vips, ident, request)
        assert mine.shape == theirs.shape, request
        diff = np.abs(mine - theirs)
        assert int(diff.max()) <= bound_max, (request, int(diff.max()))
        assert float(diff.mean()) <= bound_mean, (request, float(diff.mean()))


async def test_region_decodes_only_its_tiles(fast: httpx.AsyncClient) -> None:
    # 1000x700 in 128-pixel tiles, levels 1000, 500, 250, 125 wide. 300,140,400,300 at /200,
    # is level 1 (500x350): pixels 150..350 x 70..220, tiles columns 1-2, rows 0-1: 4 tiles.
    mosaic.stats.reset()
    await _pixels(
        fast, "tif-photo-1000x700-tiled128-deflate.tif", "300,140,400,300/200,/0/default.jpg"
    )
    assert (mosaic.stats.renders, mosaic.stats.tiles) == (1, 4)
    assert dict(mosaic.stats.scales) == {1: 4}


@pytest.mark.parametrize(
    ("request_path", "scale", "tiles"),
    [
        # 1024x768, one level, 128-pixel tiles (8 x 6).
        ("256,128,512,384/128,/0/default.jpg", 4, 12),  # shrink 4: columns 2-5, rows 1-3
        ("full/128,/0/default.jpg", 8, 48),  # shrink 8: every tile at 1/8
        ("full/300,/0/default.jpg", 2, 48),  # shrink 3.4: 1/2 (1/4 would be too small)
        ("0,0,256,200/256,/0/default.jpg", 1, 4),  # no shrink: full scale, columns 0-1, rows 0-1
    ],
)
async def test_downscaled_region_decodes_at_the_dct_scale_it_needs(
    fast: httpx.AsyncClient,
    vips: httpx.AsyncClient,
    request_path: str,
    scale: int,
    tiles: int,
) -> None:
    ident = "tif-photo-1lvl-1024x768-tiled128-jpeg.tif"
    mosaic.stats.reset()
    mine = await _pixels(fast, ident, request_path)
    assert (mosaic.stats.renders, mosaic.stats.tiles) == (1, tiles)
    assert dict(mosaic.stats.scales) == {scale: tiles}
    theirs = await _pixels(vips, ident, request_path)
    assert mine.shape == theirs.shape
    diff = np.abs(mine - theirs)
    # Decoding at a DCT scale filters differently from libvips' box shrink + linear reduce.
    assert float(diff.mean()) <= 3.0, float(diff.mean())


async def test_other_requests_go_to_libvips(fast: httpx.AsyncClient) -> None:
    ident = "tif-photo-1000x700-tiled128-deflate.tif"
    mosaic.stats.reset()
    for request in ("0,0,128,128/128,/90/default.jpg", "0,0,128,128/128,/0/gray.jpg"):
        await _pixels(fast, ident, request)
    info = (await fast.get(f"/iiif/3/{ident}/info.json")).json()
    assert (await fast.get(f"{info['id']}/0,0,128,128/128,/0/default.png")).status_code == 200
    assert mosaic.stats.renders == 0


async def test_htj2k_derivative_is_served(
    photo_root: Path, tmp_path: Path, fast: httpx.AsyncClient
) -> None:
    # The htj2k ingest profile: a High-Throughput JPEG2000 codestream (its tiles cost OpenJPEG
    # about a third of a JPEG2000 Part 1 tile's CPU), decoded by libvips like any JPEG2000.
    master = tmp_path / "photo-600x400.png"
    _photo(600, 400).pngsave(str(master))
    status, out = run_cli(
        "ingest", str(master), "--images", str(photo_root), "--data", str(tmp_path / "ingest"),
        "--profile", "htj2k",
    )  # fmt: skip
    assert status == 0, out
    stored = (photo_root / "photo-600x400.jp2").read_bytes()
    assert stored[:4] == b"\xff\x4f\xff\x51" and b"\xff\x50" in stored[:4096]  # SOC, SIZ; CAP
    original = pyvips.Image.new_from_file(str(master)).numpy().astype(np.int16)
    tile = await _pixels(fast, "photo-600x400.jp2", "256,0,256,256/256,/0/default.jpg")
    error = tile - original[0:256, 256:512]
    assert 10 * np.log10(255**2 / float(np.mean(error.astype(np.float64) ** 2))) >= 30.0
    edge = await _pixels(fast, "photo-600x400.jp2", "512,256,88,144/88,/0/default.jpg")
    assert edge.shape == (144, 88, 3)
