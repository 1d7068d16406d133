"""GET /annotations/semantic/{manifest}?q= (and /annotations/semantic?q= over every annotation):
annotations found by meaning, answered as a IIIF Content Search 2.0 AnnotationPage (paged like
the word search), so a viewer that calls a SearchService2 can call it unchanged.

HTTP layer; imports Starlette, annotations.{search,identity,store,urls}, semantic (engine,
encoder, vectors), errors and settings. ``build()`` wires the engine; ``routes()`` the endpoint.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope as AsgiScope

from iiifsrv.annotations import search
from iiifsrv.annotations.identity import present
from iiifsrv.annotations.model import Record
from iiifsrv.annotations.store import Scope, Store
from iiifsrv.annotations.urls import SEMANTIC_PREFIX, Urls, decode_uri
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import BadRequest, IIIFError, NotFound
from iiifsrv.semantic import encoder
from iiifsrv.semantic.engine import Semantic
from iiifsrv.semantic.vectors import open_vectors
from iiifsrv.settings import Settings
from iiifsrv.web.respond import base_url

MAX_QUERY = 1000  # characters of q
SUPPORTED = ("q",)

ManifestCanvases = Callable[[str], Awaitable[list[str] | None]]
Localise = Callable[[str], Awaitable[str | None]]
Visible = Callable[[AsgiScope, list[Record]], Awaitable[list[Record]]]
Hidden = Callable[[AsgiScope, set[str]], Awaitable[set[str]]]


class NotInstalled(IIIFError):
    status = 501


def enabled(settings: Settings) -> bool:
    """Semantic search is on: the setting allows it and the [semantic] extra is installed."""
    return settings.semantic_search and encoder.available()


def build(settings: Settings, store: Store) -> Semantic | None:
    """The engine over the annotation store (None when semantic search is off)."""
    if not enabled(settings):
        return None
    return Semantic(store, open_vectors(settings), encoder.shared, encoder.DIMENSION)


def routes(
    settings: Settings,
    semantic: Semantic | None,
    *,
    localise: Localise | None = None,
    manifest_canvases: ManifestCanvases | None = None,
    visible: Visible | None = None,
    hidden: Hidden | None = None,
) -> list[BaseRoute]:
    """Mount before /annotations (which would otherwise take the path). ``hidden`` names the
    canvases the reader may not see, whose hits are left out before counting and paging, and
    ``visible`` keeps the hits the reader may see (web/visibility.py), with or without a
    manifest."""

    async def scope_of(request: Request, urls: Urls) -> tuple[Scope, str]:
        segment = request.path_params.get("manifest", "")
        if not segment:
            return Scope("all"), ""
        uri = decode_uri(segment)
        if uri is None:
            raise NotFound("not a manifest of this server")
        key = urls.key(uri)
        if key.startswith(("http://", "https://")) and localise is not None:
            key = await localise(key) or key
        canvases = await manifest_canvases(key) if manifest_canvases is not None else None
        if canvases is not None:
            return Scope("manifest", key, tuple(canvases)), key
        if settings.annotation_canvases == "known":
            raise NotFound(f"no manifest {urls.public(key)} on this server")
        return Scope("manifest", key), key

    async def endpoint(request: Request) -> Response:
        if semantic is None:
            raise NotInstalled(
                "semantic search is off here (setting semantic_search; pip install "
                "'iiifsrv[semantic]')"
            )
        urls = Urls(base_url(request.scope, settings.public_url))
        q = request.query_params.get("q", "").strip()
        if not q:
            raise BadRequest("q is required: the text to search for by meaning")
        if len(q) > MAX_QUERY:
            raise BadRequest(f"q is longer than {MAX_QUERY} characters")
        raw_page = request.query_params.get("page", "0")
        if not re.fullmatch(r"[0-9]{1,9}", raw_page):
            raise BadRequest("page must be a number from 0")
        n = int(raw_page)
        ignored = sorted(k for k in request.query_params if k not in SUPPORTED and k != "page")
        scope, key = await scope_of(request, urls)
        size = settings.annotation_page_size
        hide = functools.partial(hidden, request.scope) if hidden is not None else None
        result = await semantic.search(q, scope, n * size, size, hide)
        if n > 0 and n * size >= result.total:
            raise NotFound("no such page of results")
        records: list[Record] = []
        for hit in result.hits:
            rec = await semantic.store.get(hit.key)
            if rec is not None and not rec.deleted:
                records.append(rec)
        if visible is not None:
            records = await visible(request.scope, records)
        service_url = urls.semantic(key)
        query = {k: v for k, v in request.query_params.items() if k != "page"}

        def page_url(k: int | None) -> str:
            params = query if k is None else {**query, "page": str(k)}
            return f"{service_url}?{urlencode(params)}" if params else service_url

        paging = search.Paging(
            collection=page_url(None),
            first=page_url(0),
            last=page_url(max(0, (result.total - 1) // size)),
            next=page_url(n + 1) if (n + 1) * size < result.total else "",
            prev=page_url(n - 1) if n > 0 else "",
            start=n * size,
            total=result.total,
        )
        url = page_url(n) if n else page_url(None)

        def respond() -> dict[str, Any]:
            shown = [present(r, urls) for r in records]
            return search.search2(url, urls.base, shown, search.query_words(q), ignored, paging)

        body = await anyio.to_thread.run_sync(respond)
        return JSONResponse(
            body,
            headers={**CORS_HEADERS, "Cache-Control": "no-cache"},
            media_type="application/ld+json",
        )

    return [
        Route(SEMANTIC_PREFIX, endpoint, methods=["GET", "HEAD"]),
        Route(SEMANTIC_PREFIX + "/{manifest}", endpoint, methods=["GET", "HEAD"]),
    ]
