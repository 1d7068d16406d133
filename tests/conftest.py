"""Shared fixtures: tiny self-describing images made once per session, an in-process client,
and a real uvicorn server for the tests where the wire matters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pyvips

from iiifsrv.settings import Settings, load
from iiifsrv.web.app import create_app
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance"
VALIDATOR_ID = "67352ccc-d1b0-11e1-89ae-279075081939"

# Quadrants of every fixture: top-left red, top-right green, bottom-left blue, bottom-right white.
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
W, H = 1000, 700


def quadrants(width: int = W, height: int = H) -> pyvips.Image:
    xyz = pyvips.Image.xyz(width, height)
    right = xyz[0] >= width // 2
    bottom = xyz[1] >= height // 2
    top_row = right.ifthenelse(list(GREEN), list(RED))
    bottom_row = right.ifthenelse(list(WHITE), list(BLUE))
    return bottom.ifthenelse(bottom_row, top_row).cast("uchar").copy(interpretation="srgb")


def _tiff(image: pyvips.Image, path: Path, **options: object) -> None:
    image.tiffsave(str(path), **options)


def make_fixtures(root: Path) -> dict[str, Path]:
    """Every source kind the server reads; names state their properties."""
    root.mkdir(parents=True, exist_ok=True)
    q = quadrants()
    files: dict[str, Path] = {}

    def add(name: str, write: object) -> None:
        path = root / name
        write(path)  # type: ignore[operator]
        files[name] = path

    pyramid = {"tile": True, "pyramid": True, "tile_width": 256, "tile_height": 256}
    add(
        "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif",
        lambda p: _tiff(q, p, compression="jpeg", Q=85, **pyramid),
    )
    add(
        "tif-rgb-3lvl-1000x700-tiled256-jpeg-q95-rgbphotometric.tif",
        lambda p: _tiff(q, p, compression="jpeg", Q=95, **pyramid),
    )
    add(
        "tif-rgb-4lvl-1000x700-tiled128-deflate-subifd.tif",
        lambda p: _tiff(
            q,
            p,
            compression="deflate",
            tile=True,
            pyramid=True,
            tile_width=128,
            tile_height=128,
            subifd=True,
        ),
    )
    add(
        "tif-rgb-3lvl-1000x700-tiled256-lzw.tif",
        lambda p: _tiff(q, p, compression="lzw", **pyramid),
    )
    add(
        "tif-rgb-3lvl-1000x700-tiled256-zstd.tif",
        lambda p: _tiff(q, p, compression="zstd", **pyramid),
    )
    add(
        "tif-rgb-3lvl-1000x700-tiled256-webp.tif",
        lambda p: _tiff(q, p, compression="webp", lossless=True, **pyramid),
    )
    add(
        "btf-rgb-3lvl-1000x700-tiled256-jpeg-bigtiff.tif",
        lambda p: _tiff(q, p, compression="jpeg", Q=95, bigtiff=True, **pyramid),
    )
    q16 = (q.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16")
    add(
        "tif-rgb16-3lvl-1000x700-tiled256-deflate.tif",
        lambda p: _tiff(q16, p, compression="deflate", **pyramid),
    )
    gray = q.colourspace("b-w").extract_band(0)
    add(
        "tif-gray8-3lvl-1000x700-tiled256-deflate.tif",
        lambda p: _tiff(gray, p, compression="deflate", **pyramid),
    )
    gray16 = (gray.cast("ushort") * 257).cast("ushort").copy(interpretation="grey16")
    add(
        "tif-gray16-3lvl-1000x700-tiled256-deflate.tif",
        lambda p: _tiff(gray16, p, compression="deflate", **pyramid),
    )
    five = q.bandjoin([q[0], q[1]]).copy(interpretation="multiband")
    add(
        "tif-5band-3lvl-1000x700-tiled256-deflate.tif",
        lambda p: _tiff(five, p, compression="deflate", **pyramid),
    )
    add("tif-rgb-flat-1000x700-strips.tif", lambda p: _tiff(q, p, compression="none"))
    add(
        "jp2-rgb-1000x700-tiled256.jp2",
        lambda p: q.jp2ksave(str(p), tile_width=256, tile_height=256, lossless=True),
    )
    add("j2k-rgb-1000x700-codestream.j2k", lambda p: q.jp2ksave(str(p), lossless=True))
    add("jpeg-rgb-flat-1000x700.jpg", lambda p: q.jpegsave(str(p), Q=95))
    add("png-rgb-flat-1000x700.png", lambda p: q.pngsave(str(p)))
    if (CONFORMANCE / f"{VALIDATOR_ID}.png").is_file():
        shutil.copy(CONFORMANCE / f"{VALIDATOR_ID}.png", root / f"{VALIDATOR_ID}.png")
        files[f"{VALIDATOR_ID}.png"] = root / f"{VALIDATOR_ID}.png"
    nested = root / "collection" / "box 1"
    nested.mkdir(parents=True, exist_ok=True)
    add("collection/box 1/page-0001.tif", lambda p: _tiff(q, p, compression="jpeg", **pyramid))
    return files


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    make_fixtures(root)
    return root


@pytest.fixture(scope="session")
def fixture_files(image_root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(image_root)): p
        for p in image_root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def settings(image_root: Path, tmp_path: Path) -> Settings:
    return load(overrides={"images": str(image_root), "data": str(tmp_path / "data")})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class LiveServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log


def start_server(
    images: Path,
    data: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> LiveServer:
    port = port or free_port()
    log = data.parent / f"server-{port}.log"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "iiifsrv",
        "serve",
        "--port",
        str(port),
        "--images",
        str(images),
        "--data",
        str(data),
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return LiveServer(proc, port, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_server(server: LiveServer) -> None:
    stop_process(server.proc)


@pytest.fixture(scope="session")
def live_server(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(image_root, tmp_path_factory.mktemp("livedata"))
    yield server
    stop_server(server)
