"""The browser readers of an annotation stored through the links the server publishes: a W3C
annotation POSTed to the container found from the manifest (page → partOf) comes back in the
manifest's page as Mirador requests it, and Universal Viewer's "search within" finds it; both in
Debian's Chromium against a real uvicorn (pattern: tests/test_viewers_e2e.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import LiveServer, start_server, stop_server
from tests.test_client_journey import LABEL, make_tree
from tests.test_viewers_e2e import ARTIFACTS, BUILD, CHROMIUM, CHROMIUM_ARGS, VIEWPORT

TOKEN = "journey-e2e-Jd5sQ9fWb2Ge6Uo"  # load() refuses short tokens
WORD = "quetzalcoatl"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not (BUILD / "uv" / "umd" / "UV.js").is_file() or not CHROMIUM.is_file():
        pytest.fail("missing the viewer build or /usr/bin/chromium: run scripts/setup --test")
    images, data = make_tree(tmp_path_factory.mktemp("journey-e2e"))
    live = start_server(images, data, env={"IIIFSRV_TOKENS": f"{TOKEN}=alice"})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def follow(url: str) -> Any:
    r = httpx.get(url)
    assert r.status_code == 200, (url, r.text)
    return r.json()


def test_an_annotation_stored_through_the_links_reaches_mirador_and_uv(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    collection = follow(f"{server.url}/iiif/collection")
    ref = next(i for i in collection["items"] if i["label"]["en"] == [LABEL])
    manifest = follow(ref["id"])
    canvas = manifest["items"][0]["id"]
    page_url = manifest["items"][0]["annotations"][0]["id"]
    container = follow(page_url)["partOf"][0]["id"]
    doc = {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": f"a feathered {WORD}", "format": "text/plain"},
        "target": f"{canvas}#xywh=4,4,20,12",
    }
    r = httpx.post(container, json=doc, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text

    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    manifest_param = quote(manifest["id"], safe="")
    try:
        # Mirador requests the page the manifest references, and gets the annotation.
        with tab.expect_response(lambda resp: resp.url == page_url) as mirador_read:
            tab.goto(f"{server.url}/viewer/mirador?manifest={manifest_param}")
        assert mirador_read.value.status == 200
        items = mirador_read.value.json()["items"]
        assert [a["body"]["value"] for a in items] == [f"a feathered {WORD}"]
        assert items[0]["target"] == f"{canvas}#xywh=4,4,20,12"

        # Universal Viewer searches through the service the manifest declares, and shows a hit.
        tab.goto(f"{server.url}/viewer/uv?manifest={manifest_param}")
        search = tab.locator("input.searchText:visible").first
        search.wait_for()
        search.fill(WORD)
        with tab.expect_response(lambda resp: "/annotations/search/" in resp.url) as uv_read:
            search.press("Enter")
        assert uv_read.value.status == 200
        found = uv_read.value.json()
        texts = [a.get("resource", {}).get("chars") or a.get("body", {}).get("value")
                 for a in found.get("resources", found.get("items", []))]  # fmt: skip
        assert texts == [f"a feathered {WORD}"]
        tab.get_by_text(re.compile(r"^\s*1 result found for")).first.wait_for()
        tab.screenshot(path=str(ARTIFACTS / "uv-search-journey.png"))
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
