"""HTTP validators and shared headers: strong ETags, Last-Modified, 304 decisions, CORS.

PURE: imports only the standard library. Takes header values as strings, returns decisions.
"""

from __future__ import annotations

import functools
import hashlib
from email.utils import formatdate, parsedate_to_datetime

# Sent with every response: browsers must not guess a type other than the one declared.
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# The constant headers of every response: CORS (any origin, no credentials) and nosniff.
CORS_HEADERS = {
    **NOSNIFF,
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "ETag, Link, Location, Content-Location, Allow, Content-Range, Accept-Ranges, "
        "Content-Length, Last-Modified, Server-Timing"
    ),
}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": (
        "Accept, Authorization, Content-Type, If-Match, If-None-Match, If-Modified-Since, "
        "Prefer, Range, Slug"
    ),
    "Access-Control-Max-Age": "86400",
}


def strong_etag(*parts: object) -> str:
    """A strong ETag from the identity of the source file and the canonical request."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=12)
    return f'"{digest.hexdigest()}"'


def http_date(timestamp: float) -> str:
    return _http_date(int(timestamp))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    """Formatting costs more than the rest of a stored tile's headers; a few thousand source
    modification times cover every file a worker serves at once."""
    return formatdate(seconds, usegmt=True)


def _etag_list(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(
    etag: str,
    mtime: float,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> bool:
    """RFC 9110: If-None-Match wins; If-Modified-Since is used only without it."""
    if if_none_match is not None:
        tags = _etag_list(if_none_match)
        return "*" in tags or etag in tags
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(mtime) <= since
    return False


def if_match_fails(etag: str | None, if_match: str | None) -> bool:
    """True when an If-Match precondition is present and does not match the current ETag."""
    if if_match is None:
        return False
    tags = _etag_list(if_match)
    if "*" in tags:
        return etag is None
    return etag is None or etag not in tags
