"""Low-level response helpers and the one place errors become HTTP responses.

HTTP layer; imports Starlette types, conditional and errors.
"""

from __future__ import annotations

import re

from starlette.types import Scope, Send

from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import BadRequest, IIIFError


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


# A host name, IPv4 or bracketed IPv6 literal, with an optional port: nothing that could break
# out of a URL, a JSON string or a Link header.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$"
)


# Where Front keeps the request's base URL, computed once (see request_base).
BASE_KEY = "iiifsrv.base"


_BASES: dict[tuple[str, str, str, object], str] = {}
_BASES_MAX = 1024


def request_base(scope: Scope, public_url: str) -> str:
    """The public base URL of this request, from one validated source.

    ``public_url`` when set (the Host header is then never reflected). Otherwise the one Host
    header (several → 400; one that is not a plain host[:port] → the server's own address),
    the scheme of the connection (uvicorn sets it from X-Forwarded-Proto only for the proxies
    in ``forwarded_allow_ips``) and the root path. Every id in a body and every cache key of
    such a body uses this one string."""
    if public_url:
        return public_url
    host: bytes | None = None
    for key, value in scope.get("headers", ()):
        if key == b"host":
            if host is not None:
                raise BadRequest("several Host headers")
            host = value
    scheme = scope.get("scheme", "http")
    # Under a Starlette Mount, root_path includes the mount; app_root_path is the app's own.
    root = scope.get("app_root_path", scope.get("root_path", ""))
    # Validated and formatted once per (host, scheme, root, server address): the same few
    # values arrive again and again. Bounded, since the Host header is the client's to choose.
    key = (host.decode("latin-1") if host is not None else "", scheme, root, scope.get("server"))
    base = _BASES.get(key)
    if base is None:
        base = _make_base(*key)
        if len(_BASES) >= _BASES_MAX:
            _BASES.clear()
        _BASES[key] = base
    return base


def _make_base(host: str, scheme: str, root: str, server: object) -> str:
    if not host or not _HOST.match(host):
        address = server if isinstance(server, (tuple, list)) else ("localhost", 80)
        host = f"{address[0]}:{address[1]}"
    scheme = "https" if scheme in ("https", "wss") else "http"
    return f"{scheme}://{host}{root}"


def base_url(scope: Scope, public_url: str) -> str:
    """The base URL Front computed for this request (or computes it now, outside Front)."""
    base = scope.get(BASE_KEY)
    if base is None:
        base = scope[BASE_KEY] = request_base(scope, public_url)
    return str(base)


async def send_response(
    send: Send,
    status: int,
    headers: dict[str, str],
    body: bytes,
    *,
    length: int | None = None,
    omit_length: bool = False,
) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if not omit_length:
        raw.append((b"content-length", str(len(body) if length is None else length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def error_body(exc: IIIFError) -> bytes:
    return (exc.message + "\n").encode("utf-8", "replace")


async def error_response(send: Send, exc: IIIFError, *, head: bool = False) -> None:
    body = error_body(exc)
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Cache-Control": "no-store",
        **CORS_HEADERS,
        **exc.headers,
    }
    await send_response(send, exc.status, headers, b"" if head else body, length=len(body))
