"""Limits: over-limit requests are refused before any decoding; gigapixel 'max' is shrunk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import pyvips

from iiifsrv import imaging
from iiifsrv.settings import load
from iiifsrv.web.app import create_app

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"


@pytest.fixture
async def limited(image_root: Path) -> httpx.AsyncClient:
    app = create_app(
        load(
            overrides={
                "images": str(image_root),
                "max_width": 400,
                "max_height": 300,
                "max_area": 100_000,
            }
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("size", ["401,", ",301", "400,300", "^1000,", "pct:50"])
async def test_over_limit_is_refused_without_decoding(
    limited: httpx.AsyncClient, size: str
) -> None:
    async with limited as c:
        before = imaging.renders_started
        r = await c.get(f"/iiif/3/{TIF}/full/{size}/0/default.jpg")
        assert r.status_code == 400
        assert "limits" in r.text
        assert imaging.renders_started == before


async def test_max_is_shrunk_to_fit(limited: httpx.AsyncClient) -> None:
    async with limited as c:
        r = await c.get(f"/iiif/3/{TIF}/full/max/0/default.jpg")
        assert r.status_code == 200
        image = pyvips.Image.new_from_buffer(r.content, "")
        assert image.width <= 400 and image.height <= 300 and image.width * image.height <= 100_000
        assert (image.width, image.height) == (377, 264)
        info = (await c.get(f"/iiif/3/{TIF}/info.json")).json()
        assert (info["maxWidth"], info["maxHeight"], info["maxArea"]) == (400, 300, 100_000)
        assert all(s["width"] <= 400 and s["height"] <= 300 for s in info["sizes"])


async def test_gigapixel_max_is_answered_at_the_limit(tmp_path: Path) -> None:
    """A 50000x50000 BigTIFF (mostly empty tiles): 'max' is served at the limits, quickly."""
    root = tmp_path / "giga"
    root.mkdir()
    big = pyvips.Image.black(50000, 50000, bands=3).copy(interpretation="srgb")
    big.tiffsave(
        str(root / "giga.tif"),
        tile=True,
        pyramid=True,
        compression="jpeg",
        bigtiff=True,
        tile_width=512,
        tile_height=512,
    )
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        info = (await c.get("/iiif/3/giga/info.json")).json()
        assert (info["width"], info["height"]) == (50000, 50000)
        r = await c.get("/iiif/3/giga/full/max/0/default.jpg")
        assert r.status_code == 200
        image = pyvips.Image.new_from_buffer(r.content, "")
        assert (image.width, image.height) == (5000, 5000)  # maxArea 25 MP
        r = await c.get("/iiif/3/giga/full/50000,/0/default.jpg")
        assert r.status_code == 400
