"""Write tokens: the `tokens` setting parsed into users, their strength, and timing-safe look-up.

Imports only the standard library. Shared by manifest registration and the annotation store.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """A writer. ``agent``: a software agent (OCR, …), recorded as ``Software``, never a person."""

    name: str
    editor: bool = False
    agent: bool = False

    @property
    def kind(self) -> str:
        """The W3C agent class its writes are recorded under: "Person" or "Software"."""
        return "Software" if self.agent else "Person"


def parse_tokens(spec: str) -> dict[str, User]:
    """``token=user``, ``token=user:editor`` or ``token=name:agent`` (a software agent),
    comma-separated → {token: User}.

    A malformed entry is an error (a token silently ignored would lock its owner out), and so is
    one name used both by a person and by an agent (their writes would be told apart by name)."""
    users: dict[str, User] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        token, sep, who = item.partition("=")
        if not sep or not token.strip() or not who.strip():
            raise ValueError(f"token entry {item[:3]}… is not token=user[:editor|:agent]")
        name, _, role = who.strip().partition(":")
        user = User(
            name=name.strip(), editor=role.strip() == "editor", agent=role.strip() == "agent"
        )
        users[token.strip()] = user
    kinds: dict[str, str] = {}
    for user in users.values():
        if kinds.setdefault(user.name, user.kind) != user.kind:
            raise ValueError(f"name {user.name!r} is used by both a person and an agent")
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
