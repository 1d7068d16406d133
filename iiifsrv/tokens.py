"""Write tokens: the `tokens` setting parsed into users, their strength, and timing-safe look-up.

Imports only the standard library. Shared by manifest registration and the annotation store.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    name: str
    editor: bool = False


def parse_tokens(spec: str) -> dict[str, User]:
    """``token=user`` or ``token=user:editor``, comma-separated → {token: User}.

    A malformed entry is an error (a token silently ignored would lock its owner out)."""
    users: dict[str, User] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        token, sep, who = item.partition("=")
        if not sep or not token.strip() or not who.strip():
            raise ValueError(f"token entry {item[:3]}… is not token=user[:editor]")
        name, _, role = who.strip().partition(":")
        users[token.strip()] = User(name=name.strip(), editor=role.strip() == "editor")
    return users


MIN_LENGTH = 20
MIN_DISTINCT = 8


def weakness(token: str) -> str | None:
    """Why ``token`` is too easy to guess, or None: fewer than 20 characters, fewer than 8
    distinct characters, or one character making up half of it (``aaaa…``, ``abababab…``)."""
    if len(token) < MIN_LENGTH:
        return f"it has {len(token)} characters (at least {MIN_LENGTH} are needed)"
    if len(set(token)) < MIN_DISTINCT:
        return f"it uses only {len(set(token))} distinct characters"
    if max(token.count(c) for c in set(token)) * 2 > len(token):
        return "one character makes up half of it"
    return None


def check_strength(users: dict[str, User]) -> None:
    """ValueError naming the user (never the token) of the first weak token."""
    for token, user in users.items():
        reason = weakness(token)
        if reason:
            raise ValueError(
                f"the token of user {user.name!r} is too weak: {reason}; use at least "
                f"{MIN_LENGTH} random characters, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )


def find_user(users: dict[str, User], token: str) -> User | None:
    """The user of ``token``, comparing against every known token in constant time."""
    found = None
    presented = token.encode()
    for known, user in users.items():
        if hmac.compare_digest(known.encode(), presented):
            found = user
    return found
