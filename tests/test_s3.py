"""Images in S3-compatible object storage: the image root setting, and (against a real
OpenStack Swift with s3api, started by tests/s3_support.py) info.json, pixels, passthrough bytes,
the number and size of the ranged GETs, outages and replaced objects."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import pyvips
import tifffile

from iiifsrv import dct_crop
from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.errors import NotFound
from iiifsrv.ingest import publish
from iiifsrv.settings import Settings, SettingsError, load
from iiifsrv.sources import jp2
from iiifsrv.sources.local import LocalStorage
from iiifsrv.sources.remote import COALESCE_GAP
from iiifsrv.sources.s3 import S3Storage
from iiifsrv.sources.storage import ImageRoot, parse_root
from iiifsrv.web.app import create_app
from iiifsrv.web.media import REMOTE_CHUNK
from tests.cache.conftest import REDIS_URL
from tests.conftest import (
    BLUE,
    GREEN,
    RED,
    WHITE,
    LiveServer,
    quadrants,
    start_server,
    stop_server,
)
from tests.ingest_support import catalogue_ids, get, run_cli, smooth
from tests.presentation_support import needs_ffmpeg, write_mp4, write_wav
from tests.s3_support import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, Swift, start_swift
from tests.test_passthrough import stored_tile
from tests.test_validator import run_validator


@pytest.mark.parametrize(
    ("text", "root"),
    [
        ("s3://images", ImageRoot("s3", bucket="images", prefix="")),
        ("s3://images/", ImageRoot("s3", bucket="images", prefix="")),
        ("s3://images/coll/a", ImageRoot("s3", bucket="images", prefix="coll/a/")),
        ("S3://images//coll//", ImageRoot("s3", bucket="images", prefix="coll/")),
        ("/srv/images", ImageRoot("local", path=Path("/srv/images"))),
    ],
)
def test_image_root_parses(text: str, root: ImageRoot) -> None:
    assert parse_root(text) == root


@pytest.mark.parametrize(
    "text",
    ["", "s3://", "s3://UPPER/x", "s3://b/../x", "s3://b/./x", "http://host/images", "gs://b/p"],
)
def test_image_root_refuses_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(ValueError):
        parse_root(text)


def test_images_setting_is_checked_at_load() -> None:
    with pytest.raises(SettingsError, match="'images' from environment"):
        load(environ={"IIIFSRV_IMAGES": "ftp://host/images"})
    settings = load(environ={"IIIFSRV_IMAGES": "s3://bucket/prefix"})
    assert str(settings.image_root) == "s3://bucket/prefix/"


def test_local_storage_reads_ranges_and_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.tif").write_bytes(b"0123456789")
    (tmp_path / "secret.tif").write_bytes(b"secret")
    (tmp_path / "root" / "link.tif").symlink_to(tmp_path / "secret.tif")
    storage = LocalStorage(tmp_path / "root")
    assert storage.read("sub/a.tif", 3, 4) == b"3456"
    assert storage.stat("sub/a.tif").size == 10
    assert [k for k, _ in storage.list("sub/a")] == ["sub/a.tif"]
    assert storage.exists("sub/a.tif") and not storage.exists("sub/b.tif")
    for key in ("../secret.tif", "link.tif", "sub/../../secret.tif", ""):
        with pytest.raises(NotFound):
            storage.read(key, 0, 1)


# -- against a real Swift (s3api) --------------------------------------------------------------

PREFIX = "coll"
TILED = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
LARGE = "tif-rgb-4lvl-2048x1536-tiled256-jpeg-noise"  # 48 tiles of ~30 KB at level 0


def make_large(folder: Path) -> Path:
    """A pyramid whose tiles have realistic sizes (noise compresses badly), made on demand."""
    path = folder / f"{LARGE}.tif"
    noise = pyvips.Image.gaussnoise(2048, 1536, mean=128, sigma=40)
    rgb = noise.bandjoin([noise.rot180(), noise.fliphor()]).cast("uchar")
    rgb.copy(interpretation="srgb").tiffsave(
        str(path),
        compression="jpeg",
        Q=85,
        tile=True,
        pyramid=True,
        tile_width=256,
        tile_height=256,
    )
    return path


@pytest.fixture(scope="session")
def swift(tmp_path_factory: pytest.TempPathFactory, image_root: Path) -> Iterator[Swift]:
    """Swift AIO with the fixture images uploaded under ``coll/`` in the ``images`` bucket."""
    try:
        server = start_swift(tmp_path_factory.mktemp("swiftaio"))
    except RuntimeError as exc:  # not installed or not starting: the S3 tests fail, not skip
        pytest.fail(f"cannot start OpenStack Swift for the S3 tests: {exc}")
    try:  # a failed upload must not leave the servers running (the teardown would not run)
        s3 = server.client()
        for path in sorted(image_root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                key = f"{PREFIX}/{path.relative_to(image_root).as_posix()}"
                s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        large = make_large(tmp_path_factory.mktemp("large"))
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{large.name}", Body=large.read_bytes())
        server.large = large  # type: ignore[attr-defined]
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def s3_settings(swift: Swift, tmp_path: Path, **extra: object) -> Settings:
    overrides: dict[str, object] = {
        "images": f"s3://{BUCKET}/{PREFIX}",
        "data": str(tmp_path / "data"),
        "s3_endpoint": swift.endpoint,
        "s3_region": REGION,
        "s3_timeout": 4,
        **extra,
    }
    return load(overrides=overrides)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.app = app  # type: ignore[attr-defined]
        try:
            yield c
        finally:  # what the lifespan does (the ASGI transport runs none): S3 connections closed
            await app.state.service.close()


def storage_of(client: httpx.AsyncClient) -> S3Storage:
    storage = client.app.state.service.remote.storage  # type: ignore[attr-defined]
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture
async def s3_client(swift: Swift, s3_env: None, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(s3_settings(swift, tmp_path)) as c:
        yield c


async def test_info_json_from_s3_equals_the_folders(
    s3_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    for name in (
        TILED,
        "tif-rgb-4lvl-1000x700-tiled128-deflate-subifd",
        "jp2-rgb-1000x700-tiled256",
    ):
        remote = await s3_client.get(f"/iiif/3/{name}/info.json")
        local = await client.get(f"/iiif/3/{name}/info.json")
        assert remote.status_code == 200, remote.text
        assert remote.json() == local.json()
    nested = await s3_client.get("/iiif/3/collection%2Fbox%201%2Fpage-0001/info.json")
    assert nested.status_code == 200
    assert (nested.json()["width"], nested.json()["height"]) == (1000, 700)


async def test_landing_page_lists_the_images_in_the_bucket(s3_client: httpx.AsyncClient) -> None:
    r = await s3_client.get("/")
    assert r.status_code == 200
    assert TILED in r.text and "collection/box 1/page-0001" in r.text
    listed = s3_client.app.state.service.list_images()  # type: ignore[attr-defined]
    assert TILED in listed and LARGE in listed and "jpeg-rgb-flat-1000x700" in listed
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize(
    "name",
    [
        TILED,
        "tif-rgb-3lvl-1000x700-tiled256-jpeg-q95-rgbphotometric",
        "tif-rgb-4lvl-1000x700-tiled128-deflate-subifd",
        "tif-rgb-3lvl-1000x700-tiled256-lzw",
        "tif-rgb-3lvl-1000x700-tiled256-zstd",
        "tif-rgb-3lvl-1000x700-tiled256-webp",
        "tif-rgb16-3lvl-1000x700-tiled256-deflate",
        "tif-gray8-3lvl-1000x700-tiled256-deflate",
        "tif-5band-3lvl-1000x700-tiled256-deflate",
        "tif-rgb-flat-1000x700-strips",
        "jp2-rgb-1000x700-tiled256",
        "jpeg-rgb-flat-1000x700",
        "png-rgb-flat-1000x700",
    ],
)
@pytest.mark.parametrize(
    "request_path",
    [
        "full/max/0/default.png",
        "400,250,300,200/150,/0/default.png",
        "0,0,512,512/128,/90/gray.png",
        "pct:10,10,80,80/!200,200/0/default.jpg",
        "480,330,40,40/40,/0/default.png",
    ],
)
async def test_pixels_from_s3_equal_the_folders(
    s3_client: httpx.AsyncClient, client: httpx.AsyncClient, name: str, request_path: str
) -> None:
    remote = await s3_client.get(f"/iiif/3/{name}/{request_path}")
    local = await client.get(f"/iiif/3/{name}/{request_path}")
    assert remote.status_code == 200, remote.text
    assert local.status_code == 200
    a = pyvips.Image.new_from_buffer(remote.content, "")
    b = pyvips.Image.new_from_buffer(local.content, "")
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    assert (a - b).abs().max() <= 3  # the same tiles, decoded by libjpeg/tifffile vs libtiff


async def test_quadrant_colours_from_s3(s3_client: httpx.AsyncClient) -> None:
    r = await s3_client.get(f"/iiif/3/{TILED}/full/100,70/0/default.png")
    image = pyvips.Image.new_from_buffer(r.content, "")
    for (x, y), colour in {(20, 15): RED, (80, 15): GREEN, (20, 55): BLUE, (80, 55): WHITE}.items():
        assert all(abs(p - c) <= 8 for p, c in zip(image(x, y), colour, strict=True))


async def test_stored_tiles_are_passed_through_with_one_ranged_get_each(
    s3_client: httpx.AsyncClient, swift: Swift
) -> None:
    storage = storage_of(s3_client)
    large: Path = swift.large  # type: ignore[attr-defined]
    size = large.stat().st_size
    # Warm-up: the structure is read once (one listing and a few ranged GETs).
    assert (await s3_client.get(f"/iiif/3/{LARGE}/info.json")).status_code == 200
    assert storage.counters.lists == 1
    assert 1 <= storage.counters.gets <= 6
    assert storage.counters.get_bytes < size / 4
    log_before = swift.mark()
    before = storage.counters.snapshot()
    # Distinct full stored tiles of level 0 (8 x 6 of 256 px) and level 1 (4 x 3).
    tiles = [(0, c, r, f"{256 * c},{256 * r},256,256/256,") for r in (0, 2, 5) for c in range(8)]
    tiles += [(1, c, r, f"{512 * c},{512 * r},512,512/256,") for r in (0, 2) for c in range(4)]
    longest = 0
    for level, c, r, path in tiles:
        response = await s3_client.get(f"/iiif/3/{LARGE}/{path}/0/default.jpg")
        assert response.status_code == 200
        expected = stored_tile(large, level, c, r)
        assert response.content == expected  # passthrough: the stored bytes
        longest = max(longest, len(expected))
    after = storage.counters.snapshot()
    assert after["gets"] - before["gets"] == len(tiles)  # exactly one GET per tile
    assert after["lists"] == before["lists"]  # within s3_revalidate: no listing
    gets = list(storage.counters.recent)[-len(tiles) :]
    assert all(length == received <= longest for _, _, length, received in gets)
    # What Swift saw: the same N ranged GETs (206), each no larger than the tile.
    log_after = swift.mark() - 1
    seen = [a for a in swift.accesses()[log_before:log_after] if a.method == "GET"]
    assert len(seen) == len(tiles)
    assert all(a.status == 206 and a.path.endswith(f"{LARGE}.tif") for a in seen)
    assert all(a.sent <= longest for a in seen)
    # Never a full-object GET of the tiled source (nor anything close to it).
    assert all(n < size / 4 for k, _, n, _ in storage.counters.recent if k.endswith(LARGE + ".tif"))


async def test_edge_tiles_are_cut_from_their_stored_tile_with_one_get_each(
    swift: Swift, s3_env: None, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """A clipped edge tile of a level not kept decoded costs one ranged GET and is cut from
    its stored tile without a decode, the same bytes as from a folder; of a level kept
    decoded it is rendered from that level (no GET)."""
    assert dct_crop.available()
    edges = ["768,0,232,256/232,", "0,512,256,188/256,", "768,512,232,188/232,"]
    async with serve(s3_settings(swift, tmp_path, decoded_cache_mb=0)) as c:
        storage, service = storage_of(c), c.app.state.service  # type: ignore[attr-defined]
        assert (await c.get(f"/iiif/3/{TILED}/info.json")).status_code == 200
        gets, renders = storage.counters.gets, service.renders
        for path in edges:
            remote = await c.get(f"/iiif/3/{TILED}/{path}/0/default.jpg")
            local = await client.get(f"/iiif/3/{TILED}/{path}/0/default.jpg")
            assert remote.status_code == local.status_code == 200
            assert remote.content == local.content  # cut from the same stored tile
        assert storage.counters.gets - gets == len(edges)
        assert service.renders == renders  # none decoded
    async with serve(s3_settings(swift, tmp_path)) as c:  # level 0 (0.7 MP) kept decoded
        storage, service = storage_of(c), c.app.state.service  # type: ignore[attr-defined]
        assert (await c.get(f"/iiif/3/{TILED}/{edges[0]}/0/default.jpg")).status_code == 200
        gets = storage.counters.gets
        for path in edges[1:]:
            assert (await c.get(f"/iiif/3/{TILED}/{path}/0/default.jpg")).status_code == 200
        assert storage.counters.gets == gets


async def test_rendered_regions_read_only_the_tiles_they_cover(
    s3_client: httpx.AsyncClient, swift: Swift
) -> None:
    storage = storage_of(s3_client)
    large: Path = swift.large  # type: ignore[attr-defined]
    assert (await s3_client.get(f"/iiif/3/{LARGE}/info.json")).status_code == 200
    with tifffile.TiffFile(large) as tif:
        counts = tif.series[0].levels[0].keyframe.databytecounts
    before = storage.counters.gets
    first = len(storage.counters.recent)
    # Level 0 (3.1 MP: not kept decoded whole); the region covers tiles (0..1, 0..1).
    r = await s3_client.get(f"/iiif/3/{LARGE}/200,200,200,200/200,/0/default.png")
    assert r.status_code == 200
    assert pyvips.Image.new_from_buffer(r.content, "").width == 200
    reads = list(storage.counters.recent)[first:]
    assert storage.counters.gets - before == len(reads) == 2  # one read per row of tiles
    covered = sum(counts[row * 8 + col] for row in (0, 1) for col in (0, 1))
    assert covered <= sum(n for _, _, n, _ in reads) <= covered + 2 * COALESCE_GAP


@pytest.fixture(scope="module")
def s3_live_server(swift: Swift, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real uvicorn serving the fixtures from Swift (credentials from the environment)."""
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "IIIFSRV_S3_ENDPOINT": swift.endpoint,
        "IIIFSRV_S3_REGION": REGION,
    }
    data = tmp_path_factory.mktemp("s3live") / "data"
    server = start_server(f"s3://{BUCKET}/{PREFIX}", data, env=env)  # type: ignore[arg-type]
    yield server
    stop_server(server)
    log = server.log.read_text()
    assert SECRET_KEY not in log and "Traceback" not in log


