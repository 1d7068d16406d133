"""Session cookie values: HMAC-signed (user's token fingerprint, expiry, session id), and the CSRF
value bound to a session. Pure: the standard library only; the key and clock are passed in.

A value is ``<base64url(JSON payload)>.<base64url(HMAC-SHA256)>``; it never contains the token,
only a keyed fingerprint of it, so a session ends when its token is removed from the settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

VERSION = 1


def new_secret() -> str:
    """A random signing key (used when the ``session_secret`` setting is empty)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, data: bytes) -> bytes:
    return hmac.new(key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()


def fingerprint(key: bytes, token: str) -> str:
    """A keyed, non-reversible name for a token (what a session stores instead of the token)."""
    return _b64(_mac(key, "token", token.encode())[:18])


@dataclass(frozen=True)
class Session:
    """``fingerprint``: a write token's fingerprint, ``acct:<name>:<stamp>`` for a local account
    (the stamp changes with its password), or "" for nobody; ``terms``: clickthrough accepted."""

    fingerprint: str
    expires: int
    sid: str
    terms: bool = False


SESSION, ACCESS = "session", "access"


def issue(
    key: bytes,
    token_fingerprint: str,
    now: float,
    max_age: int,
    *,
    terms: bool = False,
    sid: str = "",
    purpose: str = SESSION,
) -> tuple[Session, str]:
    """A new session (or, with ``purpose=ACCESS``, an IIIF access token for the session
    ``sid``) and its signed value. The two purposes are signed apart: neither passes for the
    other."""
    session = Session(
        token_fingerprint, int(now) + max_age, sid or secrets.token_urlsafe(16), terms
    )
    doc = {"v": VERSION, "fp": session.fingerprint, "exp": session.expires, "sid": session.sid}
    if terms:
        doc["t"] = 1
    payload = json.dumps(doc, separators=(",", ":")).encode()
    return session, f"{_b64(payload)}.{_b64(_mac(key, purpose, payload))}"


class Invalid(ValueError):
    """A cookie value that was not signed with this key (forged or from another server)."""


def verify(key: bytes, value: str, purpose: str = SESSION) -> Session:
    """The session of a signed value (expired or not); Invalid when the signature is wrong."""
    head, sep, mac = value.partition(".")
    try:
        payload = _unb64(head)
        given = _unb64(mac)
    except ValueError:
        raise Invalid("malformed session value") from None
    if not sep or not hmac.compare_digest(given, _mac(key, purpose, payload)):
        raise Invalid("bad session signature")
    try:
        doc = json.loads(payload)
        return Session(str(doc["fp"]), int(doc["exp"]), str(doc["sid"]), bool(doc.get("t")))
    except (ValueError, KeyError, TypeError):
        raise Invalid("malformed session payload") from None


def csrf_value(key: bytes, session: Session) -> str:
    """The value the X-CSRF-Token header must carry for writes authenticated by ``session``."""
    return _b64(_mac(key, "csrf", session.sid.encode())[:24])


def csrf_ok(key: bytes, session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(
        (presented or "").encode(), csrf_value(key, session).encode()
    )


def form_mac(key: bytes, nonce: str) -> str:
    """The value a login or agreement form carries for the per-form secret ``nonce``."""
    return _b64(_mac(key, "form", nonce.encode())[:18])


def form_ok(key: bytes, nonce: str | None, presented: str) -> bool:
    return (
        bool(nonce)
        and bool(presented)
        and hmac.compare_digest(form_mac(key, nonce or "").encode(), presented.encode())
    )


def sign(key: bytes, purpose: str, payload: bytes) -> str:
    """``payload`` and its HMAC for ``purpose``, as one URL- and cookie-safe value."""
    return f"{_b64(payload)}.{_b64(_mac(key, purpose, payload))}"


def unsign(key: bytes, purpose: str, value: str) -> bytes | None:
    """The payload of a value made by ``sign`` for ``purpose``, None when forged or malformed."""
    head, sep, mac = value.partition(".")
    try:
        payload, given = _unb64(head), _unb64(mac)
    except ValueError:
        return None
    if not sep or not hmac.compare_digest(given, _mac(key, purpose, payload)):
        return None
    return payload
