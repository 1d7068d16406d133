"""The OCR layer in the bundled viewers (Debian's Chromium, a real uvicorn): on the sample's
printed page, read by ``iiifsrv enrich ocr``, Mirador lists the machine's lines marked apart from
the scholars' annotations, and searching within the item in Mirador and in Universal Viewer
finds a word on its line (both highlight that box; screenshots in test-artifacts/).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page

from iiifsrv import samples
from iiifsrv.agents import ocr
from iiifsrv.annotations.urls import canvas_container_url
from iiifsrv.settings import Settings
from tests.conftest import LiveServer, start_server, stop_server
from tests.test_viewers_e2e import (  # noqa: F401
    BUILD,
    CHROMIUM,
    OSD_CANVAS,
    TOKEN,
    browser,
    canvas_id,
    page,
    shot,
    viewer_url,
)

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")
FIRST_LINE = "Four score and seven years ago our fathers brought forth on"


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


def test_mirador_lists_machine_lines_apart(server: LiveServer, page: Page) -> None:  # noqa: F811
    canvas = canvas_id(server, samples.PRINTED_ID)
    note = "A scholar's note on the first line"
    created = httpx.post(
        canvas_container_url(server.url, canvas),
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"type": "Annotation", "motivation": "commenting",
              "body": {"type": "TextualBody", "value": note}, "target": f"{canvas}#xywh=0,0,90,40"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    page.goto(viewer_url(server, "mirador", samples.PRINTED_ID, panel="annotations"))
    panel = page.locator("aside", has_text="Annotations").first
    panel.get_by_text(FIRST_LINE).wait_for()
    panel.get_by_text(note).wait_for()
    # Every machine line carries the chip; the scholar's note does not.
    chips = panel.get_by_text("machine: ocr (tesseract", exact=False)
    assert chips.count() == len(samples.PRINTED_TEXT)
    shot(page, "mirador-ocr-lines")


def test_mirador_search_within_finds_the_line(server: LiveServer, page: Page) -> None:  # noqa: F811
    page.goto(viewer_url(server, "mirador", samples.PRINTED_ID, panel="search"))
    box = page.locator("aside input").first  # Mirador's search field (not the sign-in box)
    box.wait_for()
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
    box = [int(v) for v in line["on"].split("#xywh=")[1].split(",")]
    assert all(abs(a - b) <= 4 for a, b in zip(box, drawn, strict=True)), (box, drawn)
    page.locator("aside").get_by_text("conceived in", exact=False).first.wait_for()
    shot(page, "mirador-ocr-search")


def test_uv_search_within_finds_the_line(server: LiveServer, page: Page) -> None:  # noqa: F811
    page.goto(viewer_url(server, "uv", samples.PRINTED_ID))
    page.locator(OSD_CANVAS).first.wait_for()
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
