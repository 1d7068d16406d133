"""End to end: the Spectrum panel of the bundled Mirador (viewers/src/spectrum-plugin.js) in
Debian's Chromium, against a real uvicorn serving the multispectral sample. A click on the image
plots every band's value there; the values shown, pinned and downloaded as CSV are those of the
spectral service that the manifest links (followed from the manifest, never built by hand).

Needs what ``scripts/setup --test`` installs: the viewer build (npm) and /usr/bin/chromium.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Page

from tests.conftest import ROOT, LiveServer
from tests.test_viewers_e2e import (
    OSD_CANVAS,
    TOKEN,
    VIEWPORT,
    browser,
    copy_for_readme,
    manifest_of,
    page,
    server,
    shot,
    viewer_url,
)

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the viewer tests

SPECTRA_PROFILE = "https://iiifsrv.example/api/spectra/1"
PANEL = ".spectrum-panel"


def _profiles(service: dict[str, Any]) -> list[str]:
    profile = service.get("profile")
    return profile if isinstance(profile, list) else [str(profile)]


def spectral_service(server: LiveServer, object_id: str) -> tuple[str, dict[str, Any]]:
    """(service URL, canvas), found the way the plugin finds it: the canvas's own ``service``
    entry with the spectral profile, else the ``service`` of its images' info.json."""
    manifest = httpx.get(manifest_of(server, object_id)).json()
    canvas: dict[str, Any] = manifest["items"][0]
    for service in canvas.get("service", []):
        if SPECTRA_PROFILE in _profiles(service):
            return str(service["id"]), canvas
    for page_ in canvas["items"]:
        for anno in page_["items"]:
            body = anno["body"]
            for item in body["items"] if body.get("type") == "Choice" else [body]:
                for image_service in item.get("service", []):
                    if image_service.get("type") != "ImageService3":
                        continue
                    info = httpx.get(image_service["id"] + "/info.json").json()
                    for service in info.get("service", []):
                        if SPECTRA_PROFILE in _profiles(service):
                            return str(service["id"]), canvas
    raise AssertionError(f"{object_id}: no spectral service linked from the manifest")


def spectrum(service: str, x: int, y: int, radius: int) -> dict[str, Any]:
    response = httpx.get(service, params={"x": x, "y": y, "radius": radius})
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def screen_point(page: Page, canvas: dict[str, Any], fx: float, fy: float) -> tuple[float, float]:
    """Where a point of the canvas (as fractions of its size) is on the screen: at first,
    Mirador fits the canvas into the viewer, centred."""
    box = page.locator(OSD_CANVAS).first.bounding_box()
    assert box is not None
    scale = min(box["width"] / canvas["width"], box["height"] / canvas["height"])
    left = box["x"] + (box["width"] - canvas["width"] * scale) / 2
    top = box["y"] + (box["height"] - canvas["height"] * scale) / 2
    return left + fx * canvas["width"] * scale, top + fy * canvas["height"] * scale


def panel_points(page: Page) -> list[dict[str, str]]:
    items = page.locator(f"{PANEL} .spectrum-points li")
    keys = ("point", "x", "y", "radius", "pinned", "status", "colour")
    return [
        {k: items.nth(i).get_attribute(f"data-{k}") or "" for k in keys}
        for i in range(items.count())
    ]


def table_values(page: Page, point_id: str) -> dict[str, float]:
    cells = page.locator(f"{PANEL} table.spectrum-table td[data-point='{point_id}']")
    return {
        cells.nth(i).get_attribute("data-band") or "": float(
            cells.nth(i).get_attribute("data-value") or "nan"
        )
        for i in range(cells.count())
    }


def chart_values(page: Page, point_id: str) -> dict[str, float]:
    dots = page.locator(f"{PANEL} svg g.spectrum-series[data-point='{point_id}'] circle")
    return {
        dots.nth(i).get_attribute("data-band") or "": float(
            dots.nth(i).get_attribute("data-value") or "nan"
        )
        for i in range(dots.count())
    }


def wait_ready(page: Page, count: int) -> list[dict[str, str]]:
    page.wait_for_function(
        """n => { const li = document.querySelectorAll('.spectrum-panel .spectrum-points li');
                  return li.length === n && [...li].every(e => e.dataset.status === 'ready'); }""",
        arg=count,
    )
    return panel_points(page)


def expected_pixel(canvas: dict[str, Any], fx: float, fy: float) -> tuple[float, float]:
    return fx * canvas["width"], fy * canvas["height"]


