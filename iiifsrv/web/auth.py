"""Access control over HTTP: the one ``require`` every route calls, the cache headers of
protected responses, and the IIIF Auth routes (Auth 2.0 probe, access, token and logout;
Auth 1.0 login, clickthrough, kiosk, external, token and logout) over the one session of
web/credentials.py; with ``oidc_issuer`` set, also the OpenID Connect routes of web/oidc.py,
offered on the login page.

HTTP layer: imports Starlette, access (rules, book, services), credentials, errors, service and
web.respond. The decision itself is access.rules.decide; nothing here decides by itself.
"""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iiifsrv.access import services as svc
from iiifsrv.access import sessions
from iiifsrv.access.book import RuleBook
from iiifsrv.access.rules import (
    DEGRADE,
    DENY,
    PUBLIC,
    Decision,
    Resource,
    Rule,
    Subject,
    decide,
    governed,
)
from iiifsrv.access.sessions import Session
from iiifsrv.conditional import CORS_HEADERS, PREFLIGHT_HEADERS
from iiifsrv.errors import BadRequest, Forbidden, IIIFError, Unauthorized, Unavailable
from iiifsrv.iiif.model import Limits
from iiifsrv.settings import Settings
from iiifsrv.sources import composite, computed
from iiifsrv.web.credentials import Credentials, session_cookie
from iiifsrv.web.page_security import html_response
from iiifsrv.web.respond import base_url, error_response

