"""Security review findings #7 and #10: token guessing is throttled per client address, an unknown
token gets the same 401 whatever the resource, weak tokens are refused at start-up, and tokens in
endpoint paths never reach the access log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from iiifsrv import samples
from iiifsrv.access.throttle import Throttle, TooManyRequests
from iiifsrv.cli import main
from iiifsrv.settings import Settings, SettingsError, load
from iiifsrv.tokens import weakness
from iiifsrv.web.access_log import MaskTokens, mask
from iiifsrv.web.app import create_app
from tests.annotations.annotation_samples import anno, container, path
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.anyio
ALICE = "alice-Zq8vN2kLx4Rw7TyPm3Hc"
BOB = "bob-Jd5sQ9fWb2Ge6UoXn8Kt"
WRONG = "wrong-Xc3vB7nM1qL9kP5sR2"
ClientAt = Callable[[str], httpx.AsyncClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client_at(tmp_path: Path) -> AsyncIterator[ClientAt]:
    """Clients of one application, each from a client address of its own."""
    images = tmp_path / "images"
    images.mkdir()
    settings = Settings(
        images=str(images),
        data=str(tmp_path / "data"),
        tokens=f"{ALICE}=alice,{BOB}=bob",
        annotation_canvases="any",
        public_url="http://test",
    )
    app = create_app(settings)
    clients: list[httpx.AsyncClient] = []

    def at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://test"))
        return clients[-1]

    yield at
    for c in clients:
        await c.aclose()
    await app.state.annotation_store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- throttling --------------------------------------------------------------------------------


async def test_ten_failures_in_a_minute_then_429_for_that_address_only(
    client_at: ClientAt,
) -> None:
    guesser, other = client_at("203.0.113.7"), client_at("198.51.100.2")
    for n in range(10):
        r = await guesser.post(container(), json=anno(), headers=bearer(f"{WRONG}{n}"))
        assert r.status_code == 401, (n, r.text)
    blocked = await guesser.post(container(), json=anno(), headers=bearer(f"{WRONG}x"))
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert "too many failed authentications" in blocked.text
    # The right token from the blocked address waits too (the guesser learns nothing) ...
    right = await guesser.post(container(), json=anno(), headers=bearer(ALICE))
    assert right.status_code == 429
    # ... and the path form and the sign-in are throttled the same way.
    assert (await guesser.post(f"/annotot/key/{ALICE}", json={})).status_code == 429
    assert (await guesser.post("/session", json={"token": ALICE})).status_code == 429
    # Another address is not affected.
    created = await other.post(container(), json=anno(), headers=bearer(ALICE))
    assert created.status_code == 201, created.text


async def test_missing_credentials_are_not_counted_as_guesses(client_at: ClientAt) -> None:
    c = client_at("203.0.113.8")
    for _ in range(15):
        assert (await c.post(container(), json=anno())).status_code == 401
    assert (await c.post(container(), json=anno(), headers=bearer(ALICE))).status_code == 201


def test_throttle_window_slides() -> None:
    throttle = Throttle(limit=3, window=60.0)
    for t in (0.0, 10.0, 20.0):
        throttle.fail("a", t)
    with pytest.raises(TooManyRequests) as blocked:
        throttle.check("a", 30.0)
    assert blocked.value.headers == {"Retry-After": "30"}  # the failure at 0 leaves at 60
    throttle.check("a", 60.5)  # one failure left the window
    throttle.check("b", 30.0)
    Throttle(limit=0).check("a", 0.0)  # 0 = no limit


# ---- no status oracle ------------------------------------------------------------------------


async def test_unknown_token_is_401_whatever_the_resource(client_at: ClientAt) -> None:
    c = client_at("192.0.2.10")
    created = await c.post(container(), json=anno(), headers=bearer(ALICE))
    assert created.status_code == 201
    existing = path(created.headers["location"])
    missing = existing.rsplit("/", 1)[0] + "/no-such-annotation"
    known_key = quote(created.json()["id"], safe="")  # Annotot and SAS take the IRI
    assert (await c.get(f"/annotot/{known_key}")).status_code == 200
    manifest = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": "http://test/iiif/manifests/mine",
        "type": "Manifest",
        "label": {"en": ["mine"]},
        "items": [],
    }
    put = await c.put("/iiif/manifests/mine", json=manifest, headers=bearer(ALICE))
    assert put.status_code == 201, put.text

    pairs = {
        "W3C PUT": [("PUT", existing), ("PUT", missing)],
        "W3C DELETE": [("DELETE", existing), ("DELETE", missing)],
        "Annotot PATCH": [("PATCH", f"/annotot/{known_key}"), ("PATCH", "/annotot/urn%3Anone")],
        "Annotot DELETE": [("DELETE", f"/annotot/{known_key}"), ("DELETE", "/annotot/urn%3Ax")],
        "SAS destroy": [
            ("DELETE", f"/sas/destroy?uri={known_key}"),
            ("DELETE", "/sas/destroy?uri=urn%3Ax"),
        ],
        "manifest PUT": [("PUT", "/iiif/manifests/mine"), ("PUT", "/iiif/manifests/none")],
        "manifest DELETE": [("DELETE", "/iiif/manifests/mine"), ("DELETE", "/iiif/manifests/no")],
    }
    for n, (what, requests) in enumerate(pairs.items()):
        guesser = client_at(f"192.0.2.{100 + n}")  # stays under the throttle
        answers = []
        for method, url in requests:
            r = await guesser.request(method, url, json={}, headers=bearer(WRONG))
            answers.append((r.status_code, r.text, r.headers.get("www-authenticate")))
        assert answers[0] == answers[1], what
        assert answers[0][0] == 401 and answers[0][2] == 'Bearer realm="iiifsrv"', what
    # The path form: the token is checked before the resource, for reads too.
    guesser = client_at("192.0.2.200")
    for url in (f"/annotot/key/{WRONG}/{known_key}", f"/annotot/key/{WRONG}/urn%3Anone",
                f"/annotot/key/{WRONG}/a/b/c", f"/sas/key/{WRONG}/nothing"):  # fmt: skip
        r = await guesser.get(url)
        assert (r.status_code, r.text) == (401, "unknown token\n"), url
    # The right token still reaches the resource.
    assert (await c.get(f"/annotot/key/{ALICE}/{known_key}")).status_code == 200


# ---- weak tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("alice", "5 characters"),
        ("s3cret-token-2024", "17 characters"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "1 distinct"),
        ("abababababababababababab", "2 distinct"),
        ("aaaaaaaaaaaaaaaaabcdefghij", "half"),
    ],
)
def test_load_refuses_a_weak_token_naming_its_user_not_the_token(token: str, why: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(environ={"IIIFSRV_TOKENS": f"{ALICE}=alice,{token}=bob:editor"})
    message = str(error.value)
    assert "'bob'" in message and why in message and "too weak" in message
    assert token not in message


def test_strong_tokens_load() -> None:
    assert weakness(ALICE) is None
    settings = load(environ={"IIIFSRV_TOKENS": f"{ALICE}=alice,{BOB}=bob:editor"})
    assert settings.tokens


def test_serve_refuses_to_start_with_a_weak_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IIIFSRV_TOKENS", "alice=alice")
    assert main(["serve", "--images", str(tmp_path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "token of user 'alice' is too weak" in err and "secrets.token_urlsafe" in err


def test_a_short_session_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="session_secret"):
        load(environ={"IIIFSRV_SESSION_SECRET": "short"})


# ---- tokens in logs ---------------------------------------------------------------------------


def test_access_log_record_is_masked() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "DELETE", f"/annotot/key/{ALICE}/urn%3Ax?y=1", "1.1", 404), None,
    )  # fmt: skip
    assert MaskTokens().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5 - "DELETE /annotot/key/…/urn%3Ax?y=1 HTTP/1.1" 404'
    assert mask(f"/sas/key/{ALICE}") == "/sas/key/…"


def test_uvicorn_access_log_never_shows_a_path_token(tmp_path: Path) -> None:
    images, data = tmp_path / "images", tmp_path / "data"
    samples.ensure(images, small=True, data=data)
    env = {"IIIFSRV_TOKENS": f"{ALICE}=alice", "IIIFSRV_LOG_LEVEL": "debug"}
    server = start_server(images, data, env=env)
    try:
        r = httpx.delete(f"{server.url}/annotot/key/{ALICE}/nonexistent")
        assert r.status_code == 404
        r = httpx.get(f"{server.url}/sas/key/{WRONG}/search?uri=x")
        assert r.status_code == 401
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert '"DELETE /annotot/key/…/nonexistent HTTP/1.1" 404' in log, log[-2000:]
    assert '"GET /sas/key/…/search?uri=x HTTP/1.1" 401' in log
    assert ALICE not in log and WRONG not in log
