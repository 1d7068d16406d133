"""The OCR layer in the bundled viewers (Debian's Chromium, a real uvicorn): on the sample's
printed page, read by ``iiifsrv enrich ocr``, Mirador — with the editor and read-only — lists the
machine's lines marked apart from the scholars' annotations ("machine: ocr (tesseract …)") and
hides or shows them all at once with one switch (neither listed nor drawn when hidden, the
scholars' note untouched); searching within the item in Mirador and in Universal Viewer finds a
word on its line (both highlight that box; screenshots in test-artifacts/).

Everything is reached as a reader would: the landing page's links open the viewers, the
scholar's note is written to the container found from the collection (collection → manifest →
canvas → annotation page → ``partOf``).
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page

from iiifsrv import samples
from iiifsrv.agents import ocr
from iiifsrv.settings import Settings
from tests.conftest import LiveServer, start_server, stop_server
from tests.test_viewers_e2e import (  # noqa: F401
    BUILD,
    CHROMIUM,
    OSD_CANVAS,
    TOKEN,
    browser,
    page,
    shot,
)

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")
FIRST_LINE = "Four score and seven years ago our fathers brought forth on"
NOTE = "A scholar's note in the top margin"
CHIP = "machine: ocr (tesseract"
SWITCH = re.compile(r"^Machine annotations \(\d+\)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not (BUILD / ".vite" / "manifest.json").is_file() or not CHROMIUM.is_file():
        pytest.fail("missing the viewer build or chromium: run scripts/setup --test")
    root = tmp_path_factory.mktemp("ocr-e2e")
    images, data = root / "images", root / "data"
    samples.ensure(images, small=True, data=data)
    settings = Settings(images=str(images), data=str(data))
    results = ocr.run(settings, [samples.PRINTED_ID], jobs=1, out=io.StringIO(),
                      err=io.StringIO())  # fmt: skip
    assert [r.status for r in results] == ["done"]
    live = start_server(images, data, env={"IIIFSRV_TOKENS": f"{TOKEN}=alice"})
    yield live
    stop_server(live)


def follow(url: str) -> Any:
    response = httpx.get(url)
    assert response.status_code == 200, (url, response.text)
    return response.json()


@pytest.fixture(scope="module")
def note(server: LiveServer) -> str:
    """A scholar's commenting note on the printed page, posted to the container a client finds
    by following the links from the collection."""
    collection = follow(f"{server.url}/iiif/collection")
    (ref,) = [i for i in collection["items"] if i["label"]["en"][0].startswith("Printed page")]
    canvas = follow(ref["id"])["items"][0]
    container = follow(canvas["annotations"][0]["id"])["partOf"][0]["id"]
    created = httpx.post(
        container,
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"type": "Annotation", "motivation": "commenting",
              "body": {"type": "TextualBody", "value": NOTE},
              "target": f"{canvas['id']}#xywh=20,20,90,40"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    return NOTE


def open_from_landing(view: Page, server: LiveServer, link: str) -> None:
    """The landing page's link of class ``link`` (mirador, uv) for the printed page."""
    view.goto(server.url + "/")
    with view.expect_navigation():
        view.locator(f"li.object[data-id={samples.PRINTED_ID}] a.{link}").click()
    view.locator(OSD_CANVAS).first.wait_for()


def open_sidebar(view: Page, tab: str) -> Locator:
    view.get_by_role("button", name="Toggle sidebar").click()
    view.get_by_role("tab", name=tab).click()
    return view.locator("aside", has_text=tab).first


# The pixels Mirador draws annotations with: its overlay canvas, above OpenSeadragon's own.
DRAWN_PIXELS = """() => {
  const overlay = document.querySelectorAll('.openseadragon-canvas canvas')[1];
  const data = overlay.getContext('2d').getImageData(0, 0, overlay.width, overlay.height).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
  return n;
}"""


def drawn_once(view: Page, condition: str) -> int:
    """The number of drawn annotation pixels, once ``condition`` (JS, on ``n``) holds."""
    view.wait_for_function(f"() => {{ const n = ({DRAWN_PIXELS})(); return {condition}; }}")
    return int(view.evaluate(DRAWN_PIXELS))