def test_spectrum_panel_plots_pins_and_downloads_the_service_values(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    service, canvas = spectral_service(server, "palimpsest")
    page.goto(viewer_url(server, "mirador", "palimpsest", panel="layers"))
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Spectrum", exact=True).click()
    panel = page.locator(PANEL)
    panel.wait_for()
    assert panel.get_attribute("data-service") == service

    # 1. A click where the hidden word lies (infrared text at 62-84% of the height).
    text_at = (0.5, 0.72)
    page.mouse.click(*screen_point(page, canvas, *text_at))
    [first] = wait_ready(page, 1)
    x, y = int(first["x"]), int(first["y"])
    ex, ey = expected_pixel(canvas, *text_at)
    assert abs(x - ex) <= 3 and abs(y - ey) <= 3, (x, y, ex, ey)
    doc = spectrum(service, x, y, 0)
    expected = {b["name"]: b["mean"] for b in doc["bands"]}
    assert len(expected) == 6
    assert table_values(page, first["point"]) == expected
    assert chart_values(page, first["point"]) == expected
    assert expected["IR940"] > 2 * expected["R650"], "the infrared band shows the hidden ink"

    # 2. The radius: the current point is read again over a 7x7 window.
    page.locator(f"{PANEL} input[name=radius]").fill("3")
    page.wait_for_function(
        "() => document.querySelector('.spectrum-panel .spectrum-points li')"
        "?.dataset.radius === '3'"
    )
    [first] = wait_ready(page, 1)
    averaged = {b["name"]: b["mean"] for b in spectrum(service, x, y, 3)["bands"]}
    assert table_values(page, first["point"]) == averaged

    # 3. Pin it, click the face: two series, two colours, two markers on the image.
    page.get_by_role("button", name="Pin point").click()
    face_at = (0.5, 0.38)
    page.mouse.click(*screen_point(page, canvas, *face_at))
    first, second = wait_ready(page, 2)
    assert first["pinned"] == "true" and second["pinned"] == "false"
    assert first["colour"] != second["colour"]
    x2, y2 = int(second["x"]), int(second["y"])
    ex2, ey2 = expected_pixel(canvas, *face_at)
    assert abs(x2 - ex2) <= 3 and abs(y2 - ey2) <= 3
    assert second["radius"] == "3"
    face = {b["name"]: b["mean"] for b in spectrum(service, x2, y2, 3)["bands"]}
    assert table_values(page, second["point"]) == face
    assert table_values(page, first["point"]) == averaged
    series = page.locator(f"{PANEL} svg g.spectrum-series")
    assert series.count() == 2
    assert [series.nth(i).get_attribute("data-colour") for i in range(2)] == [
        first["colour"],
        second["colour"],
    ]
    markers = page.locator(".spectrum-marker")
    assert sorted(markers.nth(i).get_attribute("data-colour") or "" for i in range(2)) == sorted(
        [first["colour"], second["colour"]]
    )
    assert markers.count() == 2
    box = page.locator(f".spectrum-marker[data-point='{second['point']}']").bounding_box()
    assert box is not None
    sx, sy = screen_point(page, canvas, *face_at)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert abs(cx - sx) <= 3 and abs(cy - sy) <= 3, "the marker is where the click was"

    # 4. The CSV holds both points' values, one row per point and band.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    target = tmp_path / "spectra.csv"
    download.value.save_as(target)
    assert download.value.suggested_filename == "palimpsest-spectra.csv"
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert len(rows) == 12
    for number, (px, py, values) in enumerate([(x, y, averaged), (x2, y2, face)], 1):
        mine = [r for r in rows if r["point"] == str(number)]
        assert {r["band"]: float(r["mean"]) for r in mine} == values
        assert {(r["x"], r["y"], r["radius"]) for r in mine} == {(str(px), str(py), "3")}
    labels = {b["name"]: b["label"] for b in doc["bands"]}
    assert all(r["label"] == labels[r["band"]] for r in rows)

    page.mouse.move(VIEWPORT["width"] * 0.3, VIEWPORT["height"] * 0.1)  # no tooltips in shots
    page.get_by_role("tooltip").first.wait_for(state="hidden")
    shot(page, "spectrum-panel")


def test_a_service_declared_on_the_canvas_alone_is_enough(server: LiveServer, page: Page) -> None:
    """A manifest from elsewhere: one plain image (no image service, so no info.json to look
    in) on a canvas that declares the spectral service. The panel reads that service."""
    service, source = spectral_service(server, "palimpsest")
    first_choice = source["items"][0]["items"][0]["body"]["items"][0]
    canvas_id = f"{server.url}/elsewhere/canvas/1"
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": f"{server.url}/elsewhere/manifest",
        "type": "Manifest",
        "label": {"en": ["A plain image with a spectral service on its canvas"]},
        "items": [
            {
                "id": canvas_id,
                "type": "Canvas",
                "width": source["width"],
                "height": source["height"],
                "service": [{"id": service, "type": "Service", "profile": SPECTRA_PROFILE}],
                "items": [
                    {
                        "id": f"{canvas_id}/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas_id}/painting",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": canvas_id,
                                "body": {
                                    "id": first_choice["id"],
                                    "type": "Image",
                                    "format": "image/jpeg",
                                    "width": first_choice["width"],
                                    "height": first_choice["height"],
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    created = httpx.post(
        f"{server.url}/iiif/manifests",
        json=doc,
        headers={"Authorization": f"Bearer {TOKEN}", "Slug": "canvas-service"},
    )
    assert created.status_code == 201, created.text
    manifest = created.headers["location"]
    page.goto(f"{server.url}/viewer/mirador?manifest={quote(manifest, safe='')}")
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Spectrum", exact=True).click()
    assert page.locator(PANEL).get_attribute("data-service") == service
    at = (0.3, 0.2)
    page.mouse.click(*screen_point(page, source, *at))
    [point] = wait_ready(page, 1)
    x, y = int(point["x"]), int(point["y"])
    ex, ey = expected_pixel(source, *at)
    assert abs(x - ex) <= 3 and abs(y - ey) <= 3, (x, y, ex, ey)
    expected = {b["name"]: b["mean"] for b in spectrum(service, x, y, 0)["bands"]}
    assert table_values(page, point["point"]) == expected and len(expected) == 6


def test_no_spectrum_button_without_a_spectral_service(server: LiveServer, page: Page) -> None:
    page.goto(viewer_url(server, "mirador", "large"))
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Zoom in").first.wait_for()
    assert page.get_by_role("button", name="Spectrum", exact=True).count() == 0


if __name__ == "__main__":  # python -m tests.test_spectrum_ui: refresh docs/screenshots
    copy_for_readme("spectrum-panel", ROOT / "docs" / "screenshots" / "spectrum-panel.png")
