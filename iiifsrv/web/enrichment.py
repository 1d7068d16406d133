"""Machine enrichment on the web: the project's JSON-LD context (``/ns/iiifsrv.jsonld``), the
agents' URIs (``/users/<name>``, ``/agents/<name>``) and an object's OCR files (``/ocr/…``).

HTTP layer: imports Starlette, annotations.{store,urls}, agents.outputs, conditional, errors,
settings, tokens and web.respond. Read-only; no engine runs here.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iiifsrv.agents import outputs
from iiifsrv.annotations.store import Scope, Store
from iiifsrv.annotations.urls import CONTEXT_PATH, Urls
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import NotFound
from iiifsrv.settings import Settings
from iiifsrv.tokens import parse_tokens
from iiifsrv.web.respond import base_url

JSONLD = "application/ld+json"


def context_document(base: str) -> dict[str, Any]:
    """The terms the project adds to W3C annotations (annotation-vocab §4: new keys only)."""
    ns = f"{base}/ns/iiifsrv#"
    return {
        "@context": {
            "iiifsrv": ns,
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "confidence": {"@id": "iiifsrv:confidence", "@type": "xsd:decimal"},
            "wordConfidence": {
                "@id": "iiifsrv:wordConfidence",
                "@type": "xsd:decimal",
                "@container": "@list",
            },
            "softwareVersion": {"@id": "https://schema.org/softwareVersion"},
            "provenance": {"@id": "iiifsrv:provenance"},
        }
    }


def _json(doc: dict[str, Any], media_type: str = JSONLD) -> Response:
    body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    headers = {**CORS_HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(body, headers=headers, media_type=media_type)


def routes(settings: Settings, store: Store | None = None) -> list[BaseRoute]:
    """``store``: where the writers of earlier annotations are found (a token since removed)."""
    writers = {(u.kind, u.name) for u in parse_tokens(settings.tokens).values()}
    writers.add(("Software", settings.ocr_agent))  # the built-in OCR agent (enrich ocr)

    async def known(kind: str, name: str) -> bool:
        if (kind, name) in writers:
            return True
        return store is not None and bool(await store.search(Scope("all"), [], ((kind, name),), 1))

    async def context(request: Request) -> Response:
        return _json(context_document(base_url(request.scope, settings.public_url)))

    def agent(kind: str):  # type: ignore[no-untyped-def]
        async def show(request: Request) -> Response:
            name = request.path_params["name"]
            if not await known(kind, name):
                raise NotFound(f"no {'agent' if kind == 'Software' else 'user'} {name!r}")
            urls = Urls(base_url(request.scope, settings.public_url))
            return _json({"@context": "http://www.w3.org/ns/anno.jsonld",
                          "id": urls.agent(kind, name), "type": kind, "name": name})  # fmt: skip

        return show

    async def ocr_file(request: Request) -> Response:
        object_id, name = request.path_params["object"], request.path_params["name"]
        if name not in outputs.FILES or not outputs.safe_object(object_id):
            raise NotFound("no such OCR file")
        path = outputs.ocr_folder(settings.data_path, object_id) / name
        try:
            body = await anyio.Path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no OCR file {name} for {object_id!r}") from None
        headers = {**CORS_HEADERS, "Cache-Control": "no-cache"}
        media = outputs.FILES[name] + ("; charset=utf-8" if "hocr" in name else "")
        return Response(body, headers=headers, media_type=media)

    return [
        Route(CONTEXT_PATH, context, methods=["GET", "HEAD"]),
        Route("/agents/{name}", agent("Software"), methods=["GET", "HEAD"]),
        Route("/users/{name}", agent("Person"), methods=["GET", "HEAD"]),
        Route(outputs.OCR_PATH + "/{object}/{name}", ocr_file, methods=["GET", "HEAD"]),
    ]
