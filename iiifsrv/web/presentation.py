"""Presentation API routes: manifests (GET, registration by POST/PUT/DELETE), collections and
the Change Discovery stream, with the JSON-LD content type, CORS, ETag/304 and gzip.

HTTP layer: imports Starlette, conditional, errors, respond and iiifsrv.presentation.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from typing import Any

import anyio
from cachetools import LRUCache
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iiifsrv.conditional import CORS_HEADERS, PREFLIGHT_HEADERS, not_modified, strong_etag
from iiifsrv.errors import BadRequest, PayloadTooLarge
from iiifsrv.jsonbody import parse_json
from iiifsrv.presentation.activity import DISCOVERY_CONTEXT
from iiifsrv.presentation.auth import User
from iiifsrv.presentation.builder import CONTEXT, manifest_url
from iiifsrv.presentation.collections import GROUPS
from iiifsrv.presentation.service import Invalid, Presentation
from iiifsrv.presentation.store import publish_json
from iiifsrv.web.auth import Access, declare_probes
from iiifsrv.web.credentials import Credentials
from iiifsrv.web.respond import base_url

PRESENTATION_TYPE = f'application/ld+json;profile="{CONTEXT}"'
DISCOVERY_TYPE = f'application/ld+json;profile="{DISCOVERY_CONTEXT}"'
# Manifest uploads parsed and validated at once: schema validation is CPU work, and a few
# large uploads must not take every worker thread.
VALIDATIONS = 2
GZIP_MIN = 1024
CACHE_CONTROL = "public, max-age=60"


class JSONLD:
    """Renders stored or built JSON-LD: ETag/304, HEAD, gzip on request, CORS."""

    def __init__(self) -> None:
        self._gzipped: LRUCache[str, bytes] = LRUCache(maxsize=256)

    def respond(self, request: Request, body: bytes, content_type: str) -> Response:
        etag = strong_etag(body)
        accepts_gzip = "gzip" in (request.headers.get("accept-encoding") or "").lower()
        compress = accepts_gzip and len(body) >= GZIP_MIN
        if compress:
            etag = etag[:-1] + '-gzip"'
        headers = {
            "Content-Type": content_type,
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
            **CORS_HEADERS,
        }
        if not_modified(etag, 0, request.headers.get("if-none-match"), None):
            return Response(status_code=304, headers=headers)
        if compress:
            packed = self._gzipped.get(etag)
            if packed is None:
                packed = gzip.compress(body, compresslevel=6, mtime=0)
                self._gzipped[etag] = packed
            body = packed
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers)
        return Response(body, status_code=200, headers=headers)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"a manifest may have at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a manifest may have at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def routes(
    presentation: Presentation,
    credentials: Credentials | None = None,
    access: Access | None = None,
) -> list[BaseRoute]:
    """The Presentation routes; ids use settings.public_url or the request's host."""
    settings = presentation.settings
    credentials = credentials or Credentials(settings)
    render = JSONLD()

    def base(request: Request) -> str:
        return base_url(request.scope, settings.public_url)

    def user_of(request: Request) -> User:
        return credentials.authenticate(request.scope)

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    validating = anyio.CapacityLimiter(VALIDATIONS)

    async def upload(request: Request, manifest_id: str | None, *, replace: bool) -> Any:
        """Read, parse and register an upload: parsing and validation run in a thread, at most
        VALIDATIONS at once."""
        user = user_of(request)
        if_match = request.headers.get("if-match") if replace else None
        body = await _read_body(request, settings.manifest_max_bytes)

        def work() -> Any:
            doc = parse_json(body)
            return presentation.register(
                base(request), user, doc, manifest_id, replace=replace, if_match=if_match
            )

        return await anyio.to_thread.run_sync(work, limiter=validating)

    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers=PREFLIGHT_HEADERS)

    async def get_manifest(request: Request) -> Response:
        manifest_id = request.path_params["manifest_id"]
        body = publish_json(await run(presentation.manifest, manifest_id), base(request))
        if access is not None:  # protected images declare their Auth 2.0 probe here too
            body = declare_probes(access, body, base(request))
        return render.respond(request, body, PRESENTATION_TYPE)

    async def written(request: Request, manifest_id: str, created: bool) -> Response:
        body = publish_json(await run(presentation.manifest, manifest_id), base(request))
        headers = {
            "Content-Type": PRESENTATION_TYPE,
            "Location": manifest_url(base(request), manifest_id),
            "ETag": strong_etag(body),
            **CORS_HEADERS,
        }
        return Response(body, status_code=201 if created else 200, headers=headers)

    def invalid(exc: Invalid) -> Response:
        return JSONResponse(exc.problems, status_code=400, headers=CORS_HEADERS)

    async def post_manifest(request: Request) -> Response:
        slug = request.headers.get("slug")
        try:
            record, created = await upload(request, slug or None, replace=False)
        except Invalid as exc:
            return invalid(exc)
        return await written(request, record.id, created)

    async def put_manifest(request: Request) -> Response:
        manifest_id = request.path_params["manifest_id"]
        try:
            record, created = await upload(request, manifest_id, replace=True)
        except Invalid as exc:
            return invalid(exc)
        return await written(request, record.id, created)

    async def delete_manifest(request: Request) -> Response:
        user = user_of(request)
        manifest_id, if_match = request.path_params["manifest_id"], request.headers.get("if-match")
        await run(presentation.remove, user, manifest_id, base(request), if_match)
        return Response(status_code=204, headers=CORS_HEADERS)

    async def manifest_dispatch(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return await get_manifest(request)
        if request.method == "PUT":
            return await put_manifest(request)
        if request.method == "DELETE":
            return await delete_manifest(request)
        return await preflight(request)

    def page_of(request: Request) -> int:
        raw = request.query_params.get("page", "0")
        if not re.fullmatch(r"\d{1,9}", raw):
            raise BadRequest("page must be a non-negative integer")
        return int(raw)

    async def collection(request: Request) -> Response:
        group = request.path_params.get("group", "")
        name = request.path_params.get("name", "")
        if group and group not in GROUPS:
            return Response("not found\n", status_code=404, headers=CORS_HEADERS)
        doc = await run(presentation.collection, base(request), group, name, page_of(request))
        return render.respond(request, _dumps(doc), PRESENTATION_TYPE)

    async def stream(request: Request) -> Response:
        doc = await run(presentation.activity_stream, base(request))
        return render.respond(request, _dumps(doc), DISCOVERY_TYPE)

    async def stream_page(request: Request) -> Response:
        doc = await run(presentation.activity_page, base(request), request.path_params["number"])
        return render.respond(request, _dumps(doc), DISCOVERY_TYPE)

    read = ["GET", "HEAD", "OPTIONS"]
    return [
        Route("/iiif/manifests", post_manifest, methods=["POST"]),
        Route("/iiif/manifests", preflight, methods=["OPTIONS"]),
        Route(
            "/iiif/manifests/{manifest_id:path}",
            manifest_dispatch,
            methods=["GET", "HEAD", "PUT", "DELETE", "OPTIONS"],
        ),
        Route("/iiif/collection", _get_only(collection, preflight), methods=read),
        Route("/iiif/collection/{group}/{name}", _get_only(collection, preflight), methods=read),
        Route("/iiif/activity", _get_only(stream, preflight), methods=read),
        Route("/iiif/activity/page/{number:int}", _get_only(stream_page, preflight), methods=read),
    ]


Endpoint = Callable[[Request], Any]


def _get_only(endpoint: Endpoint, preflight: Endpoint) -> Endpoint:
    async def handler(request: Request) -> Response:
        if request.method == "OPTIONS":
            result: Response = await preflight(request)
        else:
            result = await endpoint(request)
        return result

    return handler
