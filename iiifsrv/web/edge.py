"""What shared HTTP caches (Varnish, nginx, CDNs) may keep: the one place every response's
``Cache-Control`` is corrected before it leaves, whatever route made it.

HTTP layer; imports nothing from iiifsrv. Rules:
- an error (status >= 400) is never stored: ``Cache-Control: no-store``;
- a response that sets a cookie is never stored;
- a response to a request carrying credentials (``Authorization``, the session cookie) may
  depend on who asked: ``public`` becomes ``private`` (browsers may keep it, shared caches not).
"""

from __future__ import annotations

from starlette.types import Message, Scope

SESSION_COOKIE = b"iiifsrv_session="
NO_STORE = b"no-store"


def credentialed(scope: Scope) -> bool:
    """The request carries an Authorization header or the session cookie."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization" or (key == b"cookie" and SESSION_COOKIE in value):
            return True
    return False


def _private(value: bytes) -> bytes:
    parts = [p.strip() for p in value.split(b",") if p.strip()]
    kept = [p for p in parts if p.lower() != b"public" and not p.lower().startswith(b"s-maxage")]
    if not any(p.lower() in (b"private", b"no-store") for p in kept):
        kept.insert(0, b"private")
    return b", ".join(kept)


def correct(message: Message, credentials: bool) -> Message:
    """The ``http.response.start`` message with its Cache-Control corrected (or unchanged)."""
    status: int = message["status"]
    headers = message.get("headers", ())
    sets_cookie = False
    current: bytes | None = None
    for key, value in headers:
        lower = key.lower()
        if lower == b"set-cookie":
            sets_cookie = True
        elif lower == b"cache-control":
            current = value
    if status >= 400 or sets_cookie:
        wanted: bytes | None = NO_STORE
    elif credentials and status < 300:
        wanted = _private(current) if current is not None else b"private"
    else:
        return message
    if wanted == current:
        return message
    kept = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
    kept.append((b"cache-control", wanted))
    return {**message, "headers": kept}
