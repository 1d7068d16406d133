"""The viewer sign-in (``/session``): an HttpOnly, SameSite=Strict, HMAC-signed cookie that works
across workers sharing ``session_secret``; cookie writes need the CSRF header and a same-host
Origin; Bearer and path tokens keep working for other clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from iiifsrv.access import sessions
from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app
from iiifsrv.web.credentials import COOKIE, Credentials
from tests.annotations.annotation_samples import anno, container
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.anyio
ALICE = "alice-Zq8vN2kLx4Rw7TyPm3Hc"
SECRET = "s" * 8 + "-shared-secret-of-all-replicas-0123"
Apps = Callable[..., httpx.AsyncClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    images = tmp_path / "images"
    images.mkdir()
    return Settings(
        images=str(images),
        data=str(tmp_path / "data"),
        tokens=f"{ALICE}=alice",
        annotation_canvases="any",
        session_secret=SECRET,
    )


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[Apps]:
    """``app_client(**changes)``: a client of a new application (a worker or a replica)."""
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    def make(base: str = "http://test", **changes: Any) -> httpx.AsyncClient:
        app = create_app(replace(settings, **changes))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)
        opened.append((app, client))
        return client

    yield make
    for app, client in opened:
        await client.aclose()
        await app.state.annotation_store.close()


async def sign_in(client: httpx.AsyncClient, token: str = ALICE) -> dict[str, Any]:
    r = await client.post("/session", json={"token": token})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_sign_in_sets_an_httponly_strict_cookie_without_the_token(
    app_client: Apps,
) -> None:
    c = app_client()
    r = await c.post("/session", json={"token": ALICE})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    attributes = [a.strip() for a in cookie.split(";")]
    assert attributes[0].startswith(f"{COOKIE}=") and ALICE not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"} <= set(attributes)
    assert "Secure" not in attributes  # plain http here
    body = r.json()
    assert body["user"] == "alice" and body["editor"] is False and body["csrf"]
    assert ALICE not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in r.headers  # no other origin may read it

    who = await c.get("/session")
    assert who.json() == body
    assert "access-control-allow-origin" not in who.headers


async def test_secure_cookie_on_https(app_client: Apps) -> None:
    c = app_client(public_url="https://iiif.example.org/x")
    r = await c.post("/session", json={"token": ALICE})
    attributes = [a.strip() for a in r.headers["set-cookie"].split(";")]
    assert "Secure" in attributes and "Path=/x" in attributes


async def test_cookie_writes_need_the_csrf_header_and_a_same_host_origin(
    app_client: Apps,
) -> None:
    c = app_client()
    csrf = (await sign_in(c))["csrf"]
    no_header = await c.post(container(), json=anno())
    assert no_header.status_code == 403 and "X-CSRF-Token" in no_header.text
    altered = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # always differs (was 1 in 64 same)
    wrong = await c.post(container(), json=anno(), headers={"X-CSRF-Token": altered})
    assert wrong.status_code == 403
    cross = await c.post(
        container(), json=anno(), headers={"X-CSRF-Token": csrf, "Origin": "http://evil.test"}
    )
    assert cross.status_code == 403 and "cross-origin" in cross.text
    ok = await c.post(
        container(), json=anno(), headers={"X-CSRF-Token": csrf, "Origin": "http://test"}
    )
    assert ok.status_code == 201, ok.text
    assert "alice" in str(ok.json()["creator"])
    # Reads need nothing; the Annotot endpoint the Mirador adapter uses takes the cookie too.
    iri = quote(ok.json()["id"], safe="")
    annotot = await c.delete(f"/annotot/{iri}", headers={"X-CSRF-Token": csrf})
    assert annotot.status_code == 200, annotot.text


async def test_bearer_and_path_tokens_still_work_without_csrf(app_client: Apps) -> None:
    c = app_client()
    r = await c.post(container(), json=anno(), headers={"Authorization": f"Bearer {ALICE}"})
    assert r.status_code == 201
    iri = quote(r.json()["id"], safe="")
    r = await c.delete(f"/annotot/key/{ALICE}/{iri}", headers={"Origin": "http://x"})
    assert r.status_code == 200


async def test_session_works_across_workers_sharing_the_secret(app_client: Apps) -> None:
    first, second = app_client(), app_client()
    csrf = (await sign_in(first))["csrf"]
    second.cookies = first.cookies
    assert (await second.get("/session")).json()["user"] == "alice"
    r = await second.post(container(), json=anno(), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    other = app_client(session_secret="another-secret-of-another-server-0123456")
    other.cookies = first.cookies
    forged = await other.post(container(), json=anno(), headers={"X-CSRF-Token": csrf})
    assert forged.status_code == 401 and "invalid session" in forged.text
    stale = await other.get("/session")
    assert stale.json() == {"user": None, "editor": False}
    assert "Max-Age=0" in stale.headers["set-cookie"]  # the stale cookie is dropped


async def test_a_removed_token_ends_its_sessions(app_client: Apps) -> None:
    first = app_client()
    csrf = (await sign_in(first))["csrf"]
    revoked = app_client(tokens="bob-Jd5sQ9fWb2Ge6UoXn8Kt=bob")
    revoked.cookies = first.cookies
    r = await revoked.post(container(), json=anno(), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401 and "sign in again" in r.text


async def test_sign_out_clears_the_cookie(app_client: Apps) -> None:
    c = app_client()
    await sign_in(c)
    r = await c.delete("/session")
    assert r.status_code == 200 and "Max-Age=0" in r.headers["set-cookie"]
    assert (await c.get("/session")).json()["user"] is None


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"token": "wrong-Xc3vB7nM1qL9kP5sR2"}}, 401),
        ({"json": {}}, 400),
        ({"json": ["x"]}, 400),
        ({"content": b"token=x", "headers": {"Content-Type": "text/plain"}}, 400),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"token": ALICE}, "headers": {"Origin": "http://evil.test"}}, 403),
    ],
)
async def test_bad_sign_in_requests(app_client: Apps, kwargs: dict[str, Any], status: int) -> None:
    r = await app_client().post("/session", **kwargs)
    assert r.status_code == status, r.text
    assert "set-cookie" not in r.headers and r.text.count("\n") == 1


def test_expired_session_is_refused(settings: Settings) -> None:
    now = [1_000_000.0]
    creds = Credentials(settings, wall=lambda: now[0])
    fp = sessions.fingerprint(creds.key, ALICE)
    session, value = sessions.issue(creds.key, fp, now[0], 60)
    scope = {
        "type": "http",
        "method": "GET",
        "headers": [(b"cookie", f"{COOKIE}={value}".encode())],
    }
    found = creds.session_of(scope)
    assert found is not None and found[0].name == "alice" and found[1] == session
    now[0] += 61
    with pytest.raises(Exception, match="session expired"):
        creds.session_of(scope)


def test_tampered_value_is_invalid() -> None:
    key = b"k" * 32
    _, value = sessions.issue(key, "fp", 0, 60)
    head, mac = value.split(".")
    with pytest.raises(sessions.Invalid):
        sessions.verify(key, head[:-2] + "AA." + mac)
    with pytest.raises(sessions.Invalid):
        sessions.verify(b"x" * 32, value)
    with pytest.raises(sessions.Invalid):
        sessions.verify(key, "not a session")


def test_two_workers_share_the_key_generated_at_start(tmp_path: Path) -> None:
    """``iiifsrv serve --workers 2`` without session_secret: the key made at start reaches both
    workers through the environment, so every request of the session is accepted, and it is
    never logged."""
    images, data = tmp_path / "images", tmp_path / "data"
    images.mkdir()
    server = start_server(images, data, "--workers", "2", env={"IIIFSRV_TOKENS": f"{ALICE}=alice"})
    try:
        with httpx.Client(base_url=server.url) as c:
            signed = c.post("/session", json={"token": ALICE})
            assert signed.status_code == 200
            users = set()
            for _ in range(24):  # new connections: spread over both workers
                with httpx.Client(base_url=server.url, cookies=c.cookies) as fresh:
                    users.add(fresh.get("/session").json()["user"])
            assert users == {"alice"}
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert "setting session_secret = ''" in log and ALICE not in log
