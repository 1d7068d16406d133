"""The pure parts of OpenID Connect sign-in (iiifsrv/access/oidc.py) and its settings: roles
from claims, user names, return paths, the signed login state, and what the settings refuse."""

from __future__ import annotations

from typing import Any

import pytest

from iiifsrv.access import oidc
from iiifsrv.settings import SettingsError, load


@pytest.mark.parametrize(
    ("claims", "path", "roles"),
    [
        ({"groups": ["staff", "readers"]}, "groups", ("readers", "staff")),
        ({"groups": "staff readers"}, "groups", ("readers", "staff")),  # one string
        ({"roles": "staff,readers"}, "roles", ("readers", "staff")),
        ({"realm_access": {"roles": ["curator"]}}, "realm_access.roles", ("curator",)),  # Keycloak
        ({"groups": ["staff", "*", "a b", "/org/x", 7, None, "staff"]}, "groups", ("staff",)),
        ({"groups": {"staff": True}}, "groups", ()),
        ({}, "groups", ()),
        ({"realm_access": ["x"]}, "realm_access.roles", ()),
    ],
)
def test_roles_from_claims(claims: dict[str, Any], path: str, roles: tuple[str, ...]) -> None:
    assert oidc.roles_from(claims, path) == roles


def test_roles_are_capped_to_keep_the_cookie_small() -> None:
    many = [f"group-{i:04d}-{'x' * 40}" for i in range(200)]
    roles = oidc.roles_from({"groups": many}, "groups")
    assert 0 < len(roles) < 200
    assert sum(len(r) + 1 for r in roles) <= oidc.MAX_ROLES_CHARS


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({"sub": "1", "preferred_username": "alice", "email": "a@x.org"}, "alice"),
        ({"sub": "1", "preferred_username": "Alice Smith", "email": "a@x.org"}, "a@x.org"),
        ({"sub": "248289761001"}, "248289761001"),
        ({"sub": "auth0|5f7c8ec7c33c6c004bbafe82"}, "auth0_5f7c8ec7c33c6c004bbafe82"),
    ],
)
def test_user_name(claims: dict[str, Any], name: str) -> None:
    user = oidc.user_from(claims, "groups")
    assert user.name == name
    assert oidc.from_fingerprint(oidc.fingerprint(user)) == user


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("/viewer/uv?manifest=x", "/viewer/uv?manifest=x"),
        ("/", "/"),
        ("", ""),
        (None, ""),
        ("//evil.example/x", ""),
        ("/\\evil.example", ""),
        ("https://evil.example/", ""),
        ("javascript:alert(1)", ""),
        ("viewer", ""),
        ("/a\r\nSet-Cookie: x=1", ""),
        ("/a b", ""),
        ("/" + "a" * 3000, ""),
    ],
)
def test_safe_return(value: str | None, kept: str) -> None:
    assert oidc.safe_return(value) == kept


def test_login_state_is_signed_and_expires() -> None:
    key = b"k" * 32
    value = oidc.seal_state(key, {"s": "state", "n": "nonce"}, 1000.0, 600)
    assert oidc.open_state(key, value, 1500.0) == {"s": "state", "n": "nonce", "exp": 1600}
    assert oidc.open_state(key, value, 1601.0) is None  # expired
    assert oidc.open_state(b"x" * 32, value, 1500.0) is None  # another server's key
    head, _, mac = value.partition(".")
    assert oidc.open_state(key, head[:-2] + "AA." + mac, 1500.0) is None  # altered
    assert oidc.open_state(key, None, 1500.0) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IIIFSRV_OIDC_ISSUER": "http://idp.example.org"}, "https"),
        ({"IIIFSRV_OIDC_ISSUER": "https://idp.example.org"}, "oidc_client_id"),
        (
            {"IIIFSRV_OIDC_ISSUER": "https://idp.example.org", "IIIFSRV_OIDC_CLIENT_ID": "c"},
            "oidc_client_secret",
        ),
    ],
)
def test_settings_refuse_incomplete_or_plain_http_providers(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load(environ=env)


def test_settings_accept_https_and_loopback_http() -> None:
    for issuer in ("https://idp.example.org/realms/x", "http://127.0.0.1:8080", "http://localhost"):
        s = load(
            environ={
                "IIIFSRV_OIDC_ISSUER": issuer,
                "IIIFSRV_OIDC_CLIENT_ID": "iiifsrv",
                "IIIFSRV_OIDC_CLIENT_SECRET": "the-client-secret",
            }
        )
        assert s.oidc_issuer == issuer
        assert "the-client-secret" not in repr(s)
