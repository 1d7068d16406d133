"""Hostile input to the Image API, manifests and media (found by review and fuzzing): a clear
4xx, never a 500; expensive renders refused before decoding; caches follow retargeted links."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import pyvips

from iiifsrv import imaging
from iiifsrv.settings import load
from iiifsrv.web.app import create_app

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
N = "1" * 5000


@pytest.mark.parametrize(
    "path",
    [
        f"/iiif/3/{TIF}/{N},0,1,1/max/0/default.jpg",
        f"/iiif/2/{TIF}/full/{N},/0/default.jpg",
        f"/iiif/3/{TIF}/full/pct:{N}/0/default.jpg",
        f"/iiif/3/{TIF}/full/max/{N}/default.jpg",
        f"/iiif/3/{TIF}/full/max/%D9%A3/default.jpg",  # an Arabic-Indic digit
        f"/iiif/3/{TIF}/%D9%A1,0,10,10/max/0/default.jpg",
    ],
)
async def test_odd_numbers_are_400(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 400


async def test_host_header_is_never_reflected_raw(client: httpx.AsyncClient) -> None:
    for host in ('a","injected":"yes","x":"', 'evil>;rel="canonical",<http://evil'):
        r = await client.get(f"/iiif/3/{TIF}/info.json", headers={"Host": host})
        assert r.status_code == 200
        assert "injected" not in r.json() and "evil" not in r.text
        r = await client.get(f"/iiif/3/{TIF}/full/100,/0/default.jpg", headers={"Host": host})
        assert "evil" not in r.headers["link"]
    r = await client.get(f"/iiif/3/{TIF}/info.json", headers={"Host": "images.example.org:8080"})
    assert r.json()["id"].startswith("http://images.example.org:8080/iiif/3/")


async def test_rotation_bounding_box_counts_against_the_limits(image_root: Path) -> None:
    app = create_app(load(overrides={"images": str(image_root), "max_area": 250_000}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        before = imaging.renders_started
        assert (await c.get(f"/iiif/3/{TIF}/full/500,/0/default.png")).status_code == 200
        r = await c.get(f"/iiif/3/{TIF}/full/500,/45/default.png")
        assert r.status_code == 400 and "limits" in r.text
        assert imaging.renders_started == before + 1


async def test_large_gif_is_refused_small_gif_served(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/iiif/3/{TIF}/full/^3000,/0/default.gif")).status_code == 400
    assert (await client.get(f"/iiif/3/{TIF}/full/max/0/default.gif")).status_code == 200


async def test_near_zero_rotation_is_zero(client: httpx.AsyncClient) -> None:
    a = await client.get(f"/iiif/3/{TIF}/full/90,/0.0000001/default.png")
    b = await client.get(f"/iiif/3/{TIF}/full/90,/0/default.png")
    assert a.headers["etag"] == b.headers["etag"]
    assert pyvips.Image.new_from_buffer(b.content, "").bands == 3
    assert "/0/default.png>" in a.headers["link"]


async def test_retargeted_symlink_is_followed(image_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "versions").mkdir(parents=True)
    (root / "versions" / "big.tif").write_bytes((image_root / f"{TIF}.tif").read_bytes())
    os.symlink(root / "versions" / "big.tif", root / "current.tif")
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(2):  # the second answer comes from the per-URL cache
            assert (await c.get("/iiif/3/current/info.json")).json()["width"] == 1000
        small = root / "versions" / "small.tif"
        pyvips.Image.black(300, 200).tiffsave(str(small), tile=True, pyramid=True)
        os.unlink(root / "current.tif")
        os.symlink(small, root / "current.tif")
        assert (await c.get("/iiif/3/current/info.json")).json()["width"] == 300
        # Retargeted out of the root: refused, not served from a cache.
        os.unlink(root / "current.tif")
        os.symlink(image_root / f"{TIF}.tif", root / "current.tif")
        assert (await c.get("/iiif/3/current/info.json")).status_code == 404


async def test_untiled_giant_is_refused_not_decoded(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    pyvips.Image.black(4000, 3000).pngsave(str(root / "wide.png"))
    app = create_app(load(overrides={"images": str(root), "max_source_pixels": 10_000_000}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        before = imaging.renders_started
        r = await c.get("/iiif/3/wide/full/100,/0/default.jpg")
        assert r.status_code == 501 and "ingest" in r.text
        assert imaging.renders_started == before


async def test_corrupt_pixels_are_501(tmp_path: Path, image_root: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    data = bytearray((image_root / "jp2-rgb-1000x700-tiled256.jp2").read_bytes())
    data[len(data) // 3 :] = b"\x00" * (len(data) - len(data) // 3)
    (root / "broken.jp2").write_bytes(bytes(data))
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/iiif/3/broken/full/100,/0/default.jpg")
        assert r.status_code in (200, 501), r.text  # OpenJPEG may decode garbage as pixels
        assert r.status_code != 500
