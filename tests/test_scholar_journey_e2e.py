"""The scholar's walk-through of the README ("A scholar's walk-through", under Viewers), done by
clicks in Debian's Chromium against a real uvicorn serving the sample collection: from ``/``,
open the palimpsest in Mirador, sign in, pin two spectra in the Spectrum panel, show the PCA
layer, annotate the hidden word with the editor, then open the same manifest in Universal Viewer
(the header's link) and find the annotation by searching for its text. Only links and UI are
followed; the values the page shows are checked against what the manifest's links answer.

Screenshots of each step go to test-artifacts/scholar-*.png; ``python -m
tests.test_scholar_journey_e2e`` copies two of them to docs/screenshots/ (as
tests/test_spectrum_ui.py does).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.conftest import ROOT, LiveServer
from tests.test_spectrum_ui import (
    PANEL,
    SPECTRA_PROFILE,
    _profiles,
    screen_point,
    spectrum,
    table_values,
    wait_ready,
)
from tests.test_viewers_e2e import (
    OSD_CANVAS,
    TOKEN,
    VIEWPORT,
    browser,
    copy_for_readme,
    decode,
    page,
    server,
    shot,
)

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the viewer tests

PCA_LABEL = "Principal components 1-3 (PCA)"
NOTE = "Hidden word under the paint, read in infrared and PCA: COBOL"
SEARCH_WORD = "COBOL"
# Where the sample paints the hidden word (iiifsrv/ingest/sample.py): 70% of the width,
# centred, from 62% of the height down about 22%; the rectangle drawn around it.
WORD_BOX = ((0.13, 0.6), (0.87, 0.86))


def quiet(page: Page) -> None:
    """No tooltip in a screenshot."""
    page.mouse.move(VIEWPORT["width"] * 0.5, 5)
    page.get_by_role("tooltip").first.wait_for(state="hidden")


def spectral_service_of(canvas: dict[str, Any]) -> str:
    for service in canvas.get("service", []):
        if SPECTRA_PROFILE in _profiles(service):
            return str(service["id"])
    raise AssertionError("the palimpsest's canvas declares no spectral service")


def test_scholar_walk_through_from_the_landing_page(server: LiveServer, page: Page) -> None:
    # 1. The landing page: the palimpsest's Mirador link (multispectral: opens on Layers).
    page.goto(server.url + "/")
    entry = page.locator("li.object[data-id=palimpsest]")
    entry.locator("img").wait_for()
    shot(page, "scholar-1-landing")
    with page.expect_navigation():
        entry.locator("a.mirador").click()
    page.locator(OSD_CANVAS).first.wait_for()
    manifest_url = page.locator("header a.manifest").get_attribute("href") or ""
    manifest = httpx.get(manifest_url).json()
    canvas: dict[str, Any] = manifest["items"][0]

    # 2. Sign in with the token (the page reloads, signed in; the editor's buttons appear).
    page.locator("#sign-in input[name=token]").fill(TOKEN)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.locator("#session-state", has_text="Annotating as alice").wait_for()
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")

    # 3. Two spectra pinned: the hidden word and the face, compared on one chart.
    page.get_by_role("button", name="Spectrum", exact=True).click()
    panel = page.locator(PANEL)
    panel.wait_for()
    service = spectral_service_of(canvas)
    assert panel.get_attribute("data-service") == service
    for n, at in enumerate([(0.5, 0.72), (0.5, 0.38)], 1):
        page.mouse.click(*screen_point(page, canvas, *at))
        wait_ready(page, n)
        page.get_by_role("button", name="Pin point").click()
        page.wait_for_function(
            """n => [...document.querySelectorAll('.spectrum-panel .spectrum-points li')]
                     .filter(e => e.dataset.pinned === 'true').length === n""",
            arg=n,
        )
    points = wait_ready(page, 2)
    assert [p["pinned"] for p in points] == ["true", "true"]
    assert points[0]["colour"] != points[1]["colour"]
    assert page.locator(f"{PANEL} svg g.spectrum-series").count() == 2
    assert page.locator(".spectrum-marker").count() == 2
    word, face = (
        {b["name"]: b["mean"] for b in spectrum(service, int(p["x"]), int(p["y"]), 0)["bands"]}
        for p in points
    )
    assert table_values(page, points[0]["point"]) == word
    assert table_values(page, points[1]["point"]) == face
    assert word["IR940"] < face["IR940"], "in infrared the hidden ink is darker than the face"
    quiet(page)
    shot(page, "scholar-2-spectra")

    # 4. The PCA layer, shown and moved to the front in the Layers panel.
    before = decode(page.locator(OSD_CANVAS).first.screenshot())
    layers = page.locator("aside", has_text="Layers").first
    pca = layers.locator("li", has_text=PCA_LABEL).first
    pca.scroll_into_view_if_needed()
    with page.expect_response(lambda r: "pca" in r.url and "/iiif/" in r.url and r.ok):
        pca.get_by_role("button", name="Show layer").click()
    pca.get_by_role("button", name="Move layer to front").click()
    page.wait_for_load_state("networkidle")
    quiet(page)
    shot(page, "scholar-3-pca")
    after = decode(page.locator(OSD_CANVAS).first.screenshot())
    changed = (after - before).abs().avg()
    assert changed > 10, f"showing the PCA layer changed the image by only {changed:.1f}"

    # 5. Annotate the hidden word: close the Spectrum panel (a click would read a point), open
    #    the Annotations panel, draw a rectangle around the word, write the note, save.
    page.get_by_role("button", name="Close the Spectrum panel").click()
    panel.wait_for(state="detached")
    page.get_by_role("tab", name="Annotations").first.click()
    page.get_by_role("button", name="Create annotation").first.click()
    page.locator("#multiple_body").click()
    page.get_by_role("button", name="Add a rectangle").click()
    (x0, y0), (x1, y1) = (screen_point(page, canvas, *corner) for corner in WORD_BOX)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.locator(".ql-editor").click()
    page.keyboard.type(NOTE)
    with page.expect_response(lambda r: r.request.method == "POST" and "/annotot" in r.url) as s:
        page.get_by_role("button", name="Save").click()
    assert s.value.status == 200, s.value.text()
    annotations = page.locator("aside", has_text="Annotations").first
    annotations.get_by_text(NOTE).wait_for()
    # Stored where every client finds it: the annotation page the manifest's canvas references.
    stored = httpx.get(canvas["annotations"][0]["id"]).json()["items"]
    assert len([a for a in stored if NOTE in json.dumps(a)]) == 1, stored
    quiet(page)
    shot(page, "scholar-4-annotation")

    # 6. The same manifest in Universal Viewer (the header's link); search within it.
    with page.expect_navigation():
        page.locator("header a.other", has_text="Universal Viewer").click()
    assert page.locator("#uv").get_attribute("data-manifest") == manifest_url
    search = page.locator("input.searchText:visible").first
    search.wait_for()
    search.fill(SEARCH_WORD)
    with page.expect_response(lambda r: "/annotations/search/" in r.url) as answer:
        search.press("Enter")
    assert answer.value.status == 200
    hits = answer.value.json()["resources"]
    assert len(hits) == 1 and NOTE in json.dumps(hits[0]), hits  # the editor's HTML body
    page.get_by_text(f"result found for '{SEARCH_WORD}'").first.wait_for()
    page.wait_for_load_state("networkidle")
    shot(page, "scholar-5-uv-search")


if __name__ == "__main__":  # python -m tests.test_scholar_journey_e2e: refresh docs/screenshots
    out = ROOT / "docs" / "screenshots"
    copy_for_readme("scholar-3-pca", out / "scholar-pca.png")
    copy_for_readme("scholar-5-uv-search", out / "scholar-uv-search.png")
