"""The ASGI application: create_app(settings) wires routes, the error map and CORS.

HTTP layer (the only one importing Starlette, with its siblings in web/). Imports service,
settings, errors; reads no environment except in ``app_from_env`` (the worker entry point).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from iiifsrv import imaging, telemetry
from iiifsrv.access.revocations import Revocations
from iiifsrv.agents.outputs import canvas_links
from iiifsrv.annotations import annotation_page_ref, search_services
from iiifsrv.annotations.store import open_store
from iiifsrv.annotations.urls import search_services_with_semantic
from iiifsrv.caches.memory import ByteLRU
from iiifsrv.conditional import CORS_HEADERS, NOSNIFF, PREFLIGHT_HEADERS
from iiifsrv.errors import IIIFError
from iiifsrv.lifecycle import DRAIN
from iiifsrv.media import MediaFiles
from iiifsrv.presentation.builder import Hooks
from iiifsrv.presentation.service import Presentation
from iiifsrv.service import ImageService
from iiifsrv.settings import Settings, load
from iiifsrv.state import open_state
from iiifsrv.web import media as media_routes
from iiifsrv.web import metrics as metrics_routes
from iiifsrv.web import objects, semantic, spectra
from iiifsrv.web import presentation as presentation_routes
from iiifsrv.web.access_log import access_log, json_line
from iiifsrv.web.annotations import routes as annotation_routes
from iiifsrv.web.auth import Access, AnnotationGuard
from iiifsrv.web.credentials import Credentials
from iiifsrv.web.edge import credentialed
from iiifsrv.web.enrichment import routes as enrichment_routes
from iiifsrv.web.image_api import Hot, ImageAPI
from iiifsrv.web.respond import BASE_KEY, error_response, request_base
from iiifsrv.web.viewers import routes as viewer_routes
from iiifsrv.web.visibility import Visibility


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, IIIFError):
        status, message, extra = exc.status, exc.message, exc.headers
    elif isinstance(exc, HTTPException):
        status, message, extra = exc.status_code, str(exc.detail), dict(exc.headers or {})
    else:
        status, message, extra = 500, "internal error", {}
    return PlainTextResponse(message + "\n", status_code=status, headers={**CORS_HEADERS, **extra})


_NOSNIFF = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in NOSNIFF.items()]


class Front:
    """The ASGI entry: computes the request's base URL once (several Host headers → 400);
    Image API requests go straight to their handler (no middleware or routing on the hot
    path); everything else to the Starlette app, with nosniff added where a response lacks
    it. Every response is counted (web/metrics.py), its Cache-Control corrected for shared
    caches (web/edge.py) and, with ``access_log = "json"``, logged. ``state`` is the app's."""

    def __init__(
        self,
        app: Starlette,
        image_apis: dict[str, ImageAPI],
        public_url: str,
        json_access_log: bool = False,
    ) -> None:
        self.app = app
        self.state = app.state
        self.image_apis = image_apis
        self.public_url = public_url
        self.json_access_log = json_access_log
        self.recorder = metrics_routes.Recorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        route = metrics_routes.route_class(path)
        exchange = metrics_routes.Exchange(send, credentialed(scope), route[:5] != "image")
        try:
            await self._serve(scope, receive, exchange, path, send)
        finally:
            seconds = time.perf_counter() - start
            self.recorder.record(route, exchange.status, seconds, exchange.sent)
            if self.json_access_log:
                access_log.info(
                    json_line(scope, route, exchange.status, exchange.sent, seconds, time.time())
                )

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: metrics_routes.Exchange,
        path: str,
        raw_send: Send,
    ) -> None:
        try:
            base = scope[BASE_KEY] = request_base(scope, self.public_url)
        except IIIFError as exc:
            await error_response(send, exc, head=scope["method"] == "HEAD")
            return
        if path.startswith("/iiif/") and len(path) > 8 and path[7] == "/":
            api = self.image_apis.get(path[:7])
            if api is not None:
                method = scope["method"]
                if not send.credentials and (method == "GET" or method == "HEAD"):
                    # The replay: a complete stored response, sent as it is (2xx/304 without
                    # credentials: nothing for web/edge.py to correct, so ``send`` unwrapped).
                    hit = api.replay(scope, base)
                    if hit is not None:
                        status, headers, body = hit
                        send.status, send.sent = status, len(body)
                        await raw_send(
                            {"type": "http.response.start", "status": status, "headers": headers}
                        )
                        await raw_send({"type": "http.response.body", "body": body})
                        return
                await api(scope, receive, send)  # its constant headers include nosniff
                return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    message = {**message, "headers": headers + _NOSNIFF}
            await send(message)

        await self.app(scope, receive, send_nosniff)


