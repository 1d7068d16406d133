"""Bearer tokens for writes: parses the ``tokens`` setting and checks an Authorization header.

Imports the standard library and iiifsrv.errors only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from iiifsrv.errors import Unauthorized


@dataclass(frozen=True)
class User:
    name: str
    editor: bool = False


def parse_tokens(text: str) -> dict[str, User]:
    """``"t1=alice,t2=bob:editor"`` → {"t1": User("alice"), "t2": User("bob", editor=True)}."""
    users: dict[str, User] = {}
    for item in text.split(","):
        token, sep, who = item.strip().partition("=")
        if not sep or not token.strip() or not who.strip():
            continue
        name, _, role = who.strip().partition(":")
        users[token.strip()] = User(name.strip(), editor=role.strip() == "editor")
    return users


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="iiifsrv"'}


def authenticate(users: dict[str, User], authorization: str | None) -> User:
    """The user of a ``Bearer`` token or Unauthorized (401)."""
    if not authorization:
        raise Unauthorized("a bearer token is needed to write", headers=CHALLENGE)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>", headers=CHALLENGE)
    token = token.strip()
    for known, user in users.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return user
    raise Unauthorized("unknown token", headers=CHALLENGE)
