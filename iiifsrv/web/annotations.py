"""The annotation endpoints under /annotations/: W3C Web Annotation Protocol containers and
annotations, the unpaged AnnotationPage viewers read, and IIIF Content Search 2.0 / 1.0.

HTTP layer (raw ASGI, to read undecoded paths); imports annotations.*, conditional, errors,
settings, web.annotation_http and web.annotation_dialects. ``routes()`` is the entry point.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from iiifsrv.annotations import search
from iiifsrv.annotations.identity import present
from iiifsrv.annotations.model import ANNO_CONTEXT, PRESENTATION3_CONTEXT, Record, contexts, w3c
from iiifsrv.annotations.service import (
    AnnotationService,
    CanvasKnown,
    Localise,
    WriteHook,
    etag,
)
from iiifsrv.annotations.store import NOBODY, Store, Writers, open_store
from iiifsrv.annotations.store import Scope as Selection
from iiifsrv.annotations.urls import (
    ANNOTOT_PREFIX,
    PREFIX,
    SAS_PREFIX,
    Urls,
    decode_uri,
)
from iiifsrv.conditional import not_modified, strong_etag
from iiifsrv.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound
from iiifsrv.settings import Settings
from iiifsrv.web.annotation_dialects import AnnototAPI, SasAPI
from iiifsrv.web.annotation_http import (
    ANNO_TYPE,
    IIIF3_TYPE,
    JSON_TYPE,
    Context,
    ManifestCanvases,
    Request,
    authenticate,
    guarded,
    list_headers,
    off_loop,
    parse_request,
    preflight,
    read_json,
    send_empty,
    send_json,
)
from iiifsrv.web.auth import Access, AnnotationGuard, ObjectsOf
from iiifsrv.web.credentials import Credentials
from iiifsrv.web.visibility import Visibility

LDP_CONTAINER_LINK = (
    '<http://www.w3.org/ns/ldp#BasicContainer>; rel="type", '
    '<http://www.w3.org/TR/annotation-protocol/>; rel="http://www.w3.org/ns/ldp#constrainedBy"'
)
LDP_RESOURCE_LINK = '<http://www.w3.org/ns/ldp#Resource>; rel="type"'
PAGE_LINK = '<http://www.w3.org/ns/oa#AnnotationPage>; rel="type"'
CONTAINER_ALLOW = "GET, HEAD, OPTIONS, POST"
ANNOTATION_ALLOW = "GET, HEAD, OPTIONS, PUT, DELETE"
READ_ALLOW = "GET, HEAD, OPTIONS"
LDP_CONTEXT = "http://www.w3.org/ns/ldp.jsonld"
PREFER_MINIMAL = "http://www.w3.org/ns/ldp#PreferMinimalContainer"
PREFER_IRIS = "http://www.w3.org/ns/oa#PreferContainedIRIs"
PREFER_DESCRIPTIONS = "http://www.w3.org/ns/oa#PreferContainedDescriptions"
# Autocomplete counts words over at most this many matching annotations.
AUTOCOMPLETE_SCAN = 1000


def _decoded(segment: str) -> str:
    uri = decode_uri(segment)
    if uri is None:
        raise NotFound("not an annotation container")
    return uri


def page_number(req: Request) -> int:
    raw = req.query.get("page", "0")
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise BadRequest("page must be a number from 0")
    return int(raw)


async def manifest_selection(ctx: Context, key: str, urls: Urls) -> Selection:
    """The annotations of a manifest (given by its key): those on its canvases (the list the
    server knows, never a URI prefix) and those naming it. A manifest the server does not know
    has no annotations on canvases: 404 when only known canvases may be annotated."""
    canvases = await ctx.manifest_canvases(key) if ctx.manifest_canvases else None
    if canvases is not None:
        return Selection("manifest", key, tuple(canvases))
    if ctx.settings.annotation_canvases == "known":
        raise NotFound(f"no manifest {urls.public(key)} on this server")
    return Selection("manifest", key)


def writers(urls: Urls, user: str) -> Writers:
    """The writers a search's ``user`` parameter names: space-separated creator URIs of this
    server's (<base>/users/<name>, <base>/agents/<name>); a URI not ours matches nobody. A bare
    name (no ":", as earlier versions took) names that writer, whichever its class."""
    found: list[tuple[str, str]] = []
    for value in user.split():
        if ":" not in value and "/" not in value:
            found += [("Person", value), ("Software", value)]
        elif (writer := urls.agent_of(value)) is not None:
            found.append(writer)
    return tuple(found) or (NOBODY if user.strip() else ())


def _not_modified(req: Request, tag: str) -> bool:
    return req.method in ("GET", "HEAD") and not_modified(tag, 0, req.header("if-none-match"), None)


class ProtocolAPI:
    """ASGI app mounted at /annotations."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = parse_request(scope, receive, PREFIX)

        async def handle(req: Request) -> None:
            await self.service.ready()
            await self.dispatch(req, send)

        await guarded(scope, send, handle, req)

    def _urls(self, req: Request) -> Urls:
        return Urls(req.base(self.ctx))

    async def dispatch(self, req: Request, send: Send) -> None:
        parts = req.rest.lstrip("/").split("/")
        if len(parts) == 3 and parts[0] in ("canvas", "manifest"):
            # Containers made by any version name the same canvas: a key, or a URI re-keyed.
            uri = await self.service.key(_decoded(parts[1]), self._urls(req))
            if parts[0] == "manifest":
                selection = await manifest_selection(self.ctx, uri, self._urls(req))
            else:
                selection = Selection("canvas", uri)
            if parts[2] == "":
                return await self.container(req, send, selection)
            if parts[2] == "page":
                return await self.viewer_page(req, send, selection)
            if parts[2] == "batch" and parts[0] == "canvas":
                return await self.batch(req, send, uri)
            if parts[0] == "canvas":
                return await self.annotation(req, send, uri, parts[2])
        if len(parts) in (3, 4) and parts[0] == "search" and parts[1] in ("1", "2"):
            if len(parts) == 4 and parts[3] != "autocomplete":
                raise NotFound("no such search resource")
            manifest = await self.service.key(_decoded(parts[2]), self._urls(req))
            return await self.search(req, send, int(parts[1]), manifest, len(parts) == 4)
        raise NotFound("no such annotation resource")

    # ---- containers ----------------------------------------------------------------------

    def _container_url(self, req: Request, selection: Selection) -> str:
        return self._urls(req).container(selection.kind, selection.uri)

    async def container(self, req: Request, send: Send, selection: Selection) -> None:
        if req.method == "OPTIONS":
            return await preflight(send, CONTAINER_ALLOW)
        if req.method == "POST":
            return await self.create(req, send, selection)
        if req.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(
                "containers take GET, HEAD, POST", headers={"Allow": CONTAINER_ALLOW}
            )
        prefer = req.header("prefer") or ""
        iris = PREFER_IRIS in prefer or req.query.get("iris") == "1"
        minimal = PREFER_MINIMAL in prefer
        container = self._container_url(req, selection)
        selection = await self._narrow(req, selection)
        if "page" in req.query:
            return await self.page(req, send, selection, container, iris)
        total, stamp = await self.ctx.service.store.state(selection)
        ident = container + ("?iris=1" if iris else "")
        body: dict[str, Any] = {
            "@context": [ANNO_CONTEXT, LDP_CONTEXT],
            "id": ident,
            "type": ["BasicContainer", "AnnotationCollection"],
            "label": f"Annotations on {self._urls(req).public(selection.uri)}",
            "total": total,
        }
        if total:
            size = self.ctx.page_size
            last = (total - 1) // size
            if minimal:
                body["first"] = self._page_url(container, 0, iris)
            else:
                first = await self._page_body(req, selection, container, 0, total, iris)
                first.pop("@context")
                body["first"] = first
            body["last"] = self._page_url(container, last, iris)
        tag = strong_etag("container", selection.kind, selection.uri, total, stamp, iris, minimal,
                          self.ctx.page_size, selection.hidden)  # fmt: skip
        headers = {
            "Link": LDP_CONTAINER_LINK,
            "ETag": tag,
            "Allow": CONTAINER_ALLOW,
            "Vary": "Accept, Prefer",
            "Accept-Post": ANNO_TYPE,
            "Content-Location": ident,
            "Cache-Control": "no-cache",
        }
        if prefer:
            headers["Preference-Applied"] = "return=representation"
        if _not_modified(req, tag):
            return await send_empty(send, 304, headers)
        await send_json(send, 200, body, headers, content_type=ANNO_TYPE, head=req.method == "HEAD")

    async def _narrow(
        self,
        req: Request,
        selection: Selection,
        words: list[str] | None = None,
        creator: Writers = (),
    ) -> Selection:
        """``selection`` without the canvases the reader may not see (on a restricted manifest,
        named through ``partOf``): so totals, pages and ``next`` count visible ones only. A
        canvas's own container needs none: AnnotationGuard already decided on that canvas."""
        visibility = self.ctx.visibility
        if visibility is None or selection.kind == "canvas":
            return selection
        return await visibility.narrow(req.scope, selection, self.ctx.service.store,
                                       words or [], creator)  # fmt: skip

    async def _visible(self, req: Request, records: list[Record]) -> list[Record]:
        """The records the reader may see (a second check: one written on a hidden canvas
        after ``_narrow`` looked is left out too)."""
        visibility = self.ctx.visibility
        return records if visibility is None else await visibility.records(req.scope, records)

    @staticmethod
    def _page_url(container: str, n: int, iris: bool) -> str:
        return f"{container}?iris=1&page={n}" if iris else f"{container}?page={n}"

    async def _page_body(
        self, req: Request, selection: Selection, container: str, n: int, total: int, iris: bool
    ) -> dict[str, Any]:
        size = self.ctx.page_size
        records = await self.ctx.service.store.select(selection, n * size, size)
        records = await self._visible(req, records)
        urls = self._urls(req)
        items: list[Any]
        if iris:
            items = [urls.annotation(r.canvas, r.key) for r in records]
        else:
            items = await off_loop(
                lambda: [w3c(present(r, urls), urls.base, context=False) for r in records]
            )
        extra = sorted({c for r in records for c in contexts(r, urls.base)}, reverse=True)
        page: dict[str, Any] = {
            "@context": [ANNO_CONTEXT, *extra] if extra and not iris else ANNO_CONTEXT,
            "id": self._page_url(container, n, iris),
            "type": "AnnotationPage",
            "partOf": {
                "id": container + ("?iris=1" if iris else ""),
                "type": "AnnotationCollection",
                "total": total,
            },
            "startIndex": n * size,
        }
        if n > 0:
            page["prev"] = self._page_url(container, n - 1, iris)
        if (n + 1) * size < total:
            page["next"] = self._page_url(container, n + 1, iris)
        page["items"] = items
        return page

    async def page(
        self, req: Request, send: Send, selection: Selection, container: str, iris: bool
    ) -> None:
        n = page_number(req)
        total, stamp = await self.ctx.service.store.state(selection)
        if n > 0 and n * self.ctx.page_size >= total:
            raise NotFound("no such page")
        body = await self._page_body(req, selection, container, n, total, iris)
        tag = strong_etag("page", selection.kind, selection.uri, total, stamp, iris, n,
                          self.ctx.page_size, selection.hidden)  # fmt: skip
        headers = {
            "Link": PAGE_LINK,
            "ETag": tag,
            "Allow": READ_ALLOW,
            "Vary": "Accept, Prefer",
            "Content-Location": body["id"],
            "Cache-Control": "no-cache",
        }
        if _not_modified(req, tag):
            return await send_empty(send, 304, headers)
        await send_json(send, 200, body, headers, content_type=ANNO_TYPE, head=req.method == "HEAD")

    async def create(self, req: Request, send: Send, selection: Selection) -> None:
        user = authenticate(req, self.ctx)
        doc = await read_json(req, self.ctx.max_bytes)
        rec = await self.service.create(
            doc,
            user,
            self._urls(req),
            slug=req.header("slug"),
            canvas=selection.uri if selection.kind == "canvas" else None,
            manifest=selection.uri if selection.kind == "manifest" else None,
        )
        await self._send_annotation(req, send, rec, 201)

    async def batch(self, req: Request, send: Send, canvas: str) -> None:
        """POST {"generator": {"name", "version"}, "replace": true, "items": [annotations]}:
        a software agent's annotations on this canvas, stored in one transaction."""
        if req.method == "OPTIONS":
            return await preflight(send, "OPTIONS, POST")
        if req.method != "POST":
            raise MethodNotAllowed("a batch is POSTed", headers={"Allow": "OPTIONS, POST"})
        user = authenticate(req, self.ctx)
        if not user.agent:  # before reading the body: a person's token never writes a batch
            raise Forbidden("batches are written by software agents (a token with role agent)")
        payload = await read_json(req, self.ctx.max_bytes)
        if not isinstance(payload, dict):
            raise BadRequest('send {"generator": {…}, "replace": true, "items": [annotations]}')
        replace = payload.get("replace", True)
        if not isinstance(replace, bool):
            raise BadRequest("replace must be true or false")
        urls = self._urls(req)
        records, replaced = await self.service.create_batch(
            urls.public(canvas),
            payload.get("items"),
            user,
            urls,
            generator=payload.get("generator"),
            replace=replace,
            max_items=self.ctx.settings.annotation_batch_max,
        )
        container = urls.container("canvas", canvas)
        body = {
            "container": container,
            "created": len(records),
            "replaced": replaced,
            "items": [urls.annotation(r.canvas, r.key) for r in records],
        }
        await send_json(send, 201, body, {"Location": container, "Cache-Control": "no-store"})

    # ---- one annotation --------------------------------------------------------------------

    async def _send_annotation(
        self, req: Request, send: Send, rec: Record, status: int = 200
    ) -> None:
        urls = self._urls(req)
        body = w3c(present(rec, urls), urls.base)
        tag = etag(rec)
        headers = {
            "Link": LDP_RESOURCE_LINK,
            "ETag": tag,
            "Allow": ANNOTATION_ALLOW,
            "Vary": "Accept",
            "Cache-Control": "no-cache",
        }
        if status == 201:
            headers["Location"] = body["id"]
        if status == 200 and _not_modified(req, tag):
            return await send_empty(send, 304, headers)
        await send_json(send, status, body, headers, content_type=ANNO_TYPE,
                        head=req.method == "HEAD")  # fmt: skip

    async def annotation(self, req: Request, send: Send, canvas: str, key: str) -> None:
        if req.method == "OPTIONS":
            return await preflight(send, ANNOTATION_ALLOW)
        if req.method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise MethodNotAllowed("annotations take GET, HEAD, PUT, DELETE",
                                   headers={"Allow": ANNOTATION_ALLOW})  # fmt: skip
        if req.method in ("PUT", "DELETE"):
            user = authenticate(req, self.ctx)
        rec = await self.service.live(key)
        if rec.canvas != canvas:
            raise NotFound("no such annotation in this container")
        if req.method == "PUT":
            doc = await read_json(req, self.ctx.max_bytes)
            rec = await self.service.replace(rec, doc, user, self._urls(req),
                                             req.header("if-match"))  # fmt: skip
        elif req.method == "DELETE":
            await self.service.remove(rec, user, req.header("if-match"))
            return await send_empty(send, 204)
        await self._send_annotation(req, send, rec)

    # ---- what viewers read ----------------------------------------------------------------

    async def viewer_page(self, req: Request, send: Send, selection: Selection) -> None:
        if req.method == "OPTIONS":
            return await preflight(send, READ_ALLOW)
        if req.method not in ("GET", "HEAD"):
            raise MethodNotAllowed("pages are read-only", headers={"Allow": READ_ALLOW})
        container = self._container_url(req, selection)
        selection = await self._narrow(req, selection)
        total, stamp = await self.ctx.service.store.state(selection)
        cap = self.ctx.list_cap
        tag = strong_etag("viewer", selection.kind, selection.uri, total, stamp, cap,
                          selection.hidden)  # fmt: skip
        headers = {"ETag": tag, "Vary": "Accept", "Cache-Control": "no-cache",
                   **list_headers(self.ctx, total, container)}  # fmt: skip
        if _not_modified(req, tag):
            return await send_empty(send, 304, headers)
        urls = self._urls(req)
        # At most list_cap annotations; beyond, the paged container (partOf) holds them all.
        records = await self._visible(req, await self.ctx.service.store.select(selection, 0, cap))
        # Extension contexts (textGranularity, the project's) go before Presentation 3's.
        extra = sorted({c for r in records for c in contexts(r, urls.base)}, reverse=True)
        page = {
            "@context": [*extra, PRESENTATION3_CONTEXT] if extra else PRESENTATION3_CONTEXT,
            "id": container + "page",
            "type": "AnnotationPage",
            # The container this page shows: where a client POSTs a new annotation.
            "partOf": [{"id": container, "type": "AnnotationCollection", "total": total}],
            "items": await off_loop(
                lambda: [w3c(present(r, urls), urls.base, context=False) for r in records]
            ),
        }
        await send_json(send, 200, page, headers, content_type=IIIF3_TYPE,
                        head=req.method == "HEAD")  # fmt: skip

    # ---- IIIF Content Search ---------------------------------------------------------------

    async def search(
        self, req: Request, send: Send, version: int, manifest: str, autocomplete: bool
    ) -> None:
        if req.method == "OPTIONS":
            return await preflight(send, READ_ALLOW)
        if req.method not in ("GET", "HEAD"):
            raise MethodNotAllowed("search is read-only", headers={"Allow": READ_ALLOW})
        supported = search.SUPPORTED_2 if version == 2 else search.SUPPORTED_1
        ignored = sorted(k for k in req.query if k not in supported and k != "page")
        words = search.query_words(req.query.get("q", ""))
        urls = self._urls(req)
        selection = await manifest_selection(self.ctx, manifest, urls)
        store = self.ctx.service.store
        creator = writers(urls, req.query.get("user", ""))
        motivation = req.query.get("motivation", "")
        service_url = urls.search(manifest, version)
        url = req.url(self.ctx)
        body: dict[str, Any]
        if autocomplete:
            terms: list[tuple[str, int]] = []
            if words:
                prefixed = [*words[:-1], words[-1] + "*"]
                selection = await self._narrow(req, selection, prefixed, creator)
                found = await store.search(selection, prefixed, creator, AUTOCOMPLETE_SCAN)
                found = await self._visible(req, found)
                lead = " ".join(words[:-1])

                def count() -> list[tuple[str, int]]:
                    matching = search.filter_motivation(found, motivation)
                    return [
                        ((lead + " " + w).strip(), n)
                        for w, n in search.terms_with_prefix(matching, words[-1])
                    ]

                terms = await off_loop(count)
            complete = search.autocomplete2 if version == 2 else search.autocomplete1
            body = complete(url, service_url, terms, ignored)
        else:
            n = page_number(req)
            size = self.ctx.page_size
            # totals and pages over the hits the reader may see, never counting the others
            selection = await self._narrow(req, selection, words, creator)
            total = await store.search_total(selection, words, creator)
            if n > 0 and n * size >= total:
                raise NotFound("no such page of results")
            records = await store.search(selection, words, creator, size, n * size)
            records = await self._visible(req, records)
            query = {k: v for k, v in req.query.items() if k != "page"}

            def page_url(k: int | None) -> str:
                params = query if k is None else {**query, "page": str(k)}
                return f"{service_url}?{urlencode(params)}" if params else service_url

            paging = search.Paging(
                collection=page_url(None),
                first=page_url(0),
                last=page_url(max(0, (total - 1) // size)),
                next=page_url(n + 1) if (n + 1) * size < total else "",
                prev=page_url(n - 1) if n > 0 else "",
                start=n * size,
                total=total,
            )
            build = search.search2 if version == 2 else search.search1

            def respond() -> dict[str, Any]:
                matching = search.filter_motivation(records, motivation)
                shown = [present(r, urls) for r in matching]
                return build(url, urls.base, shown, words, ignored, paging)

            body = await off_loop(respond)
        await send_json(send, 200, body, {"Cache-Control": "no-cache"},
                        content_type=JSON_TYPE if version == 1 else "application/ld+json",
                        head=req.method == "HEAD")  # fmt: skip


def routes(
    settings: Settings,
    *,
    store: Store | None = None,
    canvas_known: CanvasKnown | None = None,
    localise: Localise | None = None,
    manifest_canvases: ManifestCanvases | None = None,
    page_size: int | None = None,
    credentials: Credentials | None = None,
    access: Access | None = None,
    objects_of: ObjectsOf | None = None,
    on_write: WriteHook | None = None,
) -> list[BaseRoute]:
    """Mounts for /annotations (W3C protocol, pages, search), /annotot and /sas.

    ``canvas_known(uri)`` decides whether a target canvas exists; None accepts any http(s) URI.
    ``localise(uri)`` keys a URI of this server's canvases given under another host or base.
    ``manifest_canvases(key)`` lists a known manifest's canvas keys (None: not a known manifest).
    ``on_write(record)`` is told of every committed write (semantic search queues it).
    """
    ctx = Context(
        settings=settings,
        service=AnnotationService(store or open_store(settings), canvas_known, localise, on_write),
        credentials=credentials or Credentials(settings),
        page_size=page_size or settings.annotation_page_size,
        max_bytes=settings.annotation_max_bytes,
        list_cap=settings.annotation_list_cap,
        manifest_canvases=manifest_canvases,
        visibility=(
            Visibility(access, objects_of)
            if access is not None and objects_of is not None
            else None
        ),
    )
    annotot: ASGIApp = AnnototAPI(ctx)
    protocol: ASGIApp = ProtocolAPI(ctx)
    sas: ASGIApp = SasAPI(ctx)
    if access is not None and objects_of is not None:  # restricted canvases: see web/auth.py
        annotot = AnnotationGuard(annotot, access, objects_of)
        protocol = AnnotationGuard(protocol, access, objects_of)
        sas = AnnotationGuard(sas, access, objects_of)
    return [
        Mount(PREFIX, app=protocol),
        # The Annotot adapter POSTs to the bare endpoint URL (no trailing slash).
        Route(ANNOTOT_PREFIX, annotot),
        Mount(ANNOTOT_PREFIX, app=annotot),
        Mount(SAS_PREFIX, app=sas),
    ]
