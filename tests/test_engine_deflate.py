"""Deflate tiles in the fast decode path (iiifsrv/engine/tiles.py): every stored tile of a
deflate TIFF, with and without the horizontal predictor, RGB and grey, decodes to exactly the
pixels libvips' tiffload reads; ISA-L's inflate and libdeflate agree, and a corrupt stream
falls back to libvips instead of failing the request. No timing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import pyvips

from iiifsrv.engine import mosaic, tiles
from iiifsrv.engine.tiffgrid import grids
from iiifsrv.imaging import RenderOptions, render
from iiifsrv.sources.describe import Source, describe
from tests.test_engine import _photo


def _grey(width: int, height: int) -> pyvips.Image:
    return _photo(width, height).colourspace("b-w").extract_band(0)


# 300x200 in 128-pixel tiles: the last column and row of each level are partial (padded).
IMAGES = {
    "tif-photo-300x200-tiled128-deflate-predictor.tif": (_photo, "horizontal"),
    "tif-photo-300x200-tiled128-deflate.tif": (_photo, "none"),
    "tif-grey-300x200-tiled128-deflate-predictor.tif": (_grey, "horizontal"),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("engine-deflate")
    made = {}
    for name, (make, predictor) in IMAGES.items():
        path = str(root / name)
        make(300, 200).tiffsave(
            path,
            compression="deflate",
            predictor=predictor,
            tile=True,
            tile_width=128,
            tile_height=128,
            pyramid=True,
        )
        made[name] = describe(path, os.stat(path))
    return made


def _level(source: Source, index: int) -> np.ndarray[Any, Any]:
    image = pyvips.Image.new_from_file(source.path, page=index)
    return np.asarray(image.numpy()).reshape(image.height, image.width, -1)


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_tile_equals_libvips(sources: dict[str, Source], name: str) -> None:
    source = sources[name]
    for index, grid in enumerate(grids(source)):
        assert grid is not None and grid.codec == "deflate"
        level = _level(source, index)
        for row in range(grid.down):
            for column in range(grid.across):
                tile = row * grid.across + column
                data = source.read(grid.offsets[tile], grid.counts[tile])
                pixels = tiles.decode(grid, data)
                assert pixels.shape == (grid.tile_height, grid.tile_width, grid.bands)
                y, x = row * grid.tile_height, column * grid.tile_width
                theirs = level[y : y + grid.tile_height, x : x + grid.tile_width]
                h, w = theirs.shape[:2]  # the stored tile is padded beyond the level's edge
                assert np.array_equal(pixels[:h, :w], theirs), (name, index, row, column)


def test_isal_and_libdeflate_agree(sources: dict[str, Source]) -> None:
    source = sources["tif-photo-300x200-tiled128-deflate-predictor.tif"]
    grid = grids(source)[0]
    assert grid is not None
    size = grid.tile_width * grid.tile_height * grid.bands
    for tile in range(len(grid.offsets)):
        data = source.read(grid.offsets[tile], grid.counts[tile])
        assert bytes(tiles.inflate(data, size)) == bytes(imagecodecs.deflate_decode(data, out=size))
    with pytest.raises(imagecodecs.DeflateError):
        tiles.inflate(b"\x78\x9c" + b"\xff" * 64, size)  # neither inflater accepts it


def test_corrupt_tile_falls_back_to_libvips(
    sources: dict[str, Source], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iiifsrv.iiif.model import Limits
    from iiifsrv.iiif.parse import parse_image_request
    from iiifsrv.iiif.plan import plan

    source = sources["tif-photo-300x200-tiled128-deflate-predictor.tif"]
    request = parse_image_request(3, "0,0,128,128", "128,", "0", "default.jpg")
    tile = plan(request, source.info, Limits())
    good = render(source, tile, RenderOptions())
    mosaic.stats.reset()
    monkeypatch.setattr(Source, "read", lambda self, offset, length: b"\x78\x9c" + b"\0" * length)
    again = render(source, tile, RenderOptions())  # libvips reads the real file
    assert mosaic.stats.fallbacks == 1 and mosaic.stats.renders == 0
    mine = pyvips.Image.new_from_buffer(good, "").numpy()
    theirs = pyvips.Image.new_from_buffer(again, "").numpy()
    assert np.array_equal(mine, theirs)


async def test_renders_after_the_service_was_closed_and_started_again(
    sources: dict[str, Source], tmp_path: Path
) -> None:
    # The render threads are a pool of the service; closing it (app shutdown) must not leave a
    # pool that refuses work if the same app is started again (tests, embedding).
    from iiifsrv.iiif.parse import parse_image_request
    from iiifsrv.service import ImageService
    from iiifsrv.settings import load

    name = "tif-photo-300x200-tiled128-deflate-predictor.tif"
    root = Path(sources[name].path).parent
    settings = load(overrides={"images": str(root), "data": str(tmp_path), "cache_bytes": 0})
    service = ImageService(settings)
    request = parse_image_request(3, "128,0,128,128", "128,", "0", "default.jpg")
    first = await service.render(await service.plan(name, request))
    await service.close()
    again = await service.render(await service.plan(name, request))
    assert service.renders == 2 and not again.cached
    assert again.body == first.body
    await service.close()
