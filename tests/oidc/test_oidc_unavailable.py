"""When the OpenID provider is down: a clear 502 page (never a 500), before the sign-in starts
and in the middle of one (the provider stopped between its login page and the token request,
or refusing iiifsrv's client secret).
iiifsrv runs in-process; the provider is the real one, stopped by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app
from tests.conftest import free_port
from tests.oidc.conftest import (
    CALLBACK,
    CLIENT_ID,
    CLIENT_SECRET,
    Browser,
    parse,
    sign_in_at_provider,
    start_provider,
)

BASE = "http://iiifsrv.test"


def settings(tmp_path: Path, issuer: str) -> Settings:
    (tmp_path / "images").mkdir(exist_ok=True)
    return Settings(
        images=str(tmp_path / "images"),
        data=str(tmp_path / "data"),
        session_secret="k" * 40,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_scopes="openid profile groups",
    )


async def client_of(s: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(s)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c
    await app.state.annotation_store.close()


@pytest.fixture
async def nobody_listening(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_of(settings(tmp_path, f"http://127.0.0.1:{free_port()}")):
        yield c


async def test_provider_unreachable_before_sign_in(nobody_listening: httpx.AsyncClient) -> None:
    c = nobody_listening
    page = await c.get("/auth/login")
    link = parse(page.text).links["oidc-login"]
    assert link == f"{BASE}/auth/oidc/login"
    r = await c.get(link)
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert "cannot be reached" in r.text and "Sign-in service unavailable" in r.text
    again = await c.get(link)  # answered without asking the provider again for a few seconds
    assert again.status_code == 502 and "cannot be reached" in again.text


@pytest.mark.parametrize("trouble", ["provider stopped", "wrong client secret"])
async def test_provider_failing_during_sign_in(
    tmp_path: Path, browser: Browser, trouble: str
) -> None:
    provider = start_provider(BASE + CALLBACK)
    s = settings(tmp_path, provider.issuer)
    if trouble == "wrong client secret":  # the token endpoint answers invalid_client
        s = replace(s, oidc_client_secret="not-" + CLIENT_SECRET)
    try:
        async for c in client_of(s):
            start = await c.get("/auth/oidc/login")
            assert start.status_code == 303
            callback = sign_in_at_provider(browser(), start.headers["location"], "alice")
            if trouble == "provider stopped":
                provider.stop()
            r = await c.get(callback)
            assert r.status_code == 502
            assert "cannot be reached" in r.text
            assert "iiifsrv_session" not in r.headers.get("set-cookie", "")
    finally:
        provider.stop()
