"""The IIIF Authorization Flow 2.0 client algorithm, run by a same-origin test page in Debian's
Chromium against a real uvicorn: probe 401, click, sign in in the access window (which closes
itself), token by postMessage from the hidden iframe, probe 200, the cookie-gated image loads."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright
from starlette.types import Receive, Scope, Send

from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.access.conftest import PASSWORD, RULES, SECRET, add_account
from tests.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")
PAGES = Path(__file__).resolve().parent / "pages"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]


class WithTestPage:
    """The application, plus the test page under /test/ on the same origin."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/test/auth2.html", "/test/auth2.js"):
            name = scope["path"].rsplit("/", 1)[1]
            kind = b"text/html" if name.endswith(".html") else b"text/javascript"
            body = (PAGES / name).read_bytes()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", kind)]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)  # type: ignore[operator]


@pytest.fixture
def server(sample_root: Path, tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.is_file():
        pytest.fail("missing /usr/bin/chromium: run scripts/setup --test")
    data = tmp_path / "data"
    shutil.copytree(sample_root / "data", data)
    rules = tmp_path / "access.toml"
    rules.write_text(RULES)
    settings = Settings(
        images=str(sample_root / "images"),
        data=str(data),
        session_secret=SECRET,
        access_rules=str(rules),
    )
    add_account(settings, "sam", "staff")
    with serving(settings) as url:
        yield url


@contextmanager
def serving(settings: Settings, port: int = 0) -> Iterator[str]:
    """The application with the test page, on uvicorn in a thread: its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        WithTestPage(create_app(settings)), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(10)


def access_window(page: Page, server: str, info: str) -> Page:
    """The test page on ``info`` (the probe says 401 first) and the access window its button
    opens."""
    page.goto(f"{server}/test/auth2.html?info={info}")
    page.wait_for_function("document.getElementById('before').textContent !== ''")
    assert page.text_content("#before") == "401"
    with page.context.expect_page() as opened:
        page.click("#go")
    popup = opened.value
    popup.wait_for_load_state()
    return popup


def wait_for_image(page: Page) -> None:
    """Until the test page shows the image it loaded after the token and the probe."""
    page.wait_for_function("document.getElementById('img-size').textContent !== ''", timeout=15_000)


def test_auth2_client_algorithm_in_chromium(server: str) -> None:
    info = f"{server}/iiif/3/palimpsest%2FIR940/info.json"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            popup = access_window(page, server, info)
            assert page.text_content("#heading") == "Restricted material"
            assert "/auth/login?origin=" in popup.url
            popup.fill("input[name=user]", "sam")
            popup.fill("input[name=password]", PASSWORD)
            with popup.expect_event("close", timeout=15_000):
                popup.click("button[type=submit]")
            wait_for_image(page)
            assert page.text_content("#token") == "AuthAccessToken2"
            assert page.text_content("#after") == "200"
            assert page.text_content("#img-size").startswith("120x")
        finally:
            browser.close()
