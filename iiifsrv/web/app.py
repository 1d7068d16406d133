"""The ASGI application: create_app(settings) wires routes, the error map and CORS.

HTTP layer (the only one importing Starlette, with its siblings in web/). Imports service,
settings, errors; reads no environment except in ``app_from_env`` (the worker entry point).
"""

from __future__ import annotations

import html
import os
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from iiifsrv import __version__, imaging
from iiifsrv.conditional import CORS_HEADERS, PREFLIGHT_HEADERS
from iiifsrv.errors import IIIFError
from iiifsrv.service import ImageService
from iiifsrv.settings import Settings, load
from iiifsrv.web.image_api import ImageAPI


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, IIIFError):
        status, message, extra = exc.status, exc.message, exc.headers
    elif isinstance(exc, HTTPException):
        status, message, extra = exc.status_code, str(exc.detail), dict(exc.headers or {})
    else:
        status, message, extra = 500, "internal error", {}
    return PlainTextResponse(message + "\n", status_code=status, headers={**CORS_HEADERS, **extra})


def create_app(settings: Settings) -> Starlette:
    imaging.configure(settings.vips_cache_mb)
    service = ImageService(settings)

    async def health(request: Request) -> Response:
        ok = os.path.isdir(settings.images_path) and os.access(settings.images_path, os.R_OK)
        body = {"status": "ok" if ok else "unavailable", "version": __version__}
        return JSONResponse(body, status_code=200 if ok else 503, headers=CORS_HEADERS)

    async def landing(request: Request) -> Response:
        names = service.resolver.list_images(limit=500)
        base = settings.public_url or str(request.base_url).rstrip("/")
        rows = []
        for name in names:
            ident = quote(name, safe="")
            rows.append(
                f"<li><strong>{html.escape(name)}</strong> — "
                f'<a href="{base}/iiif/3/{ident}/info.json">info.json (3.0)</a> · '
                f'<a href="{base}/iiif/2/{ident}/info.json">info.json (2.1)</a> · '
                f'<a href="{base}/iiif/3/{ident}/full/!400,400/0/default.jpg">view</a></li>'
            )
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            "<title>iiifsrv</title><style>body{font:16px system-ui;margin:2em;max-width:60em}"
            "li{margin:.4em 0}</style><h1>iiifsrv</h1>"
            f"<p>{len(names)} image(s) under the image root.</p><ul>{''.join(rows)}</ul>"
            f"<p><small>iiifsrv {__version__}</small></p></html>"
        )
        return HTMLResponse(page, headers=CORS_HEADERS)

    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers=PREFLIGHT_HEADERS)

    routes = [
        Route("/", landing, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Mount("/iiif/3", app=ImageAPI(service, 3, "/iiif/3")),
        Mount("/iiif/2", app=ImageAPI(service, 2, "/iiif/2")),
    ]
    # --- annotations (issue 6): /annotations, /annotot, /sas -------------------------------
    from iiifsrv.annotations.store import open_store
    from iiifsrv.web.annotations import routes as annotation_routes

    annotation_store = open_store(settings)
    routes += annotation_routes(settings, store=annotation_store)
    # --- end annotations -------------------------------------------------------------------
    routes.append(Route("/{path:path}", preflight, methods=["OPTIONS"]))
    app = Starlette(
        routes=routes,
        exception_handlers={Exception: _error, HTTPException: _error, IIIFError: _error},
    )
    app.state.service = service
    app.state.settings = settings
    app.state.annotation_store = annotation_store  # annotations (issue 6): closed by the owner
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings come from IIIFSRV_* set by ``iiifsrv serve``."""
    return create_app(load(environ=os.environ))
