"""Write tokens: the `tokens` setting parsed into users, and timing-safe look-up of a token.

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


def find_user(users: dict[str, User], token: str) -> User | None:
    """The user of ``token``, comparing against every known token in constant time."""
    found = None
    presented = token.encode()
    for known, user in users.items():
        if hmac.compare_digest(known.encode(), presented):
            found = user
    return found