@pytest.mark.parametrize(("version", "count"), [("3.0", 33), ("2.0", 30)])
def test_validator_level2_on_an_s3_root(
    s3_live_server: LiveServer, version: str, count: int
) -> None:
    output = run_validator(s3_live_server, version, "--level=2")
    assert f"Done ({count} tests, 0 failures)" in output


def test_live_server_serves_tiles_from_s3(s3_live_server: LiveServer, swift: Swift) -> None:
    url = f"{s3_live_server.url}/iiif/3/{LARGE}/256,256,256,256/256,/0/default.jpg"
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    assert r.content == stored_tile(swift.large, 0, 1, 1)  # type: ignore[attr-defined]
    assert httpx.get(f"{s3_live_server.url}/health", timeout=30).json() == {"status": "ok"}


@pytest.mark.parametrize("name", ["jp2-rgb-1000x700-tiled256", "j2k-rgb-1000x700-codestream"])
async def test_jpeg2000_beyond_the_whole_object_limit_is_decoded_from_ranged_reads(
    swift: Swift, s3_env: None, tmp_path: Path, client: httpx.AsyncClient, name: str
) -> None:
    async with serve(s3_settings(swift, tmp_path, s3_max_whole_object=1024)) as c:
        for path in ("full/250,/0/default.png", "256,256,256,256/256,/0/default.png"):
            remote = await c.get(f"/iiif/3/{name}/{path}")
            local = await client.get(f"/iiif/3/{name}/{path}")
            assert remote.status_code == 200, remote.text
            assert remote.content == local.content


