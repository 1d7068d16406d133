"""HTTP plumbing shared by the annotation endpoints: context, body limits, tokens, JSON replies.

HTTP layer: raw ASGI (paths are read undecoded); imports annotations.service, conditional,
errors, web.credentials (the one authenticator) and web.respond.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote

import anyio
from starlette.types import Receive, Scope, Send

from iiifsrv.annotations.service import AnnotationService, User
from iiifsrv.conditional import CORS_HEADERS, PREFLIGHT_HEADERS
from iiifsrv.errors import BadRequest, IIIFError, PayloadTooLarge
from iiifsrv.jsonbody import parse_json
from iiifsrv.settings import Settings
from iiifsrv.web.credentials import Credentials
from iiifsrv.web.respond import base_url, error_response, header, send_response

if TYPE_CHECKING:
    from iiifsrv.web.visibility import Visibility

log = logging.getLogger("iiifsrv.annotations")

ANNO_TYPE = 'application/ld+json; profile="http://www.w3.org/ns/anno.jsonld"'
IIIF3_TYPE = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
JSON_TYPE = "application/json"


# A manifest's key -> the canvas keys of that manifest if this server serves it, else None.
ManifestCanvases = Callable[[str], Awaitable[list[str] | None]]


@dataclass(frozen=True)
class Context:
    settings: Settings
    service: AnnotationService
    credentials: Credentials
    page_size: int
    max_bytes: int
    list_cap: int = 1000
    manifest_canvases: ManifestCanvases | None = None
    # which annotations the reader may see (web/visibility.py); None: all
    visibility: Visibility | None = None


@dataclass
class Request:
    """The parts of one request the endpoints need; ``rest`` is the raw path after the prefix."""

    scope: Scope
    receive: Receive
    method: str
    rest: str
    query: dict[str, str]

    def header(self, name: str) -> str | None:
        return header(self.scope, name.lower().encode("latin-1"))

    def base(self, ctx: Context) -> str:
        return base_url(self.scope, ctx.settings.public_url)

    def url(self, ctx: Context) -> str:
        raw: str = (self.scope.get("raw_path") or self.scope["path"].encode()).decode("latin-1")
        root = str(self.scope.get("app_root_path", ""))
        path = raw[len(root) :] if root and raw.startswith(root) else raw
        qs: str = self.scope.get("query_string", b"").decode("latin-1")
        return self.base(ctx) + path + (f"?{qs}" if qs else "")


Handler = Callable[[Request], Awaitable[None]]


def parse_request(scope: Scope, receive: Receive, prefix: str) -> Request:
    raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    root = scope.get("app_root_path", "")
    if root and raw.startswith(root + prefix):
        raw = raw[len(root) :]
    rest = raw[len(prefix) :] if raw.startswith(prefix) else raw
    query = dict(
        parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    )
    return Request(scope, receive, scope["method"], rest, query)


def check_query(query: dict[str, str]) -> None:
    """No control characters in parameters (PostgreSQL text cannot even hold NUL)."""
    for value in query.values():
        if any(ord(c) < 32 for c in value):
            raise BadRequest("query parameters may not contain control characters")


def segment(raw: str) -> str:
    """One path segment, percent-decoded exactly once (so %2F stays inside the segment)."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8 once percent-decoded") from None


async def read_body(req: Request, limit: int) -> bytes:
    length = req.header("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"annotation larger than {limit} bytes")
    chunks = bytearray()
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client went away")
        chunks.extend(message.get("body", b""))
        if len(chunks) > limit:
            raise PayloadTooLarge(f"annotation larger than {limit} bytes")
        if not message.get("more_body", False):
            return bytes(chunks)


async def read_json(req: Request, limit: int) -> Any:
    body = await read_body(req, limit)
    return await off_loop(lambda: parse_json(body))


def authenticate(req: Request, ctx: Context, path_token: str | None = None) -> User:
    """The writer: a bearer token, a token in the endpoint path, or the viewer's session cookie
    (see web/credentials.py)."""
    return ctx.credentials.authenticate(req.scope, path_token)


T = TypeVar("T")


def list_headers(ctx: Context, total: int, container: str) -> dict[str, str]:
    """Headers of an unpaged list: its full size (``X-Total-Count``) and, when it was cut at
    ``list_cap``, the paged container that holds every annotation (``Link: rel=collection``)."""
    expose = CORS_HEADERS["Access-Control-Expose-Headers"] + ", X-Total-Count"
    headers = {"X-Total-Count": str(total), "Access-Control-Expose-Headers": expose}
    if total > ctx.list_cap:
        headers["Link"] = f'<{container}>; rel="collection"'
    return headers


async def off_loop(fn: Callable[[], T]) -> T:
    """Build a response body in a thread: large pages must not stall the event loop."""
    return await anyio.to_thread.run_sync(fn)


def dumps(obj: Any) -> bytes:
    # allow_nan=False: a response is strict JSON or an error, never a bare NaN a browser rejects.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def send_json(
    send: Send,
    status: int,
    obj: Any,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = JSON_TYPE,
    head: bool = False,
) -> None:
    # Serialising a large page is CPU work: off the event loop.
    body = await anyio.to_thread.run_sync(dumps, obj)
    all_headers = {"Content-Type": content_type, **CORS_HEADERS, **(headers or {})}
    await send_response(send, status, all_headers, b"" if head else body, length=len(body))


async def send_empty(send: Send, status: int, headers: dict[str, str] | None = None) -> None:
    await send_response(send, status, {**CORS_HEADERS, **(headers or {})}, b"")


async def preflight(send: Send, allow: str) -> None:
    await send_response(send, 204, {**PREFLIGHT_HEADERS, "Allow": allow}, b"")


async def guarded(scope: Scope, send: Send, handler: Handler, req: Request) -> None:
    """Run one endpoint; its IIIFError (or a crash) becomes the one-line plain error reply."""
    head = scope["method"] == "HEAD"
    try:
        check_query(req.query)
        await handler(req)
    except IIIFError as exc:
        await error_response(send, exc, head=head)
    except Exception:
        # Never log a token carried in the path (/annotot/key/<token>/...).
        path = re.sub(r"/key/[^/]+", "/key/…", str(scope.get("path", "")))
        log.exception("unexpected error for %s %s", scope["method"], path)
        await error_response(send, IIIFError("internal error"), head=head)
