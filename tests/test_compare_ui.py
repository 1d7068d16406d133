"""The compare page, /viewer/compare?manifest=A&manifest=B: its refusals in-process, and in
Debian's Chromium (real uvicorn, the multispectral sample) two Mirador windows whose zoom and
centre follow each other while "Sync" is ticked, and not when it is not.

Needs what ``scripts/setup --test`` installs: the viewer build (npm) and /usr/bin/chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from playwright.sync_api import Page

from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from iiifsrv.web.viewers import check_compare_params
from tests.conftest import ROOT, LiveServer
from tests.test_viewers_e2e import OSD_CANVAS, browser, copy_for_readme, page, server, shot

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the viewer tests

A = "https://example.org/iiif/a/manifest"
B = "https://example.org/iiif/b/manifest"


@pytest.mark.parametrize(
    ("manifests", "message"),
    [
        ([], "compare takes 2 to 4 manifest parameters, not 0"),
        ([A], "compare takes 2 to 4 manifest parameters, not 1"),
        ([A, B, A, B, A], "compare takes 2 to 4 manifest parameters, not 5"),
        ([A, "javascript:alert(1)"], "manifest must be an absolute http(s) URL"),
        ([A, ""], "manifest must be an absolute http(s) URL"),
        ([A, "/iiif/manifests/x"], "manifest must be an absolute http(s) URL"),
    ],
)
def test_compare_refuses_bad_manifest_lists_with_400(
    tmp_path: Path, manifests: list[str], message: str
) -> None:
    settings = Settings(images=str(tmp_path / "images"), data=str(tmp_path / "data"))
    (tmp_path / "images").mkdir()
    query = "&".join(f"manifest={quote(m, safe='')}" for m in manifests)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(f"/viewer/compare?{query}")

    response = anyio.run(fetch)
    assert response.status_code == 400
    assert message in response.text
    assert "Traceback" not in response.text


def test_check_compare_params_keeps_the_order() -> None:
    assert check_compare_params([B, A, B]) == [B, A, B]


# ---- in the browser ------------------------------------------------------------------------


def compare_url(server: LiveServer, *object_ids: str) -> str:
    """The compare page for manifests that the server's collection lists."""
    collection = httpx.get(f"{server.url}/iiif/collection").json()
    by_name = {item["id"].rsplit("/", 1)[-1]: item["id"] for item in collection["items"]}
    manifests = [by_name[o] for o in object_ids]
    return f"{server.url}/viewer/compare?" + "&".join(
        f"manifest={quote(m, safe='')}" for m in manifests
    )


VIEWS = """() => {
  const v = window.miradorInstance.store.getState().viewers;
  return ['compare-1', 'compare-2'].map(id => v[id] ? { x: v[id].x, y: v[id].y, zoom: v[id].zoom }
                                                     : null);
}"""


def views(page: Page) -> list[dict[str, Any] | None]:
    result: list[dict[str, Any] | None] = page.evaluate(VIEWS)
    return result


def wheel_zoom(
    page: Page, window: int, before: dict[str, Any] | None, at: tuple[float, float] = (0.5, 0.5)
) -> list[dict[str, Any] | None]:
    """Zoom in with the mouse wheel over one window's image; both windows' views, read together
    once that window's new view is in the store."""
    box = page.locator(OSD_CANVAS).nth(window).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1])
    for _ in range(3):
        page.mouse.wheel(0, -400)
    old = before["zoom"] if before else None
    page.wait_for_function(
        """([i, old]) => { const id = 'compare-' + (i + 1);
           const v = window.miradorInstance.store.getState().viewers[id];
           return v && Number.isFinite(v.zoom) && v.zoom > (old || 0); }""",
        arg=[window, old],
    )
    both = views(page)
    assert both[window] is not None
    return both


def assert_same_view(a: dict[str, Any] | None, b: dict[str, Any] | None) -> None:
    assert a is not None and b is not None
    assert b["zoom"] == pytest.approx(a["zoom"], rel=1e-3)
    assert b["x"] == pytest.approx(a["x"], abs=1)
    assert b["y"] == pytest.approx(a["y"], abs=1)


def test_compare_keeps_the_two_windows_in_step_and_sync_can_be_turned_off(
    server: LiveServer, page: Page
) -> None:
    page.set_viewport_size({"width": 1600, "height": 900})
    page.goto(compare_url(server, "palimpsest", "palimpsest"))
    page.locator(OSD_CANVAS).nth(1).wait_for()
    page.wait_for_load_state("networkidle")
    windows = page.locator(".mirador-window")
    assert windows.count() == 2
    for i in range(2):  # each window has its own Layers panel open
        windows.nth(i).locator("aside", has_text="Layers").wait_for()
    assert page.locator("#sync").is_checked()

    # The store's change and the dispatch to the other window happen in one go: when the first
    # window's new view is in the store, the second's is already there.
    first, second = wheel_zoom(page, 0, views(page)[0], at=(0.5, 0.68))
    assert_same_view(first, second)
    # ... and the second window's image moves there (it reports the view it animated to).
    page.wait_for_load_state("networkidle")
    assert_same_view(*views(page))

    # Each window has its own layers: the 940 nm band in front in the second one only.
    layers = windows.nth(1).locator("aside", has_text="Layers")
    infrared = layers.locator("li", has_text="940 nm infrared").first
    infrared.scroll_into_view_if_needed()
    with page.expect_response(lambda r: "IR940" in r.url and r.status == 200):
        infrared.get_by_role("button", name="Show layer").click()
    infrared.get_by_role("button", name="Move layer to front").click()
    page.wait_for_load_state("networkidle")
    page.mouse.move(800, 20)  # no tooltips in the shot
    page.get_by_role("tooltip").first.wait_for(state="hidden")
    shot(page, "compare")

    # The other way round too.
    settled = views(page)
    mirrored, back = wheel_zoom(page, 1, settled[1])
    assert_same_view(back, mirrored)

    # Sync off: zooming the first window leaves the second where it is.
    page.locator("#sync").uncheck()
    page.wait_for_load_state("networkidle")
    before = views(page)
    moved, still = wheel_zoom(page, 0, before[0])
    assert moved is not None and before[0] is not None and moved["zoom"] > before[0]["zoom"]
    assert still == before[1]


def test_compare_two_different_objects_follow_in_proportion(server: LiveServer, page: Page) -> None:
    manifests = [
        httpx.get(f"{server.url}/iiif/manifests/{o}").json() for o in ("palimpsest", "large")
    ]
    widths = [m["items"][0]["width"] for m in manifests]
    page.goto(compare_url(server, "palimpsest", "large"))
    page.locator(OSD_CANVAS).nth(1).wait_for()
    page.wait_for_load_state("networkidle")
    first, second = wheel_zoom(page, 0, views(page)[0])
    assert first is not None and second is not None
    # The same share of each canvas's width is shown, around the same relative point.
    assert second["zoom"] * widths[1] == pytest.approx(first["zoom"] * widths[0], rel=1e-3)
    assert second["x"] / widths[1] == pytest.approx(first["x"] / widths[0], abs=2e-3)


if __name__ == "__main__":  # python -m tests.test_compare_ui: refresh docs/screenshots
    copy_for_readme("compare", ROOT / "docs" / "screenshots" / "compare.png")
