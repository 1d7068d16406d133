"""The physical floor of a stored-tile request on this stack: a bare ASGI app (and the same as a
minimal Starlette route) that answers an Image API tile URL of one JPEG TIFF with one
``os.pread`` of the stored tile, the JPEGTables spliced in, and the headers iiifsrv sends. No
parsing beyond x,y, no planning, no access decision, no metrics, no cache.

Run by loadtests/request_cpu.py through uvicorn with uvloop + httptools, exactly as iiifsrv
serve runs (``FLOOR_TIFF`` names the file; ``FLOOR_KIND=starlette`` for the Starlette variant).
"""

from __future__ import annotations

import os
from typing import Any

import tifffile

TIFF = os.environ.get("FLOOR_TIFF", "/tmp/iiifbench/images/bench_jpeg.tif")

with tifffile.TiffFile(TIFF) as _tif:
    _page = _tif.series[0].levels[0].keyframe
    ACROSS = -(-_page.imagewidth // _page.tilewidth)
    TILE = int(_page.tilewidth)
    OFFSETS = [int(o) for o in _page.dataoffsets]
    COUNTS = [int(c) for c in _page.databytecounts]
    HEADER = bytes(_page.jpegtables)[:-2]

FD = os.open(TIFF, os.O_RDONLY)
CONSTANT = [
    (b"content-type", b"image/jpeg"),
    (b"cache-control", b"public, max-age=31536000"),
    (b"x-content-type-options", b"nosniff"),
    (b"access-control-allow-origin", b"*"),
]


def tile_bytes(path: str) -> bytes:
    region = path.split("/")[-4]
    x, y = region.split(",")[:2]
    index = (int(y) // TILE) * ACROSS + int(x) // TILE
    return HEADER + os.pread(FD, COUNTS[index], OFFSETS[index])[2:]


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = tile_bytes(scope["path"])
    headers = [*CONSTANT, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def tile(request: Request) -> Response:
        return Response(
            tile_bytes(request.url.path),
            media_type="image/jpeg",
            headers={k.decode(): v.decode() for k, v in CONSTANT[1:]},
        )

    return Starlette(routes=[Route("/iiif/3/{rest:path}", tile)])


app = _starlette() if os.environ.get("FLOOR_KIND") == "starlette" else raw

