"""Helpers shared by the ingest, multispectral and spectra tests (fixtures are made per module)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import httpx
import numpy as np
import tifffile

from iiifsrv.cli import main
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app


def run_cli(*args: str) -> tuple[int, str]:
    """Run ``iiifsrv ARGS`` in-process; return the exit status and stdout+stderr."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = int(exc.code or 0)
    return status, out.getvalue()


def get(images: Path, data: Path, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        app = create_app(Settings(images=str(images), data=str(data)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(go())


def smooth(height: int, width: int, channels: int = 3, *, dtype: str = "uint8", seed: int = 0):
    """A smooth, photo-like test image (gradients, blobs, mild noise) as a numpy array."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy = rng.uniform(1, 4, 2)
        plane = 0.5 + 0.25 * np.sin(xx / width * fx * np.pi + c) * np.cos(yy / height * fy * np.pi)
        plane += 0.2 * xx / width + rng.normal(0, 0.01, (height, width))
        planes.append(plane)
    top = 255 if dtype == "uint8" else 65535
    array = np.clip(np.stack(planes, axis=-1) * top, 0, top).astype(dtype)
    return array if channels > 1 else array[..., 0]


def level0(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[0].asarray()


def catalogue_ids(data: Path) -> list[str]:
    db = sqlite3.connect(data / "catalogue.sqlite3")
    try:
        return [r[0] for r in db.execute("SELECT id FROM objects ORDER BY id")]
    finally:
        db.close()