DECISION_KEY = "iiifsrv.access"  # where the Image API keeps a request's decision
PRIVATE_KEY = "iiifsrv.access.private"  # set: the response shows protected annotations
PRIVATE = "private, no-cache"
NO_STORE = "no-store"
FORM_COOKIE = "iiifsrv_form"
_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.\-]{1,253}(?::[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?$"
)


def denied(decision: Decision, what: str = "this material") -> IIIFError:
    """The error of a refused request: 401 when signing in or agreeing may help, else 403."""
    headers = {"Cache-Control": NO_STORE, "Vary": "Cookie"}
    if decision.status == 401:
        return Unauthorized(f"{what} is restricted: sign in to see it", headers=headers)
    return Forbidden(f"{what} is restricted", headers=headers)


def protect(decision: Decision, headers: dict[str, str], *, bearer: bool = False) -> None:
    """Make a response governed by a rule private to its requester: ``private, no-cache`` (a
    browser may keep it, revalidating each time; no shared cache may) and Vary on what decided."""
    if not decision.protected:
        return
    headers["Cache-Control"] = PRIVATE
    varies = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    for name in ("Cookie", "Authorization") if bearer else ("Cookie",):
        if name not in varies:
            varies.append(name)
    headers["Vary"] = ", ".join(varies)


def split_tier(identifier: str) -> tuple[str, bool]:
    """(the image identifier, whether the degraded tier was asked for)."""
    prefix = svc.TIER + "/"
    if identifier.startswith(prefix):
        return identifier[len(prefix) :], True
    return identifier, False


def tier_limits(limits: Limits, size: int) -> Limits:
    """The server's limits narrowed to ``size`` pixels on the long side."""
    return Limits(
        min(limits.width, size) if limits.width else size,
        min(limits.height, size) if limits.height else size,
        limits.max_area,
    )


def image_resource(identifier: str) -> Resource:
    """An image identifier as a resource: composites and computed images name their bands, each
    decided alone."""
    try:
        name = composite.parse(identifier)
        if name is not None:
            parts = tuple(f"{name.object_id}/{b}" for b in (name.bands or ()))
            return Resource(identifier, name.object_id, parts)
        made = computed.parse(identifier)
        if made is not None:
            parts = tuple(f"{made.object_id}/{b}" for b in made.bands)
            return Resource(identifier, made.object_id, parts)
    except IIIFError:
        pass
    return Resource(identifier)


class Access:
    """The rules in force and the one place a route asks about access."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self.credentials = credentials
        path = Path(settings.access_rules) if settings.access_rules else None
        self.book = RuleBook(path, settings.access_reload)
        # Whether a rule governs a resource, per rule set in force: resources no rule governs
        # are public for everyone, decided without reading a cookie.
        self._governed_rules: tuple[Rule, ...] = ()
        self._governed: dict[Resource, bool] = {}

    @property
    def active(self) -> bool:
        """Whether any rule is in force (without rules no cookie is even read)."""
        return bool(self.book.rules())

    def _is_governed(self, resource: Resource, rules: tuple[Rule, ...]) -> bool:
        if rules is not self._governed_rules:
            self._governed_rules, self._governed = rules, {}
        known = self._governed.get(resource)
        if known is None:
            if len(self._governed) >= 50_000:
                self._governed.clear()
            known = self._governed[resource] = governed(resource, rules)
        return known

    def subject(self, scope: Scope, *, bearer: bool = False) -> Subject:
        if bearer:
            return self.credentials.subject_of_token(scope)
        return self.credentials.subject_of(scope)

    def decision(self, scope: Scope, resource: Resource, *, bearer: bool = False) -> Decision:
        rules = self.book.rules()
        if not rules or not self._is_governed(resource, rules):
            return PUBLIC
        return decide(self.subject(scope, bearer=bearer), resource, rules)

    def require(
        self,
        scope: Scope,
        resource: Resource,
        *,
        whole: bool = True,
        what: str = "this material",
    ) -> Decision:
        """The decision for a request, or the 401/403 error when it is denied. ``whole``:
        the response is the full-resolution resource (spectra, media, a band's values), for
        which a degraded decision is a denial too."""
        decision = self.decision(scope, resource)
        if decision.kind == DENY or (whole and decision.kind == DEGRADE):
            raise denied(decision, what)
        return decision

    def visible(self, scope: Scope, resources: list[Resource]) -> list[Decision]:
        """Decisions for listings: denied entries are left out by the caller."""
        rules = self.book.rules()
        if not rules:
            return [PUBLIC] * len(resources)
        subject = self.subject(scope)
        return [decide(subject, r, rules) for r in resources]

    # ---- the IIIF Auth routes -----------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return AuthRoutes(self).routes()


def valid_origin(value: str | None) -> str | None:
    """A client origin (scheme://host[:port], http or https), or None."""
    if not value or len(value) > 300 or not _ORIGIN.match(value):
        return None
    return value


def _script_json(doc: Any) -> str:
    """JSON that is safe inside <script>: no <, >, & or line separators unescaped."""
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


CLOSE_JS = "window.close();\n"
CLOSE_SCRIPT = '<script src="/auth/close.js"></script>'


def page(title: str, body: str, *, close: bool = False) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:30em;margin:3em auto;"
        "padding:0 1em}label{display:block;margin:.6em 0}input{font:inherit;width:100%}"
        "button{font:inherit;padding:.4em 1.2em}</style>"
        f"{CLOSE_SCRIPT if close else ''}</head><body>{body}</body></html>"
    )


def _walk(node: Any) -> Any:
    """Every dict in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def declare_probes(access: Access, body: bytes, base: str) -> bytes:
    """A manifest with the Auth 2.0 probe (and its access services) added to every painted
    image whose image service is protected, and the auth context: the same for every client
    (the description is public; what a client may see is the probe's answer)."""
    rules = access.book.rules()
    if not rules:
        return body
    doc = json.loads(body)
    prefix = f"{base}/iiif/"
    changed = False
    for node in list(_walk(doc)):
        if node.get("type") != "Image" or not isinstance(node.get("service"), list):
            continue
        for service in node["service"]:
            sid = str(service.get("id") or service.get("@id") or "")
            if not sid.startswith(prefix) or sid[len(prefix) : len(prefix) + 2] not in ("3/", "2/"):
                continue
            identifier = unquote(sid[len(prefix) + 2 :])
            decision = decide(Subject(), image_resource(identifier), rules)
            if decision.rule is not None:
                node["service"].append(svc.probe_service(base, identifier, decision.rule))
                changed = True
                break
    if not changed:
        return body
    context = doc.get("@context")
    contexts = context if isinstance(context, list) else [context] if context else []
    if svc.AUTH2_CONTEXT not in contexts:
        doc["@context"] = [svc.AUTH2_CONTEXT, *contexts]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


MANIFESTS = "/iiif/manifests/"
ObjectsOf = Callable[[str], tuple[str, ...]]


def manifest_of(uri: str) -> str | None:
    """The manifest id a canvas or manifest URI (or key) of this server names, else None."""
    path = urlsplit(uri.split("#", 1)[0]).path
    at = path.find(MANIFESTS)
    if at < 0:
        return None
    rest = path[at + len(MANIFESTS) :]
    rest = rest.split("/canvas/", 1)[0]
    return unquote(rest) or None


class AnnotationGuard:
    """Annotations, annotation pages and Content Search hits on the canvases of a restricted
    manifest (one of whose catalogue objects is denied) are refused: the ASGI wrapper of the
    /annotations, /annotot and /sas mounts. It reads the canvas or manifest a request names
    from the path (W3C containers, search) or the ``uri`` parameter (Annotot, SAS)."""

    def __init__(self, app: ASGIApp, access: Access, objects_of: ObjectsOf) -> None:
        self.app = app
        self.access = access
        self.objects_of = objects_of

    def _named(self, scope: Scope) -> list[str]:
        from iiifsrv.annotations.urls import decode_uri

        names = []
        for segment in scope.get("path", "").split("/"):
            uri = decode_uri(segment) if len(segment) >= 8 else None
            if uri:
                names.append(uri)
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == "uri":
                names.append(value)
        return names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.access.active:
            return await self.app(scope, receive, send)
        for uri in self._named(scope):
            manifest = manifest_of(uri)
            if manifest is None:
                continue
            objects = await anyio.to_thread.run_sync(self.objects_of, manifest)
            for obj in objects:
                decision = self.access.decision(scope, Resource(obj, obj))
                if decision.kind == DENY:
                    await error_response(send, denied(decision, "annotations of this canvas"))
                    return
                if decision.protected:
                    scope[PRIVATE_KEY] = True

        async def private_send(message: Message) -> None:
            # Annotations of a protected canvas (or search hits on one, which web/visibility.py
            # marks while answering) are private to their reader, as protected images are.
            if message["type"] == "http.response.start" and scope.get(PRIVATE_KEY):
                message = {**message, "headers": _private_headers(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, private_send)


def _private_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers made ``private`` (``no-store`` stays) with ``Cookie`` in ``Vary``."""
    out: list[tuple[bytes, bytes]] = []
    varies: list[str] = []
    control = b""
    for name, value in raw:
        lower = name.lower()
        if lower == b"cache-control":
            control = value
        elif lower == b"vary":
            varies += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
        else:
            out.append((name, value))
    out.append((b"cache-control", control if b"no-store" in control else PRIVATE.encode()))
    if "cookie" not in {v.lower() for v in varies}:
        varies.append("Cookie")
    out.append((b"vary", ", ".join(varies).encode("latin-1")))
    return out


class AuthRoutes:
    def __init__(self, access: Access) -> None:
        self.access = access
        self.creds = access.credentials
        self.settings = access.settings

    # -- forms: a per-form secret in a Strict cookie, its HMAC in the form -----------------------

    def _form_pair(self) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(16)
        return nonce, sessions.form_mac(self.creds.key, nonce)

    def _form_ok(self, scope: Scope, given: str) -> bool:
        return sessions.form_ok(self.creds.key, cookie_value(scope, FORM_COOKIE), given)

    def _form_cookie(self, scope: Scope, nonce: str, max_age: int = 900) -> str:
        base = urlsplit(base_url(scope, self.settings.public_url))
        secure = "; Secure" if base.scheme == "https" else ""
        return (
            f"{FORM_COOKIE}={nonce}; Path={base.path or '/'}; Max-Age={max_age}; HttpOnly; "
            f"SameSite=Strict{secure}"
        )

    def _form_page(self, request: Request, title: str, inner: str, status: int = 200) -> Response:
        nonce, mac = self._form_pair()
        body = inner.replace("{csrf}", f'<input type=hidden name=csrf value="{mac}">')
        response = html_response(page(title, body), headers={"Cache-Control": NO_STORE})
        response.status_code = status
        response.headers.append("Set-Cookie", self._form_cookie(request.scope, nonce))
        return response

    def _done(self, request: Request, message: str, cookie: str | None) -> Response:
        body = f"<h1>{html.escape(message)}</h1><p>You may close this window.</p>"
        response = html_response(page(message, body, close=True), {"Cache-Control": NO_STORE})
        if cookie:
            response.headers.append("Set-Cookie", cookie)
        response.headers.append("Set-Cookie", self._form_cookie(request.scope, "", 0))
        return response

    async def _posted(self, request: Request) -> dict[str, str]:
        self.creds.check_origin(request.scope)
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise BadRequest("send the form as application/x-www-form-urlencoded")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:
                raise BadRequest("form too large")
        from urllib.parse import parse_qs

        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not self._form_ok(request.scope, fields.get("csrf", "")):
            raise Forbidden("the form expired or came from another site: reload the page")
        return fields

    # -- access services -------------------------------------------------------------------------

    LOGIN_FORM = (
        "<h1>Sign in</h1><p>Sign in to see restricted material.</p>"
        "<form method=post>{csrf}{error}"
        "<label>User name <input name=user autocomplete=username required></label>"
        "<label>Password <input name=password type=password autocomplete=current-password "
        "required></label><button type=submit>Sign in</button></form>"
    )

    def _login_form(self, request: Request, error: str = "") -> str:
        """The sign-in form, with "Sign in with <provider>" first when OpenID Connect is on."""
        form = self.LOGIN_FORM.replace("{error}", error)
        if self.settings.oidc_issuer:
            from iiifsrv.web.oidc import login_link

            link = login_link(request.scope, self.settings, dict(request.query_params))
            form = form.replace("<form ", link + "<form ", 1)
        return form

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._form_page(request, "Sign in", self._login_form(request))
        fields = await self._posted(request)
        try:
            _, cookie = await self.creds.password_sign_in(
                request.scope, fields.get("user", ""), fields.get("password", "")
            )
        except Unauthorized:
            error = "<p role=alert>Wrong user name or password.</p>"
            form = self._login_form(request, error)
            return self._form_page(request, "Sign in", form, status=401)
        return self._done(request, "You are signed in", cookie)

    async def clickthrough(self, request: Request) -> Response:
        if request.method == "GET":
            rules = [r for r in self.access.book.rules() if r.mode == "clickthrough"]
            t = svc.texts(rules[0]) if rules else {"heading": "Terms of use", "note": ""}
            form = (
                f"<h1>{html.escape(t['heading'])}</h1><p>{html.escape(t['note'])}</p>"
                "<form method=post>{csrf}<button type=submit>I agree</button></form>"
            )
            return self._form_page(request, "Terms of use", form)
        await self._posted(request)
        _, cookie = self.creds.agree(request.scope)
        return self._done(request, "Thank you", cookie)

    async def kiosk(self, request: Request) -> Response:
        """A session without interaction (kiosk machines): closes at once. What a kiosk may see
        is still decided by its address (location rules)."""
        session = self.creds.quiet_current(request.scope)
        if session is not None:
            return self._done(request, "Ready", None)
        _, cookie = self.creds.new_session(request.scope, "")
        return self._done(request, "Ready", cookie)

    async def external(self, request: Request) -> Response:
        """Auth 1.0 external: clients never open it; it says what the service is."""
        return html_response(
            page("Reading room", "<h1>Reading room</h1><p>Access follows your network.</p>"),
            {"Cache-Control": NO_STORE},
        )

    async def logout(self, request: Request) -> Response:
        cookie = self.creds.sign_out(request.scope)
        return self._done(request, "You are signed out", cookie)

    async def close_js(self, request: Request) -> Response:
        return Response(
            CLOSE_JS,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    # -- token services --------------------------------------------------------------------------

    def _aspect(self, request: Request) -> tuple[Session | None, str | None]:
        """The session behind a token request (None: none) and, when there is none, the error
        profile: missingAspect, or expiredAspect/invalidAspect for a cookie no longer valid."""
        if session_cookie(request.scope) is None:
            return None, "missingAspect"
        try:
            session = self.creds.current(request.scope)
        except Unauthorized as exc:
            return None, "expiredAspect" if "expired" in exc.message else "invalidAspect"
        except Unavailable:  # the sign-out list cannot be read: no token on a guess
            return None, "unavailable"
        return session, None

    def _token_for(self, request: Request) -> tuple[str, int] | str:
        """(token, expiresIn) or an error profile. An address in a location rule's ranges
        gets a token without a session (the external service): it names an anonymous
        session, and the address still decides."""
        session, error = self._aspect(request)
        if error == "unavailable":
            return error
        if session is None:
            rules = self.access.book.rules()
            address = self.creds.subject_of(request.scope).address
            located = address is not None and any(
                address.version == n.version and address in n for r in rules for n in r.locations
            )
            if not located:
                return error or "missingAspect"
            session, _ = self.creds.new_session(request.scope, "")
        token = self.creds.access_token(session)
        expires = max(
            1, min(self.settings.access_token_max_age, session.expires - int(self.creds.wall()))
        )
        return token, expires

    def _token_page(self, origin: str, message: dict[str, Any]) -> Response:
        """200 HTML whose script posts ``message`` to ``origin`` (the only page that may be
        framed: its frame-ancestors is that origin; a nonce lets its one inline script run)."""
        nonce = secrets.token_urlsafe(16)
        script = f"window.parent.postMessage({_script_json(message)}, {_script_json(origin)});"
        body = (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>token</title>"
            f'<script nonce="{nonce}">{script}</script></head><body></body></html>'
        )
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; "
            f"form-action 'none'; frame-ancestors {origin}"
        )
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": NO_STORE,
                "Vary": "Cookie",
            },
        )

    async def token2(self, request: Request) -> Response:
        """Auth 2.0 token service: always a 200 HTML page posting the message to ``origin``."""
        params = request.query_params
        message_id = params.get("messageId", "")
        origin = valid_origin(params.get("origin"))
        if origin is None:
            # no valid origin to post to: a page that posts nothing (and says why)
            return html_response(
                page("Invalid origin", "<p>invalidOrigin: origin must be scheme://host</p>"),
                {"Cache-Control": NO_STORE},
            )
        if not message_id or len(message_id) > 1000:
            msg = svc.token_error_2(
                message_id[:1000], "invalidRequest", "Invalid request", "messageId is missing"
            )
            return self._token_page(origin, msg)
        result = self._token_for(request)
        if isinstance(result, str):
            notes = {
                "missingAspect": ("Not signed in", "Sign in or accept the terms first."),
                "expiredAspect": ("Session expired", "Your session has ended: sign in again."),
                "invalidAspect": ("Session not valid", "Sign in again."),
                "unavailable": ("Try again later", "Sign-in cannot be checked right now."),
            }
            heading, note = notes.get(result, ("Access denied", ""))
            return self._token_page(origin, svc.token_error_2(message_id, result, heading, note))
        token, expires = result
        return self._token_page(origin, svc.token_message_2(message_id, token, expires))

    async def token1(self, request: Request) -> Response:
        """Auth 1.0 token service: HTML postMessage with ``messageId`` and ``origin``, else
        plain JSON (non-browser clients)."""
        params = request.query_params
        message_id = params.get("messageId")
        result = self._token_for(request)
        if isinstance(result, str):
            doc: dict[str, Any] = {
                "error": svc.ERRORS_1[result],
                "description": "sign in or accept the terms first",
            }
            status = 503 if result == "unavailable" else 401
        else:
            doc = {"accessToken": result[0], "expiresIn": result[1]}
            status = 200
        if message_id is None:
            return JSONResponse(
                doc, status_code=status, headers={"Cache-Control": NO_STORE, "Vary": "Cookie"}
            )
        origin = valid_origin(params.get("origin"))
        if origin is None:
            return html_response(
                page("Invalid origin", "<p>invalidOrigin: origin must be scheme://host</p>"),
                {"Cache-Control": NO_STORE},
            )
        doc["messageId"] = message_id[:1000]
        return self._token_page(origin, doc)

    # -- probe -----------------------------------------------------------------------------------

    async def probe(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=PREFLIGHT_HEADERS)
        identifier = request.path_params["identifier"]
        identifier, _ = split_tier(identifier)
        resource = image_resource(identifier)
        decision = self.access.decision(request.scope, resource, bearer=True)
        base = base_url(request.scope, self.settings.public_url)
        substitute = None
        if decision.kind == DEGRADE:
            encoded = svc.tier_identifier(quote(identifier, safe=""))
            substitute = {
                "id": f"{base}/iiif/3/{encoded}",
                "type": "ImageService3",
                "profile": "level2",
            }
        doc = svc.probe_result(decision, substitute)
        headers = {**CORS_HEADERS, "Cache-Control": NO_STORE, "Vary": "Authorization, Cookie"}
        return JSONResponse(doc, headers=headers, media_type="application/ld+json")

    def routes(self) -> list[BaseRoute]:
        form = ["GET", "HEAD", "POST"]
        external: list[BaseRoute] = []
        if self.settings.oidc_issuer:
            from iiifsrv.web.oidc import OidcRoutes

            external = OidcRoutes(self.settings, self.creds, self._done).routes()
        return [
            *external,
            Route(svc.LOGIN, self.login, methods=form),
            Route(svc.CLICKTHROUGH, self.clickthrough, methods=form),
            Route(svc.KIOSK, self.kiosk, methods=["GET", "HEAD"]),
            Route(svc.EXTERNAL, self.external, methods=["GET", "HEAD"]),
            Route(svc.LOGOUT, self.logout, methods=["GET", "HEAD", "POST"]),
            Route(svc.TOKEN1, self.token1, methods=["GET", "HEAD"]),
            Route(svc.TOKEN2, self.token2, methods=["GET", "HEAD"]),
            Route(svc.PROBE + "{identifier:path}", self.probe, methods=["GET", "HEAD", "OPTIONS"]),
            Route("/auth/close.js", self.close_js, methods=["GET", "HEAD"]),
        ]


def cookie_value(scope: Scope, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    from iiifsrv.web.respond import header

    raw = header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None
