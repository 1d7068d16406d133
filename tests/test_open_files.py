"""Stored tiles are read through descriptors kept open between requests (sources/local.py), and
small clipped edge tiles are cut on the event loop (service.py): a file replaced or rewritten
under its name is served anew, a descriptor in use is never closed under its reader, and the
edge tiles cut on the loop are the bytes the worker threads cut."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pyvips

from iiifsrv import dct_crop, service
from iiifsrv.settings import load
from iiifsrv.sources.local import OPEN_FILES, OpenFiles
from iiifsrv.web.app import create_app
from tests.test_edge_tiles import TIF, viewer_tiles
from tests.test_passthrough import stored_tile

TILE = "/iiif/3/page.tif/0,0,256,256/256,/0/default.jpg"


def _pyramid(path: Path, rgb: tuple[int, int, int]) -> None:
    """A 768x512 JPEG pyramid, tiled 256, of one colour with a lighter square (its tiles differ
    from another colour's byte for byte)."""
    image = (pyvips.Image.black(768, 512) + list(rgb)).cast("uchar")
    image = image.draw_rect([255, 255, 255], 40, 40, 100, 100, fill=True)
    image.copy(interpretation="srgb").tiffsave(
        str(path), tile=True, tile_width=256, tile_height=256, pyramid=True, compression="jpeg"
    )


async def _client(root: Path, data: Path, **overrides: object) -> httpx.AsyncClient:
    settings = load(overrides={"images": str(root), "data": str(data), **overrides})
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def uncached(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """A client with every response cache off (each tile is read from the file), and its root
    holding ``page.tif`` (red) and ``blue.tif``."""
    root = tmp_path / "images"
    root.mkdir()
    _pyramid(root / "page.tif", (200, 30, 30))
    _pyramid(tmp_path / "blue.tif", (30, 30, 200))
    async with await _client(root, tmp_path / "data", cache_bytes=0) as client:
        yield client, root


async def test_descriptor_reused_for_one_version(
    uncached: tuple[httpx.AsyncClient, Path],
) -> None:
    client, root = uncached
    first = await client.get(TILE)
    assert first.status_code == 200
    assert first.content == stored_tile(root / "page.tif", 0, 0, 0)
    opened = OPEN_FILES.opened
    for column, row in [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1)]:
        response = await client.get(
            f"/iiif/3/page.tif/{column * 256},{row * 256},256,256/256,/0/default.jpg"
        )
        assert response.content == stored_tile(root / "page.tif", 0, column, row)
    assert OPEN_FILES.opened == opened  # five more tiles, not one more open


async def test_replaced_file_is_served_anew(
    uncached: tuple[httpx.AsyncClient, Path], tmp_path: Path
) -> None:
    client, root = uncached
    red = (await client.get(TILE)).content
    assert red == stored_tile(root / "page.tif", 0, 0, 0)
    # Replaced under its name (a new inode), as ingest and rsync do.
    shutil.copyfile(tmp_path / "blue.tif", root / "blue.tmp")
    os.replace(root / "blue.tmp", root / "page.tif")
    blue = (await client.get(TILE)).content
    assert blue != red
    assert blue == stored_tile(root / "page.tif", 0, 0, 0)


async def test_file_rewritten_in_place_is_served_anew(
    uncached: tuple[httpx.AsyncClient, Path], tmp_path: Path
) -> None:
    client, root = uncached
    inode = os.stat(root / "page.tif").st_ino
    red = (await client.get(TILE)).content
    with open(root / "page.tif", "r+b") as fh:  # the same inode, new bytes, a new mtime
        fh.truncate(0)
        fh.write((tmp_path / "blue.tif").read_bytes())
    st = os.stat(root / "page.tif")
    os.utime(root / "page.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert os.stat(root / "page.tif").st_ino == inode
    blue = (await client.get(TILE)).content
    assert blue != red
    assert blue == stored_tile(root / "page.tif", 0, 0, 0)


def _identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def test_lru_bound_and_no_close_under_a_reader(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 100)
    b.write_bytes(b"B" * 100)
    files = OpenFiles(capacity=1)
    assert files.read(str(a), _identity(a), 10, 5) == b"AAAAA"
    assert files.read(str(a), _identity(a), 0, 2) == b"AA"
    assert files.opened == 1
    held = files._acquire(str(a), _identity(a))  # a reader in another thread, mid-pread
    assert files.read(str(b), _identity(b), 0, 3) == b"BBB"  # evicts a's descriptor...
    assert os.pread(held.fd, 3, 0) == b"AAA"  # ...which stays open for its reader
    files._release(held)
    with pytest.raises(OSError):
        os.fstat(held.fd)  # closed by its last reader
    assert files.read(str(a), _identity(a), 0, 1) == b"A"
    assert files.opened == 3
    # A version other than the one described: read once from the file, never kept.
    stale = (_identity(a)[0], _identity(a)[1] - 1, 100)
    assert files.read(str(a), stale, 0, 1) == b"A"
    assert files.read(str(a), _identity(a), 0, 1) == b"A"
    assert files.opened == 4
    files.clear()


def _held_open(path: Path) -> bool:
    """Whether this process still holds a descriptor of ``path`` (deleted or not)."""
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target in (str(path), f"{path} (deleted)"):
            return True
    return False


def test_a_deleted_file_is_let_go_at_the_next_sweep(tmp_path: Path) -> None:
    now = [0.0]
    files = OpenFiles(capacity=8, sweep_every=10, clock=lambda: now[0])
    gone, kept = tmp_path / "gone.tif", tmp_path / "kept.tif"
    gone.write_bytes(b"G" * 100)
    kept.write_bytes(b"K" * 100)
    assert files.read(str(gone), _identity(gone), 0, 1) == b"G"
    gone.unlink()  # a curator deletes the source: its space must come back
    assert _held_open(gone)  # still held: the descriptor cache has not looked yet
    now[0] = 9.0
    assert files.read(str(kept), _identity(kept), 0, 1) == b"K"
    assert _held_open(gone)  # before the sweep interval
    now[0] = 10.5
    assert files.read(str(kept), _identity(kept), 0, 1) == b"K"
    assert not _held_open(gone)  # swept: no descriptor of the deleted file is left
    assert _held_open(kept)  # the live file keeps its descriptor
    assert files.opened == 2
    files.clear()


@pytest.mark.skipif(not dct_crop.available(), reason="libturbojpeg0 is not installed")
async def test_edge_tiles_cut_on_the_loop_equal_the_threads(
    image_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def edge_tiles(data: Path) -> tuple[dict[str, bytes], int]:
        async with await _client(image_root, data, cache_bytes=0) as client:
            tiles = [t for t in await viewer_tiles(client, TIF) if t["edge"]]
            bodies = {}
            for tile in tiles:
                response = await client.get(tile["url"])
                assert response.status_code == 200
                bodies[tile["url"]] = response.content
            front = client._transport.app  # type: ignore[attr-defined]
            return bodies, front.state.service.inline_crops

    on_loop, inline = await edge_tiles(tmp_path / "a")
    assert on_loop and inline == len(on_loop)
    monkeypatch.setattr(service, "INLINE_CROP_BYTES", 0)  # every crop in a worker thread
    in_threads, inline = await edge_tiles(tmp_path / "b")
    assert inline == 0
    assert in_threads == on_loop
