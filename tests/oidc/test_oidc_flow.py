"""Signing in with an external OpenID provider, over real HTTP: iiifsrv on uvicorn and the npm
``oidc-provider`` on loopback, walked like a browser (httpx following the links the servers
publish, the provider's login and consent forms). The session it makes opens restricted tiles
and the Auth 2.0 probe; a user without the role stays out; a wrong state, a replayed code and
every kind of tampered ID token are refused with 4xx and a short message."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.access.test_auth_protocol import find
from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.oidc.conftest import (
    CALLBACK,
    CLIENT_ID,
    CLIENT_SECRET,
    Browser,
    Provider,
    parse,
    sign_in_at_provider,
    start_provider,
)

SECRET = "s" * 8 + "-shared-secret-of-all-replicas-0123"
IMAGE = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"
RULES = f"""
[[rule]]
match = "{IMAGE}"
access = "restricted"
roles = ["staff"]
"""


@pytest.fixture(scope="module")
def servers(
    image_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Provider]]:
    """iiifsrv (a rule restricting IMAGE to role staff) and the provider, each knowing the
    other: the provider's client may redirect only to this iiifsrv's callback."""
    data = tmp_path_factory.mktemp("oidc-data")
    rules = data.parent / "oidc-rules.toml"
    rules.write_text(RULES)
    port = free_port()
    provider = start_provider(f"http://127.0.0.1:{port}{CALLBACK}")
    env = {
        "IIIFSRV_ACCESS_RULES": str(rules),
        "IIIFSRV_SESSION_SECRET": SECRET,
        "IIIFSRV_OIDC_ISSUER": provider.issuer,
        "IIIFSRV_OIDC_CLIENT_ID": CLIENT_ID,
        "IIIFSRV_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "IIIFSRV_OIDC_SCOPES": "openid profile email groups",
        "IIIFSRV_OIDC_NAME": "Example University",
    }
    try:
        server = start_server(image_root, data, env=env, port=port)
    except BaseException:
        provider.stop()
        raise
    yield server, provider
    stop_server(server)
    provider.stop()


@pytest.fixture
def server(servers: tuple[LiveServer, Provider]) -> LiveServer:
    return servers[0]


@pytest.fixture
def provider(servers: tuple[LiveServer, Provider]) -> Provider:
    return servers[1]


def info(client: httpx.Client, server: LiveServer) -> httpx.Response:
    return client.get(f"{server.url}/iiif/3/{IMAGE}/info.json")


def start_url(client: httpx.Client, server: LiveServer) -> str:
    """The "Sign in with <provider>" link on the login page the info.json publishes."""
    doc = info(client, server).json()
    login = find(doc, "http://iiif.io/api/auth/1/login")["@id"]
    page = client.get(login + "?origin=" + server.url)
    assert page.status_code == 200
    assert "Sign in with Example University" in page.text
    return parse(page.text).links["oidc-login"]


def signed_in(browser: Browser, server: LiveServer, login: str) -> httpx.Client:
    client = browser()
    callback = sign_in_at_provider(client, start_url(client, server), login)
    done = client.get(callback)
    assert done.status_code == 200, done.text
    assert "You are signed in" in done.text
    return client


def tile(client: httpx.Client, server: LiveServer) -> httpx.Response:
    return client.get(f"{server.url}/iiif/3/{IMAGE}/0,0,256,256/256,/0/default.jpg")


def probe_status(client: httpx.Client, server: LiveServer) -> int:
    anonymous_doc = httpx.get(f"{server.url}/iiif/3/{IMAGE}/info.json").json()
    r = client.get(find(anonymous_doc, "AuthProbeService2")["id"])
    assert r.status_code == 200
    return int(r.json()["status"])


def test_code_flow_signs_in_and_opens_restricted_tiles(
    browser: Browser, server: LiveServer, provider: Provider
) -> None:
    anonymous = browser()
    assert info(anonymous, server).status_code == 401
    assert tile(anonymous, server).status_code == 401
    assert probe_status(anonymous, server) == 401

    client = signed_in(browser, server, "alice")
    session = client.get(f"{server.url}/session").json()
    assert session["user"] == "alice"
    assert session["roles"] == ["readers", "staff"]  # from the provider's groups claim
    assert session["writer"] is False  # a provider's user reads; writes need a token

    r = tile(client, server)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"].startswith("private")
    assert info(client, server).status_code == 200
    assert probe_status(client, server) == 200

    # the Auth 2.0 token service gives this session a token; the probe says 200 with it alone
    doc = info(client, server).json()
    token_service = find(doc, "AuthAccessTokenService2")["id"]
    page = client.get(token_service, params={"messageId": "m1", "origin": server.url})
    token = re.search(r'"accessToken":"([^"]+)"', page.text)
    assert token, page.text
    probe = find(doc, "AuthProbeService2")["id"]
    bare = httpx.get(probe, headers={"Authorization": f"Bearer {token.group(1)}"})
    assert bare.json()["status"] == 200

    # signing out (the logout service) ends it
    client.get(find(doc, "AuthLogoutService2")["id"])
    assert tile(client, server).status_code == 401


def test_user_without_the_role_is_still_denied(
    browser: Browser, server: LiveServer, provider: Provider
) -> None:
    client = signed_in(browser, server, "bob")
    assert client.get(f"{server.url}/session").json()["roles"] == ["readers"]
    assert tile(client, server).status_code == 403
    assert probe_status(client, server) == 403


def test_return_path_continues_on_this_server_only(
    browser: Browser, server: LiveServer, provider: Provider
) -> None:
    client = browser()
    link = start_url(client, server)
    back = f"/iiif/3/{IMAGE}/info.json"
    callback = sign_in_at_provider(client, link + "&" + urlencode({"return": back}), "alice")
    page = client.get(callback)
    assert page.status_code == 200
    refresh = re.search(r'http-equiv=refresh content="0;url=([^"]+)"', page.text)
    assert refresh and refresh.group(1) == server.url + back
    assert client.get(refresh.group(1)).status_code == 200

    # no open redirect: another host (in any spelling) is dropped, the page just closes
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/\r\nx"):
        fresh = browser()
        start = start_url(fresh, server)
        callback = sign_in_at_provider(fresh, start + "&" + urlencode({"return": evil}), "alice")
        page = fresh.get(callback)
        assert page.status_code == 200
        assert "evil" not in page.text and "refresh" not in page.text


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_wrong_state_is_refused(browser: Browser, server: LiveServer, provider: Provider) -> None:
    client = browser()
    callback = sign_in_at_provider(client, start_url(client, server), "alice")
    r = client.get(with_query(callback, state="not-the-state"))
    assert r.status_code == 400
    assert "does not match (state)" in r.text
    assert "iiifsrv_session" not in r.headers.get("set-cookie", "")


def test_replayed_code_is_refused(browser: Browser, server: LiveServer, provider: Provider) -> None:
    client = browser()
    callback = sign_in_at_provider(client, start_url(client, server), "alice")
    state_cookie = client.cookies["iiifsrv_oidc"]
    assert client.get(callback).status_code == 200
    # the same answer again, in the same browser: the login state is gone
    again = client.get(callback)
    assert again.status_code == 400 and "already finished" in again.text
    # ... and with the login state put back (a stolen cookie): the provider refuses the code
    other = browser()
    other.cookies.set("iiifsrv_oidc", state_cookie, domain="127.0.0.1", path="/auth/oidc")
    replay = other.get(callback)
    assert replay.status_code == 400
    assert "code was refused" in replay.text
    assert tile(other, server).status_code == 401


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("signature", "signature not valid"),
        ("unsigned", "signature not valid"),
        ("foreign-key", "signature not valid"),
        ("audience", "aud"),
        ("issuer", "iss"),
        ("nonce", "nonce"),
        ("expired", "exp"),
    ],
)
def test_tampered_id_token_is_refused(
    browser: Browser, server: LiveServer, provider: Provider, mode: str, message: str
) -> None:
    client = browser()
    callback = sign_in_at_provider(client, start_url(client, server), "bob")
    provider.tamper(mode)
    r = client.get(callback)
    assert r.status_code == 400, r.text
    assert "The ID token was rejected" in r.text and message in r.text
    assert "iiifsrv_session" not in r.headers.get("set-cookie", "")
    assert tile(client, server).status_code == 401


def test_the_client_secret_is_never_shown(
    browser: Browser, server: LiveServer, provider: Provider
) -> None:
    signed_in(browser, server, "alice")
    assert CLIENT_SECRET not in server.log.read_text()
    shown = subprocess.run(
        [sys.executable, "-m", "iiifsrv", "settings"],
        env={"IIIFSRV_OIDC_CLIENT_SECRET": CLIENT_SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert CLIENT_SECRET not in shown and "oidc_client_secret = '<set>'" in shown