def noise_jp2(folder: Path, name: str, tlm: bool) -> Path:
    """A 2048x2048 JPEG2000 of 64 tiles of 256 (noise: ~90 KB a tile-part), as jp2ksave
    writes it (no TLM), or with TLM markers as ``iiifsrv ingest`` writes it."""
    path = folder / f"{name}.jp2"
    noise = pyvips.Image.gaussnoise(2048, 2048, mean=128, sigma=40)
    noise.bandjoin([noise.rot180(), noise.fliphor()]).cast("uchar").copy(
        interpretation="srgb"
    ).jp2ksave(str(path), tile_width=256, tile_height=256, Q=60)
    if tlm:
        assert jp2.add_tlm(str(path))
    return path


def tile_part_lengths(path: Path) -> dict[int, int]:
    """Tile number → length of its one tile-part, read from the local file."""
    with path.open("rb") as fh:
        _, start, end = jp2.codestream_bounds(fh, path.stat().st_size)
        fh.seek(start)
        first = start + jp2.main_header_end(fh.read(65536))

        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)

        return {t: n for t, _, n in jp2.walk_tile_parts(read, first, end, 1000)}


@pytest.mark.parametrize("tlm", [False, True], ids=["jp2ksave", "with-TLM"])
async def test_a_large_jpeg2000_reads_only_the_tile_parts_of_its_tiles(
    swift: Swift, s3_env: None, tmp_path: Path, tlm: bool
) -> None:
    """Beyond s3_max_whole_object a JPEG2000 is indexed once (TLM markers: from the header
    blocks; without: one 12-byte read per tile-part), then a tile costs one ranged GET of
    exactly its tile-part, and pixels equal the local file's at every level."""
    folder = tmp_path / "local"
    folder.mkdir()
    name = f"noise-{uuid.uuid4().hex[:8]}"
    path = noise_jp2(folder, name, tlm)
    size = path.stat().st_size
    lengths = tile_part_lengths(path)
    swift.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}.jp2", Body=path.read_bytes())
    tiles = [(512, 512), (1024, 1024), (1792, 256), (0, 1792)]
    urls = [f"/iiif/3/{name}/{x},{y},256,256/256,/0/default.png" for x, y in tiles]
    others = [  # after the overview, regions of many tiles (decoded in one thread: no race)
        "full/256,/0/default.png",
        "1024,0,1024,1024/512,/0/default.png",
        "300,300,700,500/700,/0/default.png",
        "0,1300,900,748/450,/0/default.png",
        "1500,1500,548,548/274,/0/default.png",
    ]
    local_settings = load(overrides={"images": str(folder), "data": str(tmp_path / "ld")})
    async with serve(local_settings) as c:
        local = [(await c.get(u)).content for u in urls]
        local += [(await c.get(f"/iiif/3/{name}/{o}")).content for o in others]
    async with serve(s3_settings(swift, tmp_path, s3_max_whole_object=1024)) as c:
        storage = storage_of(c)
        info = await c.get(f"/iiif/3/{name}/info.json")
        assert info.status_code == 200
        indexed = storage.counters.snapshot()
        # The header blocks; without TLM also one small GET per tile-part header.
        assert indexed["gets"] <= 2 + (0 if tlm else len(lengths))
        assert indexed["get_bytes"] <= 2 * 65536 + (0 if tlm else 12 * len(lengths))
        for n, url in enumerate(urls):
            before = storage.counters.snapshot()
            remote = await c.get(url)
            assert remote.status_code == 200, remote.text
            assert remote.content == local[n]
            after = storage.counters.snapshot()
            x, y = tiles[n]
            part = lengths[(y // 256) * 8 + x // 256]
            assert after["gets"] - before["gets"] == 1  # one GET: exactly the tile's bytes
            assert after["get_bytes"] - before["get_bytes"] == part
        assert all(received < size / 4 for _, _, _, received in storage.counters.recent)
        # An overview needs every tile under it (each tile holds all its resolutions in one
        # tile-part): read once, in long runs of adjacent tile-parts, then kept in the blocks.
        before = storage.counters.snapshot()
        for n, other in enumerate(others, start=len(urls)):
            remote = await c.get(f"/iiif/3/{name}/{other}")
            assert remote.status_code == 200, remote.text
            assert remote.content == local[n]
        after = storage.counters.snapshot()
        assert after["gets"] - before["gets"] <= 8
        assert after["get_bytes"] - before["get_bytes"] < size


async def test_an_untiled_jpeg2000_beyond_the_limit_is_a_501_not_a_download(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    """One tile is the whole image: reading it would download the object, so it is refused
    like any untiled source above s3_max_whole_object."""
    path = tmp_path / "untiled.jp2"
    pyvips.Image.gaussnoise(600, 400, mean=128, sigma=40).cast("uchar").jp2ksave(
        str(path), tile_width=1024, tile_height=1024, Q=60
    )
    name = f"untiled-{uuid.uuid4().hex[:8]}"
    swift.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}.jp2", Body=path.read_bytes())
    async with serve(s3_settings(swift, tmp_path, s3_max_whole_object=1024)) as c:
        storage = storage_of(c)
        r = await c.get(f"/iiif/3/{name}/full/max/0/default.jpg")
        assert r.status_code == 501 and "iiifsrv ingest" in r.text
        assert storage.counters.get_bytes < path.stat().st_size


async def test_identifiers_map_to_keys_as_to_files(
    swift: Swift, s3_client: httpx.AsyncClient, image_root: Path
) -> None:
    s3 = swift.client()
    tif = (image_root / f"{TILED}.tif").read_bytes()
    jpg = (image_root / "jpeg-rgb-flat-1000x700.jpg").read_bytes()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/pref/a.jpg", Body=jpg)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/pref/a.tif", Body=tif)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/pref/ab.ptif", Body=jpg)  # another stem
    s3.put_object(Bucket=BUCKET, Key="outside.tif", Body=tif)  # outside the prefix
    info = await s3_client.get("/iiif/3/pref%2Fa/info.json")
    assert info.status_code == 200
    assert info.json()["tiles"][0]["width"] == 256  # the .tif pyramid, not the .jpg
    jpeg = await s3_client.get("/iiif/3/pref%2Fa.jpg/info.json")  # the exact key
    assert jpeg.status_code == 200 and jpeg.json()["tiles"] != info.json()["tiles"]
    for identifier in ("..%2Foutside", "pref%2F..%2F..%2Foutside", "%2Foutside", "pref%2F"):
        r = await s3_client.get(f"/iiif/3/{identifier}/info.json")
        assert r.status_code in (400, 404), identifier
    assert (await s3_client.get("/iiif/3/outside/info.json")).status_code == 404


async def test_a_missing_bucket_is_a_503_with_a_message(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    settings = s3_settings(swift, tmp_path, images="s3://no-such-bucket/x")
    async with serve(settings) as c:
        r = await c.get(f"/iiif/3/{TILED}/info.json")
        assert r.status_code == 503
        assert r.text.strip() == "image storage: the bucket does not exist"


async def test_an_object_replaced_in_the_bucket_is_served_new_after_the_interval(
    swift: Swift, s3_env: None, tmp_path: Path, image_root: Path
) -> None:
    s3 = swift.client()
    key = f"{PREFIX}/replaced/page.tif"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(image_root / f"{TILED}.tif").read_bytes())
    turned = tmp_path / "turned.tif"
    quadrants().rot180().tiffsave(
        str(turned),
        compression="jpeg",
        Q=85,
        tile=True,
        pyramid=True,
        tile_width=256,
        tile_height=256,
    )
    url = "/iiif/3/replaced%2Fpage/full/100,70/0/default.png"
    async with serve(s3_settings(swift, tmp_path, s3_revalidate=1)) as c:
        first = await c.get(url)
        assert first.status_code == 200
        top_left = pyvips.Image.new_from_buffer(first.content, "")(20, 15)[:3]
        assert all(abs(p - c) <= 8 for p, c in zip(top_left, RED, strict=True))  # the old one
        etag = first.headers["etag"]
        s3.put_object(Bucket=BUCKET, Key=key, Body=turned.read_bytes())
        deadline = time.monotonic() + 20
        while True:
            r = await c.get(url)
            assert r.status_code in (200, 503), r.text  # 503 only if it changed mid-read
            if r.status_code == 200 and r.headers["etag"] != etag:
                break
            assert time.monotonic() < deadline, "the replaced object was never served"
            await asyncio.sleep(0.2)
        top_left = pyvips.Image.new_from_buffer(r.content, "")(20, 15)[:3]
        assert all(abs(p - 255) <= 8 for p in top_left)  # white: the new object


async def test_wrong_credentials_are_a_503_with_a_message(
    swift: Swift, s3_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    async with serve(s3_settings(swift, tmp_path)) as c:
        r = await c.get(f"/iiif/3/{TILED}/info.json")
        assert r.status_code == 503
        assert "refused the credentials" in r.text and "not-the-secret" not in r.text
        assert len(r.text.strip().splitlines()) == 1
        health = await c.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "refused the credentials" in health.json()["images"]


def test_multipart_upload_is_verified_by_etag(
    swift: Swift, s3_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PART", 5 * 1024 * 1024)  # S3's smallest part size
    staging = tmp_path / "staging"
    (staging / "mp").mkdir(parents=True)
    data = np.random.default_rng(3).integers(0, 255, 12 * 1024 * 1024, "uint8").tobytes()
    (staging / "mp" / "big.tif").write_bytes(data)
    target = publish.S3Target(BUCKET, "uploads/", swift.endpoint, REGION)
    obj = CatalogueObject(id="mp/big", label="", kind="image", image="mp/big", width=1, height=1)
    target.publish(obj, staging)
    head = swift.client().head_object(Bucket=BUCKET, Key="uploads/mp/big.tif")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert not (staging / "mp" / "big.tif").exists()  # the staged copy is gone
    assert target.outputs_exist(obj)


def ingest_command(src: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "iiifsrv", "ingest", str(src), "--images",
            f"s3://{BUCKET}/ingested", "--data", str(data), "--jobs", "2"]  # fmt: skip


def s3_environ(swift: Swift) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "IIIFSRV_S3_ENDPOINT": swift.endpoint,
        "IIIFSRV_S3_REGION": REGION,
    }


def test_ingest_into_s3_killed_midway_then_rerun_agrees_with_the_bucket(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    count = 8
    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(count):  # noise: slow to compress, so the kill lands mid-run
        tifffile.imwrite(src / f"noise-{i:02d}.tif", rng.integers(0, 255, (1200, 1200, 3), "uint8"))
    env = s3_environ(swift)
    process = subprocess.Popen(
        ingest_command(src, data), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("ok"), first
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    done_before = len(catalogue_ids(data))
    assert 1 <= done_before < count

    rerun = subprocess.run(
        ingest_command(src, data), capture_output=True, text=True, timeout=300, env=env
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{count - done_before} ingested, {done_before} skipped, 0 failed" in rerun.stdout
    ids = [f"noise-{i:02d}" for i in range(count)]
    assert catalogue_ids(data) == ids
    listed = swift.client().list_objects_v2(Bucket=BUCKET, Prefix="ingested/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"ingested/{i}.tif" for i in ids]
    staging = data / "s3-staging"
    assert not [p for p in staging.rglob("*") if p.is_file()]  # nothing left behind
    # A third run changes nothing; every object is served from the bucket.
    again = subprocess.run(
        ingest_command(src, data), capture_output=True, text=True, timeout=300, env=env
    )
    assert f"0 ingested, {count} skipped, 0 failed" in again.stdout
    settings = load(
        overrides={
            "images": f"s3://{BUCKET}/ingested",
            "data": str(data),
            "s3_endpoint": swift.endpoint,
        }  # fmt: skip
    )

    async def infos() -> list[int]:
        async with serve(settings) as c:
            return [(await c.get(f"/iiif/3/{i}/info.json")).json()["width"] for i in ids]

    assert asyncio.run(infos()) == [1200] * count


def test_multispectral_object_in_s3_serves_bands_composites_and_spectra(
    swift: Swift, s3_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "src" / "leaf16"
    folder.mkdir(parents=True)
    for i, nm in enumerate((365, 550, 650, 940)):
        tifffile.imwrite(folder / f"leaf16_{nm}nm.tif", smooth(70, 110, 1, dtype="uint16", seed=i))
    local_images, local_data, s3_data = tmp_path / "img", tmp_path / "data", tmp_path / "s3data"
    status, out = run_cli("ingest", str(folder), "--images", str(local_images),
                          "--data", str(local_data))  # fmt: skip
    assert status == 0, out
    monkeypatch.setenv("IIIFSRV_S3_ENDPOINT", swift.endpoint)
    status, out = run_cli("ingest", str(folder), "--images", f"s3://{BUCKET}/ms",
                          "--data", str(s3_data))  # fmt: skip
    assert status == 0, out
    paths = [
        "/spectra/leaf16?x=57&y=33&radius=2",
        "/iiif/3/leaf16%2Fcomposite:IR940,R650,G550/full/max/0/default.png",
        "/iiif/3/leaf16%2FIR940/20,10,50,40/max/0/default.png",
        "/iiif/3/leaf16%2FG550/full/55,/0/stretch.png",
    ]
    local = [get(local_images, local_data, p) for p in paths]
    settings = load(
        overrides={
            "images": f"s3://{BUCKET}/ms",
            "data": str(s3_data),
            "s3_endpoint": swift.endpoint,
        }  # fmt: skip
    )

    async def fetch() -> list[httpx.Response]:
        async with serve(settings) as c:
            return [await c.get(p) for p in paths]

    remote = asyncio.run(fetch())
    assert [r.status_code for r in local] == [200] * len(paths)
    assert [r.status_code for r in remote] == [200] * len(paths)
    assert remote[0].json()["bands"] == local[0].json()["bands"]  # the spectral values
    for a, b in zip(remote[1:], local[1:], strict=True):
        assert a.content == b.content  # the same pixels, the same PNG


async def test_the_tiff_structure_is_shared_with_other_replicas_through_the_cache(
    swift: Swift, s3_env: None, tmp_path: Path, image_root: Path
) -> None:
    """With cache_url, a TIFF's header blocks are kept in Redis by (key, ETag): a second
    replica describes the same version without a GET, then one GET per stored tile."""
    key = f"shared-{uuid.uuid4().hex}/page"
    path = image_root / f"{TILED}.tif"
    swift.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}.tif", Body=path.read_bytes())
    settings = s3_settings(swift, tmp_path, cache_url=REDIS_URL)
    info = f"/iiif/3/{key.replace('/', '%2F')}/info.json"
    async with serve(settings) as first:
        described = await first.get(info)
        assert described.status_code == 200, described.text
        assert storage_of(first).counters.gets >= 1  # the header blocks, read once
        await first.app.state.service.close()  # type: ignore[attr-defined]
    async with serve(settings) as second:
        storage = storage_of(second)
        again = await second.get(info)
        assert again.status_code == 200 and again.json() == described.json()
        tile = await second.get(
            f"/iiif/3/{key.replace('/', '%2F')}/256,0,256,256/256,/0/default.jpg"
        )
        assert tile.status_code == 200
        assert tile.content == stored_tile(path, 0, 1, 0)
        assert storage.counters.gets == 1  # the tile; the structure came from the cache
        await second.app.state.service.close()  # type: ignore[attr-defined]


async def test_a_jpeg2000_index_is_shared_with_other_replicas_through_the_cache(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    """The tile-part index a replica built by reading every SOT is kept in Redis by (key,
    ETag): another replica serves a tile of that version with one GET."""
    folder = tmp_path / "local"
    folder.mkdir()
    name = f"shared-{uuid.uuid4().hex[:8]}"
    path = noise_jp2(folder, name, tlm=False)
    swift.client().put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}.jp2", Body=path.read_bytes())
    settings = s3_settings(swift, tmp_path, cache_url=REDIS_URL, s3_max_whole_object=1024)
    async with serve(settings) as first:
        assert (await first.get(f"/iiif/3/{name}/info.json")).status_code == 200
        assert storage_of(first).counters.gets > 64  # header blocks + 64 tile-part headers
        await first.app.state.service.close()  # type: ignore[attr-defined]
    async with serve(settings) as second:
        storage = storage_of(second)
        tile = await second.get(f"/iiif/3/{name}/768,256,256,256/256,/0/default.png")
        assert tile.status_code == 200, tile.text
        local = pyvips.Image.new_from_file(str(path)).crop(768, 256, 256, 256)
        assert np.array_equal(pyvips.Image.new_from_buffer(tile.content, "").numpy(), local.numpy())
        assert storage.counters.gets == 1
        assert storage.counters.get_bytes == tile_part_lengths(path)[1 * 8 + 3]
        await second.app.state.service.close()  # type: ignore[attr-defined]


def test_dropped_bands_and_removed_objects_delete_only_their_keys(
    swift: Swift, s3_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band dropped by a re-ingest and ``objects remove`` delete the bucket objects the
    catalogue owned, never anything else under the prefix."""
    folder = tmp_path / "src" / "leaf9"
    folder.mkdir(parents=True)
    for i, nm in enumerate((365, 550, 940)):
        tifffile.imwrite(folder / f"leaf9_{nm}nm.tif", smooth(30, 40, 1, seed=i))
    monkeypatch.setenv("IIIFSRV_S3_ENDPOINT", swift.endpoint)
    s3 = swift.client()
    others = {"rm/leaf9/notes.tif", "rm/leaf9-other.tif", "rm2/leaf9/IR940.tif"}
    for key in others:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the catalogue's")
    root, data = f"s3://{BUCKET}/rm", str(tmp_path / "data")

    def keys() -> set[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="rm")
        return {o["Key"] for o in listed.get("Contents", ())}

    status, out = run_cli("ingest", str(folder), "--images", root, "--data", data)
    assert status == 0, out
    bands = {"rm/leaf9/UV365.tif", "rm/leaf9/G550.tif", "rm/leaf9/IR940.tif"}
    assert keys() == bands | others
    (folder / "leaf9_940nm.tif").unlink()
    status, out = run_cli("ingest", str(folder), "--images", root, "--data", data)
    assert status == 0 and "1 ingested" in out, out
    assert keys() == bands - {"rm/leaf9/IR940.tif"} | others
    status, out = run_cli("objects", "remove", "leaf9", "--images", root, "--data", data)
    assert status == 0 and "2 derivative file(s) deleted" in out, out
    assert keys() == others
    assert catalogue_ids(Path(data)) == []


@needs_ffmpeg
async def test_media_from_s3_ranges_poster_and_duration(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    """/media from an S3 root as from a folder: ranges (206, 416), 304, the poster, the
    manifest's duration and size (ffprobe/ffmpeg read the object through a presigned URL)."""
    wav = write_wav(tmp_path / "tone.wav", seconds=1.0).read_bytes()
    mp4 = write_mp4(tmp_path / "film.mp4", seconds=2.0).read_bytes()
    s3 = swift.client()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/av/tone.wav", Body=wav)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/av/film.mp4", Body=mp4)
    settings = s3_settings(swift, tmp_path)
    Catalogue(settings.data_path / "catalogue.sqlite3").upsert(
        CatalogueObject(id="s3film", label="A film", kind="video", media="av/film.mp4")
    )
    async with serve(settings) as c:
        storage = storage_of(c)
        middle = await c.get("/media/av/film.mp4", headers={"Range": "bytes=100-199"})
        assert middle.status_code == 206, middle.text
        assert middle.headers["content-range"] == f"bytes 100-199/{len(mp4)}"
        assert middle.headers["content-type"] == "video/mp4"
        assert middle.content == mp4[100:200]
        whole = await c.get("/media/av/tone.wav")
        assert whole.status_code == 200 and whole.content == wav
        assert whole.headers["content-length"] == str(len(wav))
        reads = [r for r in storage.counters.recent if r[0] == "av/tone.wav"]
        assert reads and all(n <= REMOTE_CHUNK for _, _, n, _ in reads)  # ranged GETs only
        tail = await c.get("/media/av/tone.wav", headers={"Range": "bytes=-4"})
        assert tail.status_code == 206 and tail.content == wav[-4:]
        past = await c.get("/media/av/tone.wav", headers={"Range": f"bytes={len(wav)}-"})
        assert past.status_code == 416
        again = await c.get("/media/av/tone.wav", headers={"If-None-Match": whole.headers["etag"]})
        assert again.status_code == 304
        assert (await c.get("/media/av/none.wav")).status_code == 404
        assert (await c.get(f"/media/{TILED}.tif")).status_code == 404  # not an A/V file
        assert (await c.get("/media/..%2Foutside.mp4")).status_code == 404
        poster = await c.get("/media/av/film.mp4/poster.jpg")
        assert poster.status_code == 200, poster.text
        assert poster.content[:3] == b"\xff\xd8\xff"
        assert pyvips.Image.new_from_buffer(poster.content, "").width == 64
        manifest = await c.get("/iiif/manifests/s3film")
        assert manifest.status_code == 200, manifest.text
        canvas = manifest.json()["items"][0]
        assert canvas["duration"] == pytest.approx(2.0, abs=0.1)
        assert (canvas["width"], canvas["height"]) == (64, 48)
        body = canvas["items"][0]["items"][0]["body"]
        assert body["id"] == "http://testserver/media/av/film.mp4"


async def test_concurrent_health_probes_send_one_request(s3_client: httpx.AsyncClient) -> None:
    """A load balancer probing with a short time-out must not pile probes up in the worker's
    threads: concurrent /health requests share one listing of the bucket."""
    storage = storage_of(s3_client)
    before = storage.counters.lists
    answers = await asyncio.gather(*(s3_client.get("/health") for _ in range(12)))
    assert [r.status_code for r in answers] == [200] * 12
    assert storage.counters.lists - before == 1


async def test_swift_down_is_a_503_and_service_resumes_by_itself(
    swift: Swift, s3_env: None, tmp_path: Path
) -> None:
    """Keep last: it stops and restarts the proxy of the session's Swift."""
    timeout = 3
    async with serve(s3_settings(swift, tmp_path, s3_timeout=timeout)) as c:
        assert (await c.get(f"/iiif/3/{LARGE}/0,0,256,256/256,/0/default.jpg")).status_code == 200
        assert (await c.get("/health")).status_code == 200
        swift.stop_proxy()
        try:
            for path in (
                f"/iiif/3/{LARGE}/256,0,256,256/256,/0/default.jpg",  # a stored tile
                f"/iiif/3/{LARGE}/100,100,300,300/150,/0/default.png",  # a rendered region
                f"/iiif/3/{TILED}/info.json",  # not looked up yet: the listing fails
            ):
                start = time.monotonic()
                r = await c.get(path)
                assert r.status_code == 503, r.headers
                assert r.text.startswith("image storage") and "Traceback" not in r.text
                assert time.monotonic() - start < timeout + 2  # bounded by s3_timeout
            health = await c.get("/health")
            while health.status_code == 200:  # probed at most every 2 s
                await asyncio.sleep(0.2)
                health = await c.get("/health")
            assert health.status_code == 503
            assert "unavailable" in health.json()["images"]
        finally:
            swift.start_proxy()
        deadline = time.monotonic() + 30
        path = f"/iiif/3/{LARGE}/256,0,256,256/256,/0/default.jpg"
        while (r := await c.get(path)).status_code != 200:
            assert r.status_code == 503, r.text
            assert time.monotonic() < deadline, "service did not resume"
            await asyncio.sleep(0.2)
        assert r.content == stored_tile(swift.large, 0, 1, 0)  # type: ignore[attr-defined]
        while (await c.get("/health")).status_code != 200:
            assert time.monotonic() < deadline, "/health did not recover"
            await asyncio.sleep(0.2)
