"""The one authenticator of writes, and the viewer sign-in (``/session``): a Bearer header, a
token in an endpoint path (``/annotot/key/<token>``) or an HttpOnly session cookie, throttled.

HTTP layer: imports Starlette, access.sessions, access.throttle, errors, settings, tokens and
web.respond. Writes authenticated by the cookie need the ``X-CSRF-Token`` header (a value bound
to the session, only given to same-origin script by ``GET``/``POST /session``) and, when the
browser sends ``Origin``, this server's host in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from iiifsrv.access import sessions
from iiifsrv.access.throttle import Throttle
from iiifsrv.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized
from iiifsrv.settings import Settings
from iiifsrv.tokens import User, find_user, parse_tokens
from iiifsrv.web.respond import base_url, header

COOKIE = "iiifsrv_session"
CSRF_HEADER = "x-csrf-token"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="iiifsrv"'}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_PATH = "/session"
MAX_SIGN_IN_BODY = 4096
NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def session_cookie(scope: Scope) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


class Credentials:
    """Built once per application from the settings; shared by every write route."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.users = parse_tokens(settings.tokens)
        self.key = (settings.session_secret or sessions.new_secret()).encode()
        self.by_fingerprint = {
            sessions.fingerprint(self.key, token): user for token, user in self.users.items()
        }
        self.throttle = Throttle(settings.auth_failures)
        self.clock = clock
        self.wall = wall

    # ---- authentication ------------------------------------------------------------------

    def _unauthorized(self, scope: Scope, message: str, *, failure: bool) -> Unauthorized:
        if failure:
            self.throttle.fail(client_address(scope), self.clock())
        return Unauthorized(message, headers=CHALLENGE)

    def _token_user(self, scope: Scope, token: str) -> User:
        user = find_user(self.users, token)
        if user is None:
            raise self._unauthorized(scope, "unknown token", failure=True)
        return user

    def session_of(self, scope: Scope) -> tuple[User, sessions.Session] | None:
        """The signed-in user of the request's cookie, None without one; 401 when expired, signed
        by another key (e.g. before a restart) or forged. Not counted by the throttle: an HMAC
        cannot be guessed, and stale cookies are common."""
        value = session_cookie(scope)
        if value is None:
            return None
        try:
            session = sessions.verify(self.key, value)
        except sessions.Invalid:
            raise self._unauthorized(
                scope, "invalid session: sign in again", failure=False
            ) from None
        user = self.by_fingerprint.get(session.fingerprint)
        if session.expires <= self.wall() or user is None:
            raise self._unauthorized(scope, "session expired: sign in again", failure=False)
        return user, session

    def check_origin(self, scope: Scope) -> None:
        """403 when the browser says the request comes from another host (cross-site)."""
        origin = header(scope, b"origin")
        if origin is None:
            return
        own = urlsplit(base_url(scope, self.settings.public_url)).netloc.lower()
        if urlsplit(origin).netloc.lower() != own:
            raise Forbidden("cross-origin request refused")

    def authenticate(self, scope: Scope, path_token: str | None = None) -> User:
        """The writer of a request: Bearer header, else the path token, else the session cookie
        (with the CSRF checks for unsafe methods); 401 without, 429 when throttled."""
        self.throttle.check(client_address(scope), self.clock())
        auth = header(scope, b"authorization")
        if auth:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise self._unauthorized(scope, "use Authorization: Bearer <token>", failure=False)
            return self._token_user(scope, token.strip())
        if path_token:
            return self._token_user(scope, path_token)
        found = self.session_of(scope)
        if found is None:
            raise self._unauthorized(
                scope, "writing needs a bearer token or a signed-in session", failure=False
            )
        user, session = found
        if scope.get("method", "GET") not in SAFE_METHODS:
            self.check_origin(scope)
            if not sessions.csrf_ok(self.key, session, header(scope, CSRF_HEADER.encode())):
                raise Forbidden("the X-CSRF-Token header is missing or wrong (see GET /session)")
        return user

    # ---- /session --------------------------------------------------------------------------

    def _state(self, user: User | None, session: sessions.Session | None) -> dict[str, Any]:
        if user is None or session is None:
            return {"user": None, "editor": False}
        expires = datetime.fromtimestamp(session.expires, UTC).isoformat(timespec="seconds")
        return {
            "user": user.name,
            "editor": user.editor,
            "expires": expires.replace("+00:00", "Z"),
            "csrf": sessions.csrf_value(self.key, session),
        }

    def _cookie(self, scope: Scope, value: str, max_age: int) -> str:
        base = urlsplit(base_url(scope, self.settings.public_url))
        attributes = [
            f"{COOKIE}={value}",
            f"Path={base.path or '/'}",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if base.scheme == "https":
            attributes.append("Secure")
        return "; ".join(attributes)

    @staticmethod
    def _json(doc: dict[str, Any], status: int = 200, cookie: str | None = None) -> Response:
        headers = dict(NO_STORE)
        if cookie:
            headers["Set-Cookie"] = cookie
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Response(body, status, headers=headers, media_type="application/json")

    async def _who(self, request: Request) -> Response:
        try:
            found = self.session_of(request.scope)
        except Unauthorized:  # a stale cookie: say so, and drop it
            return self._json(self._state(None, None), cookie=self._cookie(request.scope, "", 0))
        return self._json(self._state(*found) if found else self._state(None, None))

    async def _sign_in(self, request: Request) -> Response:
        scope = request.scope
        self.check_origin(scope)
        self.throttle.check(client_address(scope), self.clock())
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise BadRequest('send {"token": "…"} as application/json')
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SIGN_IN_BODY:
                raise PayloadTooLarge("sign-in body too large")
        try:
            doc = json.loads(body)
        except ValueError:
            raise BadRequest('send {"token": "…"} as application/json') from None
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise BadRequest('send {"token": "…"} as application/json')
        token = token.strip()
        user = self._token_user(scope, token)
        session, value = sessions.issue(
            self.key,
            sessions.fingerprint(self.key, token),
            self.wall(),
            self.settings.session_max_age,
        )
        cookie = self._cookie(scope, value, self.settings.session_max_age)
        return self._json(self._state(user, session), cookie=cookie)

    async def _sign_out(self, request: Request) -> Response:
        self.check_origin(request.scope)
        return self._json(self._state(None, None), cookie=self._cookie(request.scope, "", 0))

    def routes(self) -> list[BaseRoute]:
        """``GET /session`` (who is signed in, and the CSRF value), ``POST /session``
        (sign in with {"token": …}), ``DELETE /session`` (sign out). No CORS headers: other
        origins may not read them."""
        return [
            Route(SESSION_PATH, self._who, methods=["GET", "HEAD"]),
            Route(SESSION_PATH, self._sign_in, methods=["POST"]),
            Route(SESSION_PATH, self._sign_out, methods=["DELETE"]),
        ]
