"""Nothing outside the image root is ever readable: every traversal trick gets 400 or 404."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import load
from iiifsrv.web.app import create_app

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
async def jail(tmp_path: Path, image_root: Path) -> httpx.AsyncClient:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text(SECRET)
    # An image just outside the root, to prove images outside are refused too.
    (tmp_path / "outside.png").write_bytes((image_root / "png-rgb-flat-1000x700.png").read_bytes())
    (root / "inside.png").write_bytes((image_root / "png-rgb-flat-1000x700.png").read_bytes())
    os.symlink(tmp_path / "outside.png", root / "link-out.png")
    os.symlink(tmp_path, root / "dir-out")
    os.symlink(root / "inside.png", root / "link-in.png")
    app = create_app(load(overrides={"images": str(root)}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


TRICKS = [
    "..%2Fsecret.txt",
    "..%2Foutside.png",
    "..%2Foutside",
    "%2e%2e%2Foutside.png",
    "%2E%2E%2Foutside",
    "inside%2F..%2F..%2Foutside.png",
    "%2F..%2Foutside.png",
    "%2Fetc%2Fpasswd",
    "%2Fetc%2Fhostname",
    "..%5Coutside.png",
    "inside.png%00",
    "inside%00.png",
    "link-out.png",
    "link-out",
    "dir-out%2Foutside.png",
    "dir-out%2Fsecret.txt",
    "..",
    "%2e%2e",
    ".",
    "%252e%252e%252Foutside.png",
]


@pytest.mark.parametrize("ident", TRICKS)
async def test_traversal_never_reads_outside(jail: httpx.AsyncClient, ident: str) -> None:
    async with jail as c:
        for suffix in ("info.json", "full/max/0/default.png", ""):
            r = await c.get(f"/iiif/3/{ident}/{suffix}" if suffix else f"/iiif/3/{ident}")
            assert r.status_code in (400, 404), (ident, suffix, r.status_code)
            assert SECRET not in r.text
            assert not r.content.startswith(b"\x89PNG")


async def test_unencoded_dot_segments(jail: httpx.AsyncClient) -> None:
    async with jail as c:
        for path in ("/iiif/3/../outside.png/info.json", "/iiif/3/a/../../outside/info.json"):
            r = await c.get(path)
            assert r.status_code in (400, 404)


async def test_symlink_inside_the_root_is_served(jail: httpx.AsyncClient) -> None:
    async with jail as c:
        assert (await c.get("/iiif/3/link-in/info.json")).status_code == 200
        assert (await c.get("/iiif/3/inside/info.json")).status_code == 200


async def test_non_image_file_inside_root_is_404(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    (root / "fake.tif").write_text("not a tiff at all")
    app = create_app(load(overrides={"images": str(root)}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/iiif/3/notes.txt/info.json")).status_code == 404
        r = await c.get("/iiif/3/fake/info.json")
        assert r.status_code == 404 and "hello" not in r.text
