"""OpenID Connect without HTTP: the checks of an ID token (signature by the provider's JWKS,
issuer, audience, nonce, expiry), a user's name and roles from its claims, the signed state of a
login in progress, and return paths that stay on this server.

Imports the standard library, access.accounts and access.sessions; the token checks import
Authlib and joserfc (the ``[oidc]`` extra) when first called.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from iiifsrv.access import sessions
from iiifsrv.access.accounts import NAME, ROLE

PREFIX = "oidc:"  # a session fingerprint naming an external (OpenID Connect) user
MAX_ROLES_CHARS = 1500  # what a session cookie may carry of a user's roles
# Asymmetric signatures only: "none" and HMAC (keyed with the client secret) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
LEEWAY = 60  # seconds of clock difference tolerated on exp/iat


class TokenRejected(ValueError):
    """An ID token that fails a check; the message names the check, never the token."""


@dataclass(frozen=True)
class External:
    """A user signed in at the OpenID provider: a display name, and the roles the provider's
    roles claim gave at sign-in (kept in the signed session until it ends)."""

    name: str
    roles: tuple[str, ...]


def fingerprint(user: External) -> str:
    """The session fingerprint of an external user: ``oidc:<name>:<role>,<role>``."""
    return f"{PREFIX}{user.name}:{','.join(user.roles)}"


def from_fingerprint(value: str) -> External | None:
    if not value.startswith(PREFIX):
        return None
    name, _, roles = value[len(PREFIX) :].partition(":")
    return External(name, tuple(r for r in roles.split(",") if r))


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path (``realm_access.roles``), None when absent."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def roles_from(claims: dict[str, Any], path: str) -> tuple[str, ...]:
    """The roles a claim grants: a list of strings, or one string (space or comma separated).
    Values that are not valid role names are left out; so is the catch-all ``*``; the total is
    capped so the session cookie stays small."""
    value = claim(claims, path)
    if isinstance(value, str):
        values: list[Any] = re.split(r"[\s,]+", value)
    elif isinstance(value, list):
        values = value
    else:
        return ()
    out: list[str] = []
    size = 0
    for item in values:
        if not isinstance(item, str) or not ROLE.match(item) or item in out:
            continue
        size += len(item) + 1
        if size > MAX_ROLES_CHARS:
            break
        out.append(item)
    return tuple(sorted(out))


def user_from(claims: dict[str, Any], roles_claim: str) -> External:
    """Who signed in: the first of preferred_username, email, sub that is a valid user name
    (else ``sub`` made into one), and the roles of ``roles_claim``."""
    for key in ("preferred_username", "email", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and NAME.match(value):
            return External(value, roles_from(claims, roles_claim))
    sub = re.sub(r"[^A-Za-z0-9._@-]", "_", str(claims.get("sub", "user")))[:64].lstrip("._@-")
    return External(sub or "user", roles_from(claims, roles_claim))


def safe_return(value: str | None) -> str:
    """A return path after sign-in that stays on this server (``/viewer/uv?...``), else ""
    (no open redirect: no scheme, no host, no ``//``, no backslash, no control characters)."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return ""
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x21 or c == "\x7f" for c in value):
        return ""
    return value


# -- the state of a login in progress: a signed, short-lived value in a cookie -------------

STATE_PURPOSE = "oidc-state"


def seal_state(key: bytes, doc: dict[str, Any], now: float, max_age: int) -> str:
    """``doc`` (state, nonce, PKCE verifier, return path) signed with an expiry."""
    payload = json.dumps({**doc, "exp": int(now) + max_age}, separators=(",", ":")).encode()
    return sessions.sign(key, STATE_PURPOSE, payload)


def open_state(key: bytes, value: str | None, now: float) -> dict[str, Any] | None:
    """The login state of a cookie value, None when missing, forged or expired."""
    if not value:
        return None
    payload = sessions.unsign(key, STATE_PURPOSE, value)
    if payload is None:
        return None
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict) or int(doc.get("exp", 0)) < now:
        return None
    return doc


# -- the ID token ---------------------------------------------------------------------------


def verify_id_token(
    id_token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    access_token: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of an ID token from the token endpoint, after checking its signature against
    the provider's keys and its iss, aud (and azp), exp, iat, nonce and at_hash (OpenID Connect
    Core 3.1.3.7). TokenRejected says which check failed."""
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenRejected(f"the provider's keys (JWKS) are not usable: {exc}") from None
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
    except JoseError as exc:
        raise TokenRejected(f"signature not valid ({exc.error})") from None
    except (ValueError, TypeError):
        raise TokenRejected("not a signed JWT") from None
    claims = CodeIDToken(
        token.claims,
        token.header,
        options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "exp": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
        params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    try:
        claims.validate(now=int(time.time() if now is None else now), leeway=LEEWAY)
    except JoseError as exc:
        detail = f"{exc.error} {exc.description or ''}".strip()
        raise TokenRejected(f"claim check failed: {detail}") from None
    return dict(claims)
