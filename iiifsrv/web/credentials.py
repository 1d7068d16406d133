"""The one authenticator of writes, and the viewer sign-in (``/session``): a Bearer header, a
token in an endpoint path (``/annotot/key/<token>``) or an HttpOnly session cookie, throttled.
The same session is who a reader is (``subject_of``) for access control: signed in with a write
token or a local account's name and password, or anonymous (with clickthrough terms accepted).

HTTP layer: imports Starlette, access.sessions, access.throttle, errors, settings, tokens and
web.respond. Writes authenticated by the cookie need the ``X-CSRF-Token`` header (a value bound
to the session, only given to same-origin script by ``GET``/``POST /session``) and, when the
browser sends ``Origin``, this server's host in it.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from iiifsrv.access import sessions
from iiifsrv.access.accounts import Account, Accounts
from iiifsrv.access.oidc import External, from_fingerprint
from iiifsrv.access.oidc import fingerprint as oidc_fingerprint
from iiifsrv.access.revocations import Revocations
from iiifsrv.access.rules import Subject
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
USAGE = 'send {"token": "…"} or {"user": "…", "password": "…"} as application/json'
NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}
ACCOUNT_PREFIX = "acct:"
ACCOUNT_CACHE_SECONDS = 10.0
# scrypt needs 128 MiB and a few hundred ms per check: at most two at once per process.
PASSWORD_CHECKS = 2


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def token_roles(user: User) -> frozenset[str]:
    """What a write token's user is, as a reader: role ``writer``, and ``editor`` for editors."""
    return frozenset({"writer", "editor"} if user.editor else {"writer"})


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
        revocations: Revocations | None = None,
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
        self.account_throttle = Throttle(settings.auth_failures)
        self.accounts = Accounts(settings.data_path)
        self._accounts_seen: dict[str, tuple[float, Account | None]] = {}
        self.checking = anyio.CapacityLimiter(PASSWORD_CHECKS)
        # session ids signed out before they expire, shared by every worker and replica
        self.revocations = revocations or Revocations(
            settings.data_path, None, settings.session_revocation_check, wall=wall
        )
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

    def account(self, name: str) -> Account | None:
        """A local account, looked up at most every ACCOUNT_CACHE_SECONDS (blocking, cheap)."""
        now = self.clock()
        seen = self._accounts_seen.get(name)
        if seen is not None and now - seen[0] < ACCOUNT_CACHE_SECONDS:
            return seen[1]
        found = self.accounts.get(name)
        if len(self._accounts_seen) > 10_000:
            self._accounts_seen.clear()
        self._accounts_seen[name] = (now, found)
        return found

    def holder(self, session: sessions.Session) -> User | Account | External | None:
        """Who a live session belongs to: a token's user, a local account, a user of the OpenID
        provider (when one is configured), or None (anonymous, or an account removed or whose
        password changed)."""
        fp = session.fingerprint
        external = from_fingerprint(fp)
        if external is not None:
            return external if self.settings.oidc_issuer else None
        if fp.startswith(ACCOUNT_PREFIX):
            name, _, stamp = fp[len(ACCOUNT_PREFIX) :].rpartition(":")
            account = self.account(name)
            return account if account is not None and account.stamp == stamp else None
        return self.by_fingerprint.get(fp) if fp else None

    def live(self, session: sessions.Session) -> bool:
        return session.expires > self.wall() and not self.revocations.revoked(session.sid)

    def current(self, scope: Scope) -> sessions.Session | None:
        """The request's session, None without one; 401 when expired, signed out, signed by
        another key (e.g. before a restart), forged, or its holder is gone. Not counted by the
        throttle: an HMAC cannot be guessed, and stale cookies are common."""
        value = session_cookie(scope)
        if value is None:
            return None
        try:
            session = sessions.verify(self.key, value)
        except sessions.Invalid:
            raise self._unauthorized(
                scope, "invalid session: sign in again", failure=False
            ) from None
        if not self.live(session) or (session.fingerprint and self.holder(session) is None):
            raise self._unauthorized(scope, "session expired: sign in again", failure=False)
        return session

    def session_of(self, scope: Scope) -> tuple[User, sessions.Session] | None:
        """The write-token user of the request's cookie, None without a session or when it is
        an account's or an anonymous one (those may read, not write); 401 as ``current``."""
        session = self.current(scope)
        if session is None:
            return None
        holder = self.holder(session)
        return (holder, session) if isinstance(holder, User) else None

    def subject_from(self, scope: Scope, session: sessions.Session | None) -> Subject:
        address = _address(client_address(scope))
        if session is None:
            return Subject(address=address)
        holder = self.holder(session)
        if isinstance(holder, User):
            return Subject(holder.name, token_roles(holder), address, session.terms)
        if isinstance(holder, Account | External):
            return Subject(holder.name, frozenset(holder.roles), address, session.terms)
        return Subject(address=address, agreed=session.terms)

    def subject_of(self, scope: Scope) -> Subject:
        """Who reads (for access control): from the session cookie, anonymous when there is
        none or it is no longer valid. Never a Bearer token: images are authorised by cookie
        and address only (IIIF Auth); see ``subject_of_token`` for info.json and probes."""
        try:
            session = self.current(scope)
        except Unauthorized:
            session = None
        return self.subject_from(scope, session)

    # ---- IIIF access tokens (for info.json and probe requests only) ------------------------

    def access_token(self, session: sessions.Session) -> str:
        """An opaque token, different from the cookie value, naming ``session``; short-lived."""
        max_age = min(
            self.settings.access_token_max_age, max(1, session.expires - int(self.wall()))
        )
        _, value = sessions.issue(
            self.key,
            session.fingerprint,
            self.wall(),
            max_age,
            terms=session.terms,
            sid=session.sid,
            purpose=sessions.ACCESS,
        )
        return value

    def token_session(self, token: str) -> sessions.Session | None:
        """The live session an access token names, None when invalid, expired or signed out."""
        try:
            session = sessions.verify(self.key, token, sessions.ACCESS)
        except sessions.Invalid:
            return None
        if not self.live(session) or (session.fingerprint and self.holder(session) is None):
            return None
        return session

    def subject_of_token(self, scope: Scope) -> Subject:
        """Who asks for an info.json or a probe: the ``Authorization: Bearer`` access token's
        session, else the cookie's (same-origin clients), else anonymous."""
        auth = header(scope, b"authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.subject_from(scope, self.token_session(token.strip()))
        return self.subject_of(scope)

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

    def _state(self, session: sessions.Session | None) -> dict[str, Any]:
        holder = self.holder(session) if session is not None else None
        if session is None:
            return {"user": None, "editor": False}
        expires = datetime.fromtimestamp(session.expires, UTC).isoformat(timespec="seconds")
        return {
            "user": holder.name if holder is not None else None,
            "editor": isinstance(holder, User) and holder.editor,
            "writer": isinstance(holder, User),
            "roles": sorted(holder.roles) if isinstance(holder, Account | External) else [],
            "terms": session.terms,
            "expires": expires.replace("+00:00", "Z"),
            "csrf": sessions.csrf_value(self.key, session),
        }

    def cookie(self, scope: Scope, value: str, max_age: int) -> str:
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
            session = self.current(request.scope)
        except Unauthorized:  # a stale cookie: say so, and drop it
            return self._json(self._state(None), cookie=self.cookie(request.scope, "", 0))
        return self._json(self._state(session))

    # ---- signing in and out (shared with the IIIF access services in web/auth.py) ----------

    def new_session(
        self, scope: Scope, fingerprint: str, *, terms: bool = False
    ) -> tuple[sessions.Session, str]:
        """A new session and the Set-Cookie value that carries it."""
        max_age = self.settings.session_max_age
        session, value = sessions.issue(self.key, fingerprint, self.wall(), max_age, terms=terms)
        return session, self.cookie(scope, value, max_age)

    def token_sign_in(self, scope: Scope, token: str) -> tuple[sessions.Session, str]:
        self.throttle.check(client_address(scope), self.clock())
        self._token_user(scope, token)
        fp = sessions.fingerprint(self.key, token)
        old = self.quiet_current(scope)
        return self.new_session(scope, fp, terms=bool(old and old.terms))

    async def password_sign_in(
        self, scope: Scope, name: str, password: str
    ) -> tuple[sessions.Session, str]:
        """A session for a local account; 401 on a wrong name or password, 429 when the address
        or the account has failed too often (both counted)."""
        now = self.clock()
        address = client_address(scope)
        self.throttle.check(address, now)
        self.account_throttle.check("user:" + name.lower(), now)
        account = await anyio.to_thread.run_sync(
            self.accounts.login, name, password, limiter=self.checking
        )
        if account is None:
            self.throttle.fail(address, self.clock())
            self.account_throttle.fail("user:" + name.lower(), self.clock())
            raise Unauthorized("wrong user name or password", headers=CHALLENGE)
        self._accounts_seen.pop(account.name, None)
        old = self.quiet_current(scope)
        return self.new_session(
            scope, f"{ACCOUNT_PREFIX}{account.name}:{account.stamp}", terms=bool(old and old.terms)
        )

    def external_sign_in(self, scope: Scope, user: External) -> tuple[sessions.Session, str]:
        """A session for a user the OpenID provider signed in (roles from its claims)."""
        old = self.quiet_current(scope)
        return self.new_session(scope, oidc_fingerprint(user), terms=bool(old and old.terms))

    def agree(self, scope: Scope) -> tuple[sessions.Session, str]:
        """The session, signed in or not, with the clickthrough terms accepted."""
        old = self.quiet_current(scope)
        return self.new_session(scope, old.fingerprint if old else "", terms=True)

    def sign_out(self, scope: Scope) -> str:
        """Ends the request's session (its access tokens stop working) and the cookie clearing
        it."""
        old = self.quiet_current(scope)
        if old is not None:
            self.revocations.revoke(old.sid, old.expires)
        return self.cookie(scope, "", 0)

    def quiet_current(self, scope: Scope) -> sessions.Session | None:
        try:
            return self.current(scope)
        except Unauthorized:
            return None

    async def _sign_in(self, request: Request) -> Response:
        scope = request.scope
        self.check_origin(scope)
        self.throttle.check(client_address(scope), self.clock())
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise BadRequest(USAGE)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SIGN_IN_BODY:
                raise PayloadTooLarge("sign-in body too large")
        try:
            doc = json.loads(body)
        except ValueError:
            raise BadRequest(USAGE) from None
        if not isinstance(doc, dict):
            raise BadRequest(USAGE)
        token, name, password = doc.get("token"), doc.get("user"), doc.get("password")
        if isinstance(token, str) and token.strip():
            session, cookie = self.token_sign_in(scope, token.strip())
        elif isinstance(name, str) and name and isinstance(password, str) and password:
            session, cookie = await self.password_sign_in(scope, name, password)
        else:
            raise BadRequest(USAGE)
        return self._json(self._state(session), cookie=cookie)

    async def _sign_out(self, request: Request) -> Response:
        self.check_origin(request.scope)
        return self._json(self._state(None), cookie=self.sign_out(request.scope))

    def routes(self) -> list[BaseRoute]:
        """``GET /session`` (who is signed in, and the CSRF value), ``POST /session``
        (sign in with {"token": …} or {"user": …, "password": …}), ``DELETE /session`` (sign
        out). No CORS headers: other
        origins may not read them."""
        return [
            Route(SESSION_PATH, self._who, methods=["GET", "HEAD"]),
            Route(SESSION_PATH, self._sign_in, methods=["POST"]),
            Route(SESSION_PATH, self._sign_out, methods=["DELETE"]),
        ]
