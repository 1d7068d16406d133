"""The cross-client matrix in Chromium (issue 10, item 2): each writer — the W3C protocol (POST
to the container found from the manifest: canvas → annotations page → partOf), Annotot (with the
canvas id the manifest shows) and SimpleAnnotationServer — stores an annotation with a
distinctive word; then the browser readers see every one of them: a plain Mirador (the read-only
mode, no editor plugin: it reads the annotation pages the manifest references) lists them in its
Annotations panel, and Universal Viewer's search within the item finds each word. Writers and
readers go through two host names (127.0.0.1 and localhost) of one real uvicorn, and the browser
reaches every viewer by following the landing page's and the viewer pages' links.

The URLs written here are the entry points (``/`` and ``/iiif/collection`` on each host name)
and the Annotot and SAS endpoints, which Mirador's adapters take as configuration, not from a
link. Pattern: tests/test_viewers_e2e.py; the no-browser matrix: tests/test_client_journey.py.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

from tests.conftest import LiveServer, start_server, stop_server
from tests.test_client_journey import LABEL, _canvas_of, make_tree
from tests.test_viewers_e2e import ARTIFACTS, BUILD, CHROMIUM, CHROMIUM_ARGS, VIEWPORT

TOKEN = "matrix-e2e-Hq3vL8nPz5Xc2Wb"  # load() refuses short tokens
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT_MS = 30_000
HOSTS = ("127.0.0.1", "localhost")
# One distinctive word per (host name, writer): none is a prefix or part of another.
WORDS = {
    ("127.0.0.1", "w3c"): "wyvern",
    ("127.0.0.1", "annotot"): "basilisk",
    ("127.0.0.1", "sas"): "manticore",
    ("localhost", "w3c"): "griffin",
    ("localhost", "annotot"): "kraken",
    ("localhost", "sas"): "chimera",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not (BUILD / "uv" / "umd" / "UV.js").is_file() or not CHROMIUM.is_file():
        pytest.fail("missing the viewer build or /usr/bin/chromium: run scripts/setup --test")
    images, data = make_tree(tmp_path_factory.mktemp("matrix-e2e"))
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


@dataclass
class Found:
    """What a client learns from the links: the manifest, its canvas, page and container."""

    manifest: dict[str, Any]
    canvas: str
    page: str
    container: str


def discover(base: str) -> Found:
    collection = follow(f"{base}/iiif/collection")
    ref = next(i for i in collection["items"] if i["label"]["en"] == [LABEL])
    manifest = follow(ref["id"])
    canvas = manifest["items"][0]
    assert canvas["id"].startswith(base + "/"), canvas["id"]
    page = canvas["annotations"][0]["id"]
    container = follow(page)["partOf"][0]["id"]
    assert container.startswith(base + "/"), container
    return Found(manifest, canvas["id"], page, container)


def text(word: str) -> str:
    return f"a {word} in the margin"


def write_w3c(base: str, found: Found, word: str) -> None:
    doc = {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text(word), "format": "text/plain"},
        "target": f"{found.canvas}#xywh=2,2,20,12",
    }
    r = httpx.post(found.container, json=doc, headers=AUTH)
    assert r.status_code == 201, r.text


def write_annotot(base: str, found: Found, word: str) -> None:
    uuid = f"{found.canvas}/annotation/{secrets.token_hex(4)}"
    data = {
        "id": uuid,
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text(word), "format": "text/plain"},
        "target": {
            "source": found.canvas,
            "selector": {"type": "FragmentSelector", "value": "xywh=30,2,20,12"},
        },
    }
    body = {"annotation": {"canvas": found.canvas, "data": json.dumps(data), "uuid": uuid}}
    r = httpx.post(f"{base}/annotot", json=body, headers=AUTH)
    assert r.status_code == 200, r.text


def write_sas(base: str, found: Found, word: str) -> None:
    oa = {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@type": "oa:Annotation",
        "motivation": ["oa:commenting"],
        "resource": [{"@type": "dctypes:Text", "chars": text(word)}],
        "on": [
            {
                "@type": "oa:SpecificResource",
                "full": found.canvas,
                "selector": {"@type": "oa:FragmentSelector", "value": "xywh=2,30,20,12"},
                "within": {"@id": found.manifest["id"], "@type": "sc:Manifest"},
            }
        ],
    }
    r = httpx.post(f"{base}/sas/create", json=oa, headers=AUTH)
    assert r.status_code == 201, r.text


WRITERS = {"w3c": write_w3c, "annotot": write_annotot, "sas": write_sas}


def new_tab(browser: Browser) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []  # uncaught exceptions, console errors, answers >= 400
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return tab, errors


def plain_mirador_lists(tab: Page, base: str) -> list[str]:
    """From the landing page to the read-only Mirador (the Mirador page's *read-only Mirador*
    link); the texts its Annotations panel lists, once the manifest's page has been read."""
    tab.goto(f"{base}/")
    with tab.expect_navigation():
        tab.locator("li.object", has_text=LABEL).locator("a.mirador").click()
    with tab.expect_navigation():
        tab.locator("header a.reader").click()
    assert "editor=off" in tab.url
    assert tab.locator("#sign-in").count() == 0, "the read-only page has no sign-in"
    tab.locator(".openseadragon-canvas").first.wait_for()
    tab.get_by_role("button", name="Toggle sidebar").first.click()
    tab.get_by_role("tab", name="Annotations").first.click()
    panel = tab.locator("aside", has_text="Annotations").first
    panel.get_by_text(text(WORDS[HOSTS[-1], "sas"])).wait_for()
    assert tab.get_by_role("button", name="Create annotation").count() == 0
    assert f"Showing {len(WORDS)} annotations" in panel.inner_text()
    return [t.strip() for t in panel.locator("li").all_inner_texts() if t.strip()]


