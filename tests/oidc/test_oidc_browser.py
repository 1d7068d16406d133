"""Signing in with the OpenID provider in Debian's Chromium, the provider on another site
(``localhost``) than iiifsrv (``127.0.0.1``), as in real life: the cookies' SameSite choices
must hold. In the viewers' popup (the Auth 2.0 client algorithm of the same-origin test page):
"Sign in with <provider>", the provider's login and consent pages, back, the window closes, token,
probe 200, the restricted image loads. In a tab with a return path: back on that page signed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from iiifsrv.settings import Settings
from tests.access.test_auth2_browser import (
    ARGS,
    CHROMIUM,
    access_window,
    serving,
    wait_for_image,
)
from tests.conftest import free_port
from tests.oidc.conftest import CALLBACK, CLIENT_ID, CLIENT_SECRET, start_provider

IMAGE = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"
SECRET = "b" * 40


@pytest.fixture
def server(image_root: Path, tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.is_file():
        pytest.fail("missing /usr/bin/chromium: run scripts/setup --test")
    port = free_port()
    provider = start_provider(f"http://127.0.0.1:{port}{CALLBACK}", host="localhost")
    rules = tmp_path / "access.toml"
    rules.write_text(f'[[rule]]\nmatch = "{IMAGE}"\naccess = "restricted"\nroles = ["staff"]\n')
    settings = Settings(
        images=str(image_root),
        data=str(tmp_path / "data"),
        session_secret=SECRET,
        access_rules=str(rules),
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_scopes="openid profile groups",
        oidc_name="Example University",
    )
    try:
        with serving(settings, port) as url:
            yield url
    finally:
        provider.stop()


def sign_in_at_provider(page: Page, login: str) -> None:
    """The provider's login page (on localhost), filled and sent; its consent page follows."""
    page.wait_for_url(re.compile(r"^http://localhost:\d+/interaction/"))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_selector("button:has-text('Continue')")


def test_sign_in_with_the_provider_in_chromium(server: str) -> None:
    info = f"{server}/iiif/3/{IMAGE}/info.json"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            popup = access_window(page, server, info)
            popup.click("text=Sign in with Example University")
            sign_in_at_provider(popup, "alice")
            with popup.expect_event("close", timeout=15_000):
                popup.click("button:has-text('Continue')")
            wait_for_image(page)
            assert page.text_content("#token") == "AuthAccessToken2"
            assert page.text_content("#after") == "200"
            assert page.text_content("#img-size") == "120x84"

            # a tab of its own (a new browser profile), back on the return path, signed in
            tab = browser.new_context().new_page()
            tab.goto(f"{server}/auth/oidc/login?return=/session")
            sign_in_at_provider(tab, "bob")
            tab.click("button:has-text('Continue')")
            tab.wait_for_url(f"{server}/session", timeout=15_000)
            assert '"user":"bob"' in (tab.text_content("body") or "")
        finally:
            browser.close()
