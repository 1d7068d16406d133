"""The shared cache under the service: two apps (as two replicas) on one Redis share
descriptions, info.json and rendered tiles; a replaced file is never served stale; the base
URL is part of an info.json key; Redis unreachable means serving from the source."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips

from iiifsrv import service as service_module
from iiifsrv.caches import described
from iiifsrv.settings import load
from iiifsrv.sources.describe import describe
from iiifsrv.web.app import create_app
from tests.conftest import free_port, quadrants

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"
TILE = "/iiif/3/page.tif/100,100,300,300/150,/0/default.jpg"  # not a stored tile


@pytest.fixture
def images(tmp_path: Path, fixture_files: dict[str, Path]) -> Path:
    """A private copy: new inode and mtime, so no earlier run's keys match."""
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(fixture_files[TIF], root / "page.tif")
    return root


Replica = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def replica(tmp_path: Path, redis_url: str) -> AsyncIterator[Replica]:
    apps: list[Any] = []
    clients: list[httpx.AsyncClient] = []

    def make(
        images: Path, url: str = redis_url, host: str = "a.example", **more: Any
    ) -> httpx.AsyncClient:
        settings = load(
            overrides={
                "images": str(images),
                "data": str(tmp_path / f"data{len(apps)}"),
                "cache_url": url,
                "debug": True,
                "cache_timeout_ms": 200,
                **more,
            }
        )
        app = create_app(settings)
        apps.append(app)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{host}"
        )
        client.service = app.app.state.service  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
        await client.service.close()  # type: ignore[attr-defined]


@pytest.fixture
def describe_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def counting(path: str, st: os.stat_result) -> Any:
        calls.append(path)
        return describe(path, st)

    monkeypatch.setattr(service_module, "describe", counting)
    return calls


async def test_info_json_and_description_come_from_the_other_replica(
    images: Path, replica: Replica, describe_calls: list[str]
) -> None:
    a, b = replica(images), replica(images)
    ra = await a.get("/iiif/3/page.tif/info.json")
    assert ra.status_code == 200 and len(describe_calls) == 1
    rb = await b.get("/iiif/3/page.tif/info.json")
    assert rb.status_code == 200
    assert rb.content == ra.content
    assert len(describe_calls) == 1  # B read the TIFF structure from Redis, not the file
    assert b.service.shared.stats.hits == 2  # type: ignore[attr-defined]
    assert rb.json()["id"] == "http://a.example/iiif/3/page.tif"


async def test_info_json_ids_follow_the_base_url(images: Path, replica: Replica) -> None:
    a, b = replica(images, host="a.example"), replica(images, host="b.example")
    assert (await a.get("/iiif/3/page.tif/info.json")).json()["id"].startswith("http://a.")
    doc = (await b.get("/iiif/3/page.tif/info.json")).json()
    assert doc["id"] == "http://b.example/iiif/3/page.tif"
    v2 = (await b.get("/iiif/2/page.tif/info.json")).json()
    assert v2["@id"] == "http://b.example/iiif/2/page.tif"


async def test_tile_rendered_once_and_served_by_the_other_replica(
    images: Path, replica: Replica
) -> None:
    a, b = replica(images), replica(images)
    ra = await a.get(TILE)
    assert ra.status_code == 200 and "render;dur=" in ra.headers["server-timing"]
    rb = await b.get(TILE)
    assert rb.status_code == 200
    assert rb.content == ra.content
    assert "render;dur=" not in rb.headers["server-timing"]
    assert "shared;dur=" in rb.headers["server-timing"]
    assert "renders;desc=0" in rb.headers["server-timing"]
    assert b.service.renders == 0 and a.service.renders == 1  # type: ignore[attr-defined]


def _top_left_colour(body: bytes) -> list[float]:
    image = pyvips.Image.new_from_buffer(body, "")
    corner = image.crop(0, 0, 16, 16)
    return [round(corner[band].avg()) for band in range(3)]


async def test_replaced_file_is_never_served_stale(images: Path, replica: Replica) -> None:
    # With libvips' own operation cache on (the default): a replaced file is not decoded by
    # its old contents (imaging forgets the cached loads of a path whose version changed).
    a = replica(images)
    first = await a.get(TILE)
    r, g, b_ = _top_left_colour(first.content)
    assert r > 200 and g < 60 and b_ < 60  # the fixture's top-left quadrant is red
    # Replace the file by another image (top-left now green), as an ingest would.
    swapped = quadrants().flip("horizontal")
    new = images / "page.new.tif"
    swapped.tiffsave(
        str(new), compression="jpeg", Q=85, tile=True, pyramid=True, tile_width=256, tile_height=256
    )
    os.replace(new, images / "page.tif")
    other = replica(images)  # a replica that never saw the old file
    for client in (a, other):
        resp = await client.get(TILE)
        assert resp.status_code == 200
        r, g, b_ = _top_left_colour(resp.content)
        assert g > 200 and r < 60 and b_ < 60, (r, g, b_)
        info = (await client.get("/iiif/3/page.tif/info.json")).json()
        assert info["width"] == 1000


async def test_redis_unreachable_means_served_from_the_source(
    images: Path, replica: Replica
) -> None:
    down = replica(images, url=f"redis://127.0.0.1:{free_port()}/0")
    start = time.monotonic()
    for _ in range(3):
        assert (await down.get("/iiif/3/page.tif/info.json")).status_code == 200
        resp = await down.get(TILE)
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    other = await down.get("/iiif/3/page.tif/256,256,256,256/128,/0/default.png")
    assert other.status_code == 200
    assert time.monotonic() - start < 10
    stats = down.service.shared.stats  # type: ignore[attr-defined]
    assert stats.errors >= 1 and stats.hits == 0


@pytest.mark.parametrize(
    "name",
    [
        "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif",
        "tif-rgb-4lvl-1000x700-tiled128-deflate-subifd.tif",
        "jp2-rgb-1000x700-tiled256.jp2",
        "jpeg-rgb-flat-1000x700.jpg",
    ],
)
def test_description_round_trip(fixture_files: dict[str, Path], name: str) -> None:
    path = str(fixture_files[name])
    st = os.stat(path)
    source = describe(path, st)
    again = described.decode(described.encode(source), path, st.st_mtime_ns, st.st_size, st.st_ino)
    assert again == source
    assert described.decode(b"not zlib", path, 0, 0, 0) is None
