"""Signing in at an external OpenID Connect provider: ``/auth/oidc/login`` sends the browser to
the provider (authorization code flow with PKCE, state and nonce), ``/auth/oidc/callback`` turns
its answer into the same session cookie a local sign-in makes, so IIIF Auth 2.0 and 1.0, tiles
and everything else work unchanged.

HTTP layer: imports Starlette, Authlib's httpx client (the ``[oidc]`` extra), access.oidc,
errors, settings, web.auth (page helpers), web.credentials and web.respond.
"""

from __future__ import annotations

import hmac
import html
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from iiifsrv.access import oidc
from iiifsrv.settings import Settings, SettingsError
from iiifsrv.web.auth import NO_STORE, cookie_value, page, valid_origin
from iiifsrv.web.credentials import Credentials
from iiifsrv.web.page_security import html_response
from iiifsrv.web.respond import base_url

log = logging.getLogger("iiifsrv.access.oidc")

LOGIN = "/auth/oidc/login"
CALLBACK = "/auth/oidc/callback"
STATE_COOKIE = "iiifsrv_oidc"
STATE_MAX_AGE = 600  # seconds a sign-in may take at the provider
METADATA_MAX_AGE = 3600  # seconds the provider's metadata and keys are kept
JWKS_MIN_REFRESH = 60  # an unknown key fetches the key set again at most this often
TIMEOUT = 10.0  # seconds for one request to the provider
RETRY_AFTER = 5.0  # seconds after a failed discovery before the provider is asked again


try:  # the HTTP client Authlib uses (the [oidc] extra): its errors are transport failures
    from httpx2 import HTTPError as _HTTPError

    TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (_HTTPError, OSError)
except ImportError:  # pragma: no cover - without the extra OidcRoutes refuses to start
    TRANSPORT_ERRORS = (OSError,)


class ProviderError(Exception):
    """The provider could not be reached or gave an unusable answer (502)."""


def provider_name(settings: Settings) -> str:
    return settings.oidc_name or urlsplit(settings.oidc_issuer).hostname or "your institution"


def login_link(scope: Scope, settings: Settings, query: dict[str, str]) -> str:
    """The "Sign in with <provider>" link of the sign-in page (carrying origin and return)."""
    base = base_url(scope, settings.public_url)
    kept = {}
    origin = valid_origin(query.get("origin"))
    if origin:
        kept["origin"] = origin
    back = oidc.safe_return(query.get("return"))
    if back:
        kept["return"] = back
    href = base + LOGIN + ("?" + urlencode(kept) if kept else "")
    return (
        f'<p><a href="{html.escape(href)}" id=oidc-login>Sign in with '
        f"{html.escape(provider_name(settings))}</a></p><p>or with a local account:</p>"
    )