def check_machine_layer(view: Page, mode: str) -> None:
    """The Annotations panel lists every OCR line with its chip and the note without one; the
    switch hides every machine line from the list, the count and the image, and brings them
    back; the scholar's note stays listed and drawn throughout."""
    lines = len(samples.PRINTED_TEXT)
    panel = open_sidebar(view, "Annotations")
    panel.get_by_text(FIRST_LINE).wait_for()
    panel.get_by_text(NOTE).wait_for()
    items = panel.locator("[annotationid]")
    chips = panel.get_by_text(CHIP, exact=False)
    assert items.count() == lines + 1
    assert chips.count() == lines
    assert CHIP not in items.filter(has_text=NOTE).inner_text()
    panel.get_by_text(f"Showing {lines + 1} annotations").wait_for()
    view.wait_for_load_state("networkidle")

    view.get_by_role("button", name="Highlight all").click()  # draw every box, not only hovered
    shown = drawn_once(view, "n > 0")
    switch = panel.get_by_role("switch", name=SWITCH)
    assert switch.is_checked()
    shot(view, f"mirador-{mode}-machine-shown")

    switch.click()  # hide the machine layer
    panel.get_by_text("Showing 1 annotation", exact=True).wait_for()
    assert not switch.is_checked()
    assert panel.get_by_text(FIRST_LINE).count() == 0
    assert chips.count() == 0
    assert items.count() == 1 and NOTE in items.first.inner_text()
    # Only the note's box is drawn: some pixels, a small part of the eleven boxes' outlines.
    hidden = drawn_once(view, f"n < {shown} / 10")
    assert hidden > 0, "the scholar's note is still drawn"
    shot(view, f"mirador-{mode}-machine-hidden")

    switch.click()  # and show it again
    panel.get_by_text(f"Showing {lines + 1} annotations").wait_for()
    assert switch.is_checked()
    assert items.count() == lines + 1 and chips.count() == lines
    drawn_once(view, f"n > {hidden} * 10")


@pytest.mark.parametrize("mode", ["editor", "read-only"])
def test_mirador_marks_the_machine_lines_and_toggles_them_as_a_layer(
    server: LiveServer,
    note: str,
    page: Page,  # noqa: F811
    mode: str,
) -> None:
    open_from_landing(page, server, "mirador")  # Mirador with the editor, not signed in
    if mode == "read-only":
        with page.expect_navigation():
            page.locator("header a.reader").click()  # the page's link to the read-only Mirador
        page.locator(OSD_CANVAS).first.wait_for()
    check_machine_layer(page, mode)


def test_mirador_search_within_finds_the_line(server: LiveServer, page: Page) -> None:  # noqa: F811
    open_from_landing(page, server, "mirador")
    panel = open_sidebar(page, "Search")
    box = panel.locator("input").first  # Mirador's search field
    box.fill("liberty")
    with page.expect_response(
        lambda r: "/annotations/search/" in r.url and "/autocomplete" not in r.url
    ) as searched:
        box.press("Enter")
    assert searched.value.status == 200, searched.value.url
    # Mirador called the manifest's Content Search 1.0 service; the hit points at the line that
    # holds the word, where it was drawn (Mirador highlights that box on the page).
    (line,) = searched.value.json()["resources"]
    drawn = samples.printed_page()[1][1]
    box_xywh = [int(v) for v in line["on"].split("#xywh=")[1].split(",")]
    assert all(abs(a - b) <= 4 for a, b in zip(box_xywh, drawn, strict=True)), (box_xywh, drawn)
    panel.get_by_text("conceived in", exact=False).first.wait_for()
    shot(page, "mirador-ocr-search")


def test_uv_search_within_finds_the_line(server: LiveServer, page: Page) -> None:  # noqa: F811
    open_from_landing(page, server, "uv")
    page.wait_for_load_state("networkidle")
    box = page.locator("#searchWithinInput")
    box.wait_for()
    box.fill("liberty")
    with page.expect_response(
        lambda r: "/annotations/search/" in r.url and "/autocomplete" not in r.url
    ) as searched:
        box.press("Enter")
    assert searched.value.status == 200
    (line,) = searched.value.json()["resources"]
    assert line["resource"]["chars"].startswith("this continent")
    # UV says so, and zooms to the line it highlights.
    page.get_by_text("result found for", exact=False).first.wait_for()
    shot(page, "uv-ocr-search")
