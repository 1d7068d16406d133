"""The dialects Mirador's annotation editor speaks: Annotot (/annotot) and
SimpleAnnotationServer (/sas), over the same store as the W3C protocol.

HTTP layer (raw ASGI: Annotot ids arrive percent-encoded, %2F included); imports
annotations.model, annotations.store, web.annotation_http and errors. Both accept the token as
``Authorization: Bearer`` or in the endpoint path (``/annotot/key/<token>``), because the
adapters' fetch calls send no Authorization header.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Scope, Send

from iiifsrv.annotations.identity import present
from iiifsrv.annotations.model import PRESENTATION3_CONTEXT, Record, annotot_view, from_oa, to_oa
from iiifsrv.annotations.store import Scope as Selection
from iiifsrv.annotations.urls import ANNOTOT_PREFIX, SAS_PREFIX, Urls
from iiifsrv.errors import BadRequest, MethodNotAllowed, NotFound
from iiifsrv.web.annotation_http import (
    Context,
    Request,
    authenticate,
    guarded,
    parse_request,
    preflight,
    read_json,
    segment,
    send_empty,
    send_json,
)

ALLOW = "GET, HEAD, OPTIONS, POST, PATCH, PUT, DELETE"


def _split_token(rest: str) -> tuple[str | None, list[str]]:
    """(token from a leading key/<token>, the remaining raw path segments)."""
    parts = rest.lstrip("/").split("/") if rest.strip("/") else []
    if len(parts) >= 2 and parts[0] == "key":
        return segment(parts[1]), parts[2:]
    return None, parts


def _canvas_param(req: Request) -> str:
    uri = req.query.get("uri", "")
    if not uri:
        raise BadRequest("uri (the canvas id) is required")
    return uri


class _Dialect:
    prefix = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = parse_request(scope, receive, self.prefix)

        async def handle(req: Request) -> None:
            if req.method == "OPTIONS":
                return await preflight(send, ALLOW)
            await self.service.ready()
            token, parts = _split_token(req.rest)
            if token is not None:  # a path token is checked first: 401 whatever the resource
                authenticate(req, self.ctx, token)
            await self.dispatch(req, send, token, parts)

        await guarded(scope, send, handle, req)

    async def dispatch(self, req: Request, send: Send, token: str | None, parts: list[str]) -> None:
        raise NotImplementedError

    async def canvas(self, req: Request, urls: Urls) -> Selection:
        """The canvas a ``uri`` parameter names, keyed as the W3C containers key it."""
        return Selection("canvas", await self.service.key(_canvas_param(req), urls))


class AnnototAPI(_Dialect):
    """Annotot: GET pages?uri=, POST /, GET/PATCH/PUT/DELETE /{url-encoded id}."""

    prefix = ANNOTOT_PREFIX

    @staticmethod
    def _data(payload: Any) -> tuple[Any, Any, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("annotation"), dict):
            raise BadRequest('body must be {"annotation": {"canvas", "data", "uuid"}}')
        inner = payload["annotation"]
        data = inner.get("data")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"annotation.data is not JSON: {exc}") from None
        return data, inner.get("canvas"), inner.get("uuid")

    async def dispatch(self, req: Request, send: Send, token: str | None, parts: list[str]) -> None:
        head = req.method == "HEAD"
        urls = Urls(req.base(self.ctx))

        def view(rec: Record) -> dict[str, Any]:
            return annotot_view(present(rec, urls), urls.base)

        store = self.service.store
        if not parts or parts == [""]:
            if req.method == "POST":
                user = authenticate(req, self.ctx, token)
                data, canvas, uuid = self._data(await read_json(req, self.ctx.max_bytes))
                if canvas is not None and not isinstance(canvas, str):
                    raise BadRequest("annotation.canvas must be a string")
                via = uuid if isinstance(uuid, str) and uuid else None
                rec = await self.service.create(data, user, urls, canvas=canvas, via=via)
                return await send_json(send, 200, view(rec))
            if req.method in ("GET", "HEAD"):
                records = await store.select(await self.canvas(req, urls))
                return await send_json(send, 200, [view(r) for r in records], head=head)
            raise MethodNotAllowed("POST or GET ?uri=", headers={"Allow": ALLOW})
        if len(parts) != 1:
            raise NotFound("no such Annotot resource")
        if parts[0] == "pages" and req.method in ("GET", "HEAD"):
            records = await store.select(await self.canvas(req, urls))
            page = {
                "@context": PRESENTATION3_CONTEXT,
                "id": req.url(self.ctx),
                "type": "AnnotationPage",
                "items": [view(r) for r in records],
            }
            return await send_json(send, 200, page, {"Cache-Control": "no-cache"}, head=head)
        ident = segment(parts[0])
        if req.method in ("GET", "HEAD"):
            rec = await self.service.resolve(ident)
            return await send_json(send, 200, view(rec), head=head)
        if req.method in ("PATCH", "PUT"):
            user = authenticate(req, self.ctx, token)
            data, _canvas, _uuid = self._data(await read_json(req, self.ctx.max_bytes))
            rec = await self.service.resolve(ident)
            rec = await self.service.replace(rec, data, user, urls, req.header("if-match"))
            return await send_json(send, 200, view(rec))
        if req.method == "DELETE":
            user = authenticate(req, self.ctx, token)
            rec = await self.service.resolve(ident)
            await self.service.remove(rec, user, req.header("if-match"))
            return await send_json(send, 200, {"message": "Annotation was successfully destroyed."})
        raise MethodNotAllowed("not an Annotot method", headers={"Allow": ALLOW})


class SasAPI(_Dialect):
    """SimpleAnnotationServer: GET search?uri=, POST create, POST update, DELETE destroy?uri=."""

    prefix = SAS_PREFIX

    async def dispatch(self, req: Request, send: Send, token: str | None, parts: list[str]) -> None:
        urls = Urls(req.base(self.ctx))

        def view(rec: Record) -> dict[str, Any]:
            return to_oa(present(rec, urls), urls.base)

        action = parts[0] if len(parts) == 1 else ""
        if action == "search" and req.method in ("GET", "HEAD"):
            records = await self.service.store.select(await self.canvas(req, urls))
            return await send_json(send, 200, [view(r) for r in records],
                                   {"Cache-Control": "no-cache"},
                                   head=req.method == "HEAD")  # fmt: skip
        if action == "create" and req.method == "POST":
            user = authenticate(req, self.ctx, token)
            v2 = await read_json(req, self.ctx.max_bytes)
            rec = await self.service.create(from_oa(v2), user, urls)
            return await send_json(send, 201, view(rec))
        if action == "update" and req.method in ("POST", "PUT"):
            user = authenticate(req, self.ctx, token)
            v2 = await read_json(req, self.ctx.max_bytes)
            ident = v2.get("@id") if isinstance(v2, dict) else None
            if not isinstance(ident, str):
                raise BadRequest('an update needs the annotation\'s "@id"')
            rec = await self.service.resolve(ident)
            rec = await self.service.replace(rec, from_oa(v2), user, urls, req.header("if-match"))
            return await send_json(send, 200, view(rec))
        if action == "destroy" and req.method == "DELETE":
            user = authenticate(req, self.ctx, token)
            ident = req.query.get("uri", "")
            if not ident:
                raise BadRequest("uri (the annotation id) is required")
            rec = await self.service.resolve(ident)
            await self.service.remove(rec, user, req.header("if-match"))
            return await send_empty(send, 204)
        if action in ("search", "create", "update", "destroy"):
            raise MethodNotAllowed(f"wrong method for {action}", headers={"Allow": ALLOW})
        raise NotFound("no such SimpleAnnotationServer resource")