def create_app(settings: Settings) -> Front:
    imaging.configure(settings.vips_cache_mb)
    # -- state: one catalogue and one manifest store (SQLite and files, or PostgreSQL through
    #    one pool), opened on first use and shared by every service below --
    state = open_state(settings)
    service = ImageService(settings, state.catalogue)

    async def health(request: Request) -> Response:
        """200 when the images can be read; 503 while draining after SIGTERM (so a load
        balancer takes this replica out before it stops accepting) or when they cannot."""
        headers = {**CORS_HEADERS, "Cache-Control": "no-store"}
        if DRAIN.draining:
            return JSONResponse({"status": "draining"}, status_code=503, headers=headers)
        problem = await service.root_problem()  # an S3 root: probed at most every 2 s
        body = {"status": "unavailable", "images": problem} if problem else {"status": "ok"}
        return JSONResponse(body, status_code=503 if problem else 200, headers=headers)

    async def live(request: Request) -> Response:
        """200 while the worker answers at all (also while draining): a liveness probe that a
        storage outage or a rolling restart does not turn into a restart loop."""
        headers = {**CORS_HEADERS, "Cache-Control": "no-store"}
        return JSONResponse({"status": "alive"}, headers=headers)

    async def fallback(request: Request) -> Response:
        """CORS preflight for any path; a plain 404 for anything else no route serves."""
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=PREFLIGHT_HEADERS)
        return PlainTextResponse("not found\n", status_code=404, headers=CORS_HEADERS)

    # -- one authenticator for every write (Bearer, path token, session cookie), the viewer
    #    sign-in at /session, and access control (rules, IIIF Auth 2.0 and 1.0) over it --
    revocations = Revocations(settings.data_path, state.database, settings.session_revocation_check)
    credentials = Credentials(settings, revocations=revocations)
    access = Access(settings, credentials)
    hot: ByteLRU[Hot] = ByteLRU(settings.cache_bytes, settings.cache_max_item)
    image_apis = {
        "/iiif/3": ImageAPI(service, 3, "/iiif/3", hot, access),
        "/iiif/2": ImageAPI(service, 2, "/iiif/2", hot, access),
    }
    routes = [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/health/live", live, methods=["GET", "HEAD"]),
        Mount("/iiif/3", app=image_apis["/iiif/3"]),
        Mount("/iiif/2", app=image_apis["/iiif/2"]),
        # -- ingest: catalogue JSON and the spectral service --
        *objects.routes(service, access),
        *spectra.routes(service, access),
    ]
    # -- Presentation API 3, change discovery and A/V media; manifests reference each
    #    canvas's annotation page and declare the content search services --
    #    (plus the semantic variant of Content Search 2.0 when the [semantic] extra is on) --
    semantic_on = semantic.enabled(settings)
    # A/V files under the image root (a folder or the S3 root's bucket): /media and durations
    media_files = MediaFiles(
        settings.images_path,
        settings.data_path / "posters",
        service.remote.storage if service.remote is not None else None,
    )
    presentation = Presentation(
        settings,
        Hooks(
            annotation_page_ref=annotation_page_ref,
            search_services=search_services_with_semantic if semantic_on else search_services,
            search_variant="semantic" if semantic_on else "",
            canvas_links=functools.partial(canvas_links, settings.data_path),
        ),
        catalogue=state.catalogue,
        store=state.manifests,
        probe=media_files.probe_path,
    )

    async def canvas_known(uri: str) -> bool:
        return await anyio.to_thread.run_sync(presentation.canvas_known, uri)

    async def localise(uri: str) -> str | None:
        return await anyio.to_thread.run_sync(presentation.local_key, uri)

    async def manifest_canvases(key: str) -> list[str] | None:
        return await anyio.to_thread.run_sync(presentation.manifest_canvases, key)

    def manifest_objects(manifest_id: str) -> tuple[str, ...]:
        """The catalogue objects a manifest shows (blocking): what access control decides on."""
        presentation.sync()
        record = presentation.store.get(manifest_id)
        return record.objects if record is not None else ()

    # -- annotations: /annotations (W3C), /annotot and /sas (Mirador editor), search; targets
    #    must be canvases of this server's manifests unless annotation_canvases = "any" --
    annotation_store = open_store(settings)
    routes += credentials.routes()
    routes += access.routes()
    # -- semantic search: embeddings computed in the background after each write; its path
    #    lies under /annotations, so it comes first --
    semantic_search = semantic.build(settings, annotation_store)
    visibility = Visibility(access, manifest_objects)
    semantic_routes = semantic.routes(
        settings,
        semantic_search,
        localise=localise,
        manifest_canvases=manifest_canvases,
        visible=visibility.records,  # hits on canvases one may see
        hidden=visibility.hidden,  # left out before totals and pages
    )
    for route in semantic_routes:  # a manifest's search refused when it is restricted
        if isinstance(route, Route):
            route.app = AnnotationGuard(route.app, access, manifest_objects)
    routes += semantic_routes
    routes += annotation_routes(
        settings,
        store=annotation_store,
        on_write=semantic_search.notify if semantic_search is not None else None,
        canvas_known=canvas_known if settings.annotation_canvases == "known" else None,
        localise=localise,
        manifest_canvases=manifest_canvases,
        credentials=credentials,
        access=access,
        objects_of=manifest_objects,
    )
    routes += presentation_routes.routes(presentation, credentials, access)
    # -- machine enrichment: the JSON-LD context, agents' URIs, OCR files (ALTO, hOCR) --
    routes += enrichment_routes(settings, annotation_store)
    routes += media_routes.routes(settings, access, media_files)
    # -- Prometheus metrics of every worker (multiprocess mode under several workers) --
    tiers: dict[str, metrics_routes.Counted] = {"hot": hot, "response": service.responses}
    shared = service.shared
    if shared is not None:  # Redis: hits include waiting for another replica's render
        tiers["shared"] = shared.stats
    sampler = metrics_routes.Sampler(
        tiers,
        pools=[
            ("annotations", _pool_stats(annotation_store)),
            ("state", _pool_stats(state.database)),
        ],
        s3=service.remote.storage.counters.snapshot if service.remote is not None else None,
        shared=(lambda: dataclasses.asdict(shared.stats)) if shared is not None else None,
    )
    if settings.metrics:
        routes += metrics_routes.routes(sampler)
    # -- viewers: the landing page (/), Mirador and Universal Viewer pages, static assets --
    routes += viewer_routes(presentation, service, access)
    # -- everything else: CORS preflight or 404 (keep last) --
    routes.append(
        Route(
            "/{path:path}",
            fallback,
            methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"],
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # SIGTERM: /health turns 503 for shutdown_drain seconds, then uvicorn stops accepting
        restore = DRAIN.install(settings.shutdown_drain)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(sampler.run)
                yield
                tasks.cancel_scope.cancel()
        finally:
            restore()
            telemetry.worker_exit(os.getpid())
            if semantic_search is not None:
                await semantic_search.close()
            await annotation_store.close()
            await service.close()
            await anyio.to_thread.run_sync(state.close)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Exception: _error, HTTPException: _error, IIIFError: _error},
    )
    app.state.service = service
    app.state.settings = settings
    app.state.presentation = presentation
    app.state.annotation_store = annotation_store
    app.state.semantic = semantic_search
    app.state.state = state
    return Front(app, image_apis, settings.public_url, settings.access_log == "json")


def _pool_stats(store: object) -> Callable[[], dict[str, int] | None]:
    """A PostgreSQL store's pool figures (size, idle, waiting), None for SQLite."""

    def stats() -> dict[str, int] | None:
        pool = getattr(store, "_pool", None)
        get_stats = getattr(pool, "get_stats", None)
        if get_stats is None:
            return None
        raw = get_stats()
        return {
            "size": int(raw.get("pool_size", 0)),
            "idle": int(raw.get("pool_available", 0)),
            "waiting": int(raw.get("requests_waiting", 0)),
        }

    return stats


def app_from_env() -> Front:
    """Factory for uvicorn workers: settings come from IIIFSRV_* set by ``iiifsrv serve``."""
    from iiifsrv.web import connections

    settings = load(environ=os.environ)
    connections.configure(
        settings.header_timeout, settings.max_connections_per_client, settings.forwarded_allow_ips
    )
    return create_app(settings)