def search_service(manifest: dict[str, Any]) -> str:
    """The Content Search 1.0 service the manifest declares (the one Universal Viewer uses)."""
    for service in manifest.get("service", []):
        if service.get("type", service.get("@type")) == "SearchService1":
            return str(service.get("id", service.get("@id")))
    raise AssertionError("the manifest declares no SearchService1")


def uv_finds(tab: Page, service: str, word: str, shot: str = "") -> list[str]:
    """Universal Viewer's search within the item, through the manifest's search ``service``:
    the texts of the hits it received for ``word``, once it shows them."""
    search = tab.locator("input.searchText:visible").first
    search.wait_for()
    search.fill(word)
    with tab.expect_response(lambda resp: resp.url.startswith(service + "?")) as answer:
        search.press("Enter")
    assert answer.value.status == 200
    found = answer.value.json()
    tab.get_by_text(re.compile(rf"1 result found for\s+.?{word}")).first.wait_for()
    if shot:
        tab.screenshot(path=str(ARTIFACTS / f"{shot}.png"))
    tab.locator(".clearSearch:visible").first.click()  # back to the search box
    return [r["resource"]["chars"] for r in found["resources"]]


def test_every_writer_is_read_by_plain_mirador_and_uv_under_two_host_names(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    bases = {host: f"http://{host}:{server.port}" for host in HOSTS}
    for host, base in bases.items():
        found = discover(base)
        for writer, write in WRITERS.items():
            write(base, found, WORDS[host, writer])

    every = sorted(text(w) for w in WORDS.values())
    for host, base in bases.items():
        found = discover(base)
        # The manifest's page: what a plain Mirador reads, under this host's canvas id.
        page = follow(found.page)
        assert sorted(a["body"]["value"] for a in page["items"]) == every
        assert {_canvas_of(a["target"]) for a in page["items"]} == {found.canvas}
        read_in_chromium(browser, host, base, found, every)


def read_in_chromium(
    browser: Browser, host: str, base: str, found: Found, every: list[str]
) -> None:
    tab, errors = new_tab(browser)
    asked: list[str] = []  # what the read-only Mirador page requests
    tab.on("request", lambda r: asked.append(r.url) if "editor=off" in tab.url else None)
    try:

        def plain_reads_the_page(r: Response) -> bool:
            return r.url == found.page and "editor=off" in tab.url

        with tab.expect_response(plain_reads_the_page) as read:
            listed = plain_mirador_lists(tab, base)
        assert read.value.status == 200
        assert asked and not [u for u in asked if "/annotot" in u or "/session" in u], asked
        for t in every:
            assert sum(t in item for item in listed) == 1, (host, t, listed)
        tab.screenshot(path=str(ARTIFACTS / f"matrix-mirador-plain-{host}.png"))

        tab.goto(f"{base}/")
        with tab.expect_navigation():
            tab.locator("li.object", has_text=LABEL).locator("a.uv").click()
        service = search_service(found.manifest)
        assert service.startswith(base + "/"), service
        for word in WORDS.values():
            shot = f"matrix-uv-search-{host}" if word == WORDS[host, "sas"] else ""
            assert uv_finds(tab, service, word, shot) == [text(word)], (host, word)
    finally:
        tab.context.close()
    assert not errors, f"uncaught errors in the pages ({host}): {errors}"


def test_the_two_mirador_modes_link_to_each_other_and_a_bad_mode_is_a_400(
    server: LiveServer,
) -> None:
    manifest = discover(server.url).manifest["id"]
    editor = httpx.get(f"{server.url}/viewer/mirador", params={"manifest": manifest})
    assert editor.status_code == 200
    assert 'data-editor="on"' in editor.text and "id=sign-in" in editor.text
    reader_link = re.search(r'<a class=reader href="([^"]+)"', editor.text)
    assert reader_link is not None
    reader = httpx.get(reader_link.group(1).replace("&amp;", "&"))
    assert reader.status_code == 200
    assert 'data-editor="off"' in reader.text and "sign-in" not in reader.text
    assert (
        "<script>" not in reader.text
        and "script-src 'self'" in reader.headers["content-security-policy"]
    )
    back = re.search(r'<a class=editor href="([^"]+)"', reader.text)
    assert back is not None
    assert httpx.get(back.group(1).replace("&amp;", "&")).text == editor.text
    bad = httpx.get(f"{server.url}/viewer/mirador", params={"manifest": manifest, "editor": "x"})
    assert bad.status_code == 400
    assert "editor must be on or off" in bad.text and "\n" not in bad.text.strip()
