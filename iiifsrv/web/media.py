"""Audio and video delivery under /media/{path}: byte ranges (206, 416), ETag/304, CORS, and a
poster frame for video at /media/{path}/poster.jpg. The files are under the image root, a
folder or an S3 bucket (media.MediaFiles): from S3 the bytes come in ranged GETs of at most
REMOTE_CHUNK, each of the version the headers describe.

HTTP layer: imports Starlette, anyio, conditional, errors, media and settings.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from iiifsrv.access.rules import Resource
from iiifsrv.conditional import (
    CORS_HEADERS,
    PREFLIGHT_HEADERS,
    http_date,
    if_match_fails,
    not_modified,
    strong_etag,
)
from iiifsrv.errors import NotFound, RangeNotSatisfiable
from iiifsrv.media import MediaFiles, MediaObject, media_type
from iiifsrv.settings import Settings
from iiifsrv.web.auth import Access, protect

CHUNK = 256 * 1024
REMOTE_CHUNK = 1024 * 1024  # one ranged GET: a viewer's typical range, few GETs per MB
POSTER = "/poster.jpg"
# ASCII digits, at most 19 (an int64): longer positions are ignored like any malformed range.
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as inclusive (first, last), or None to send the whole file.

    Multiple ranges and malformed headers are ignored (the whole file is sent, as RFC 9110
    allows); a syntactically valid range wholly past the end raises RangeNotSatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    unsatisfiable = RangeNotSatisfiable(
        f"range not satisfiable: the file has {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if not first_text:  # suffix: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise unsatisfiable
    return first, min(last, size - 1)


async def _remote_chunks(
    files: MediaFiles, obj: MediaObject, first: int, length: int
) -> AsyncIterator[bytes]:
    position, end = first, first + length
    while position < end:
        data = await anyio.to_thread.run_sync(
            files.read, obj, position, min(REMOTE_CHUNK, end - position)
        )
        if not data:
            break
        position += len(data)
        yield data


async def _chunks(path: Path, first: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as fh:
        await fh.seek(first)
        remaining = length
        while remaining > 0:
            data = await fh.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


def routes(
    settings: Settings, access: Access | None = None, files: MediaFiles | None = None
) -> list[BaseRoute]:
    files = files or MediaFiles(settings.images_path, settings.data_path / "posters")

    async def media(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=PREFLIGHT_HEADERS)
        path = request.path_params["path"]
        if path.endswith(POSTER):
            return await poster(request, path[: -len(POSTER)])
        obj = await anyio.to_thread.run_sync(files.find, path)
        decision = access.require(request.scope, Resource(path)) if access else None
        size = obj.size
        etag = strong_etag(obj.file or f"s3:{obj.path}", obj.tag, size)
        headers = {
            "Content-Type": media_type(obj.path),
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": http_date(obj.mtime),
            "Cache-Control": settings.cache_control,
            **CORS_HEADERS,
        }
        if decision is not None:
            protect(decision, headers)
            if decision.protected:
                etag = headers["ETag"] = strong_etag(etag, decision.key)
        if not_modified(
            etag,
            obj.mtime,
            request.headers.get("if-none-match"),
            request.headers.get("if-modified-since"),
        ):
            return Response(status_code=304, headers=headers)
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if wanted and if_range is not None and if_match_fails(etag, if_range):
            wanted = None  # the client's copy is stale: send the whole new file
        try:
            span = parse_range(wanted, size)
        except RangeNotSatisfiable as exc:
            return Response(
                exc.message + "\n",
                status_code=416,
                headers={**CORS_HEADERS, **exc.headers, "Accept-Ranges": "bytes"},
            )
        first, last = span if span else (0, size - 1)
        length = max(0, last - first + 1)
        headers["Content-Length"] = str(length)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        if request.method == "HEAD" or length == 0:
            return Response(status_code=status, headers=headers)
        body = (
            _chunks(obj.file, first, length)
            if obj.file is not None
            else _remote_chunks(files, obj, first, length)
        )
        return StreamingResponse(body, status_code=status, headers=headers)

    async def poster(request: Request, path: str) -> Response:
        obj = await anyio.to_thread.run_sync(files.find, path)
        decision = access.require(request.scope, Resource(path)) if access else None
        if not media_type(obj.path).startswith("video/"):
            raise NotFound("only video files have a poster image")
        image = await anyio.to_thread.run_sync(files.poster, obj)
        headers = {"Cache-Control": settings.cache_control, **CORS_HEADERS}
        if decision is not None:
            protect(decision, headers)
        return FileResponse(image, media_type="image/jpeg", headers=headers)

    return [Route("/media/{path:path}", media, methods=["GET", "HEAD", "OPTIONS"])]