class OidcRoutes:
    """The relying party: one per application, built only when ``oidc_issuer`` is set."""

    def __init__(
        self,
        settings: Settings,
        credentials: Credentials,
        done: Callable[[Request, str, str | None], Response],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        try:
            from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: F401
        except ImportError:
            raise SettingsError(
                "setting 'oidc_issuer' needs the [oidc] extra: pip install 'iiifsrv[oidc]'"
            ) from None
        self.settings = settings
        self.creds = credentials
        self.done = done
        self.wall = wall
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.scopes = " ".join(dict.fromkeys(["openid", *settings.oidc_scopes.split()]))
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None
        self._failed = -1e18  # when the discovery document last failed

    # -- talking to the provider -----------------------------------------------------------------

    def _client(self, redirect_uri: str = "") -> Any:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=self.settings.oidc_client_secret,
            token_endpoint_auth_method="client_secret_basic",
            scope=self.scopes,
            redirect_uri=redirect_uri or None,
            code_challenge_method="S256",
            timeout=TIMEOUT,
            follow_redirects=False,
        )

    async def _get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> Any:
        try:
            async with self._client() as client:
                response = await client.request("GET", url, headers=headers, withhold_token=True)
        except TRANSPORT_ERRORS as exc:  # connection refused, timeout, TLS, a broken answer
            raise ProviderError(f"{what}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderError(f"{what}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{what}: not JSON") from None

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached), checked to name our issuer."""
        now = self.wall()
        if self._metadata is not None and now - self._metadata[0] < METADATA_MAX_AGE:
            return self._metadata[1]
        if now - self._failed < RETRY_AFTER:  # a provider that is down is not asked per request
            raise ProviderError("discovery document: failed moments ago")
        try:
            doc = await self._get_json(
                self.issuer + "/.well-known/openid-configuration", "discovery document"
            )
        except ProviderError:
            self._failed = now
            raise
        if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise ProviderError("discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise ProviderError(f"discovery document lacks {key}")
        self._metadata = (now, doc)
        return doc

    async def jwks(self, *, refresh: bool = False) -> dict[str, Any]:
        now = self.wall()
        cached = self._jwks
        if (
            cached is not None
            and now - cached[0] < METADATA_MAX_AGE
            and (not refresh or now - cached[0] < JWKS_MIN_REFRESH)
        ):
            return cached[1]
        meta = await self.metadata()
        doc = await self._get_json(meta["jwks_uri"], "key set (JWKS)")
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ProviderError("key set (JWKS) is not a JWK set")
        self._jwks = (now, doc)
        return doc

    async def _exchange(
        self, meta: dict[str, Any], redirect_uri: str, code: str, verifier: str
    ) -> Any:
        from authlib.integrations.base_client import OAuthError

        try:
            async with self._client(redirect_uri) as client:
                return await client.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=verifier
                )
        except OAuthError as exc:
            return exc
        except ValueError:
            raise ProviderError("token endpoint: not JSON") from None
        except TRANSPORT_ERRORS as exc:
            raise ProviderError(f"token endpoint: {type(exc).__name__}") from None

    async def _verified(self, id_token: str, nonce: str, access_token: str) -> dict[str, Any]:
        meta = await self.metadata()
        for refresh in (False, True):
            jwks = await self.jwks(refresh=refresh)
            try:
                return oidc.verify_id_token(
                    id_token,
                    jwks,
                    issuer=str(meta["issuer"]),
                    client_id=self.settings.oidc_client_id,
                    nonce=nonce,
                    access_token=access_token,
                    now=self.wall(),
                )
            except oidc.TokenRejected as exc:
                if refresh or not str(exc).startswith("signature"):
                    raise
        raise AssertionError("unreachable")

    async def _userinfo(self, meta: dict[str, Any], access_token: str, sub: str) -> dict[str, Any]:
        url = meta.get("userinfo_endpoint")
        if not isinstance(url, str) or not access_token:
            return {}
        doc = await self._get_json(
            url, "userinfo endpoint", headers={"Authorization": f"Bearer {access_token}"}
        )
        if not isinstance(doc, dict) or doc.get("sub") != sub:
            raise ProviderError("userinfo endpoint answered for another subject")
        return doc

    # -- pages -----------------------------------------------------------------------------------

    def _state_cookie(self, scope: Scope, value: str, max_age: int) -> str:
        base = urlsplit(base_url(scope, self.settings.public_url))
        secure = "; Secure" if base.scheme == "https" else ""
        path = (base.path.rstrip("/") or "") + "/auth/oidc"
        return (
            f"{STATE_COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; "
            f"SameSite=Lax{secure}"
        )

    def _failure(self, request: Request, status: int, heading: str, message: str) -> Response:
        start = base_url(request.scope, self.settings.public_url) + "/auth/login"
        body = (
            f"<h1>{html.escape(heading)}</h1><p role=alert>{html.escape(message)}</p>"
            f'<p><a href="{html.escape(start)}">Sign in again</a></p>'
        )
        response = html_response(page(heading, body), {"Cache-Control": NO_STORE})
        response.status_code = status
        response.headers.append("Set-Cookie", self._state_cookie(request.scope, "", 0))
        return response

    def _unreachable(self, request: Request, exc: ProviderError) -> Response:
        log.warning("OpenID provider %s: %s", self.issuer, exc)
        name = provider_name(self.settings)
        return self._failure(
            request,
            502,
            "Sign-in service unavailable",
            f"{name} cannot be reached or gave an unusable answer; try again later.",
        )

    def _redirect_uri(self, scope: Scope) -> str:
        return base_url(scope, self.settings.public_url) + CALLBACK

    async def login(self, request: Request) -> Response:
        """Redirect to the provider's authorization endpoint; the state, nonce, PKCE verifier
        and return path wait in a signed Lax cookie scoped to /auth/oidc."""
        from authlib.common.security import generate_token

        try:
            meta = await self.metadata()
        except ProviderError as exc:
            return self._unreachable(request, exc)
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        query = request.query_params
        doc = {
            "s": state,
            "n": nonce,
            "v": verifier,
            "r": oidc.safe_return(query.get("return")),
        }
        async with self._client(self._redirect_uri(request.scope)) as client:
            url, _ = client.create_authorization_url(
                meta["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        value = oidc.seal_state(self.creds.key, doc, self.wall(), STATE_MAX_AGE)
        response = Response(status_code=303, headers={"Location": url, "Cache-Control": NO_STORE})
        response.headers.append(
            "Set-Cookie", self._state_cookie(request.scope, value, STATE_MAX_AGE)
        )
        return response

    async def callback(self, request: Request) -> Response:
        query = request.query_params
        doc = oidc.open_state(
            self.creds.key, cookie_value(request.scope, STATE_COOKIE), self.wall()
        )
        if doc is None:
            return self._failure(
                request, 400, "Sign-in expired", "This sign-in expired or was already finished."
            )
        if not hmac.compare_digest(str(query.get("state", "")).encode(), str(doc["s"]).encode()):
            return self._failure(
                request, 400, "Sign-in refused", "The sign-in answer does not match (state)."
            )
        try:
            meta = await self.metadata()
        except ProviderError as exc:
            return self._unreachable(request, exc)
        iss = query.get("iss")
        if iss is not None and iss.rstrip("/") != self.issuer:  # RFC 9207: no mix-up
            return self._failure(
                request, 400, "Sign-in refused", "The answer names another issuer."
            )
        if query.get("error"):
            reason = str(query.get("error_description") or query["error"])[:200]
            return self._failure(
                request, 403, "Not signed in", f"{provider_name(self.settings)}: {reason}"
            )
        code = query.get("code", "")
        if not code:
            return self._failure(request, 400, "Sign-in refused", "The answer has no code.")
        try:
            token = await self._exchange(meta, self._redirect_uri(request.scope), code, doc["v"])
        except ProviderError as exc:
            return self._unreachable(request, exc)
        if not isinstance(token, dict):  # an OAuth error from the token endpoint
            error = str(getattr(token, "error", ""))
            if error != "invalid_grant":  # server_error, invalid_client (our settings), ...
                return self._unreachable(request, ProviderError(f"token endpoint: {error}"))
            log.info("OpenID sign-in: the token endpoint refused the code (invalid_grant)")
            return self._failure(
                request, 400, "Sign-in refused", "The sign-in code was refused (used or expired)."
            )
        id_token, access_token = token.get("id_token"), str(token.get("access_token") or "")
        if not isinstance(id_token, str):
            return self._unreachable(request, ProviderError("token endpoint: no id_token"))
        try:
            claims = await self._verified(id_token, doc["n"], access_token)
            userinfo = await self._userinfo(meta, access_token, str(claims["sub"]))
        except oidc.TokenRejected as exc:
            log.warning("OpenID sign-in: ID token rejected: %s", exc)
            return self._failure(
                request, 400, "Sign-in refused", f"The ID token was rejected: {exc}."
            )
        except ProviderError as exc:
            return self._unreachable(request, exc)
        user = oidc.user_from({**userinfo, **claims}, self.settings.oidc_roles_claim)
        _, cookie = self.creds.external_sign_in(request.scope, user)
        log.info("OpenID sign-in: %s, roles %s", user.name, ",".join(user.roles) or "-")
        back = doc.get("r") or ""
        if back:
            target = base_url(request.scope, self.settings.public_url) + back
            response = self._continue(target)
        else:
            response = self.done(request, "You are signed in", None)
        response.headers.append("Set-Cookie", cookie)
        response.headers.append("Set-Cookie", self._state_cookie(request.scope, "", 0))
        return response

    @staticmethod
    def _continue(target: str) -> Response:
        """A page that goes on to ``target``: a same-site navigation, so the Strict session
        cookie goes with it (after a redirect chain from the provider it would not)."""
        link = html.escape(target)
        body = f'<p>You are signed in. <a href="{link}">Continue</a></p>'
        text = page("Signed in", body).replace(
            "</head>", f'<meta http-equiv=refresh content="0;url={link}"></head>', 1
        )
        return html_response(text, {"Cache-Control": NO_STORE})

    def routes(self) -> list[BaseRoute]:
        return [
            Route(LOGIN, self.login, methods=["GET"]),
            Route(CALLBACK, self.callback, methods=["GET"]),
        ]
