"""Bearer tokens for writes: parses the ``tokens`` setting and checks an Authorization header.

Imports iiifsrv.errors and iiifsrv.tokens (shared with the annotation store).
"""

from __future__ import annotations

from iiifsrv.errors import Unauthorized
from iiifsrv.tokens import User, find_user, parse_tokens

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="iiifsrv"'}


def authenticate(users: dict[str, User], authorization: str | None) -> User:
    """The user of a ``Bearer`` token or Unauthorized (401)."""
    if not authorization:
        raise Unauthorized("a bearer token is needed to write", headers=CHALLENGE)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>", headers=CHALLENGE)
    user = find_user(users, token.strip())
    if user is None:
        raise Unauthorized("unknown token", headers=CHALLENGE)
    return user


__all__ = ["CHALLENGE", "User", "authenticate", "parse_tokens"]
