"""End to end: the bundled Mirador 4 (with the annotation editor) and Universal Viewer 4, in
Debian's Chromium driven by Playwright, against a real uvicorn serving the small sample
collection and the multispectral sample. Screenshots of every scenario go to test-artifacts/.

Needs what ``scripts/setup --test`` installs: the viewer build (npm) and /usr/bin/chromium.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pyvips
from playwright.sync_api import Browser, Page, Response, sync_playwright

from iiifsrv import samples
from tests.conftest import ROOT, LiveServer, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
BUILD = ROOT / "iiifsrv" / "static" / "build"
TOKEN = "e2e-s3cret-Zq8vN2kLx4Rw7TyPm"
VIEWPORT = {"width": 1280, "height": 800}
LOAD_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    needed = {
        "the viewer build (iiifsrv/static/build)": BUILD / ".vite" / "manifest.json",
        "Universal Viewer (iiifsrv/static/build/uv)": BUILD / "uv" / "umd" / "UV.js",
        "Debian's chromium": CHROMIUM,
    }
    missing = [what for what, path in needed.items() if not path.is_file()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup --test")
    root = tmp_path_factory.mktemp("e2e")
    images, data = root / "images", root / "data"
    samples.ensure(images, small=True, data=data)
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


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(LOAD_TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"{exc} at {tab.url}\n{exc.stack}"))
    yield tab
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def manifest_of(server: LiveServer, object_id: str) -> str:
    return f"{server.url}/iiif/manifests/{quote(object_id, safe='')}"


def viewer_url(server: LiveServer, viewer: str, object_id: str, **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    manifest = quote(manifest_of(server, object_id), safe="")
    return f"{server.url}/viewer/{viewer}?manifest={manifest}{extra}"


def is_image_api(response: Response) -> bool:
    return "/iiif/3/" in response.url or "/iiif/2/" in response.url


def decode(png: bytes) -> pyvips.Image:
    image = pyvips.Image.new_from_buffer(png, "")
    return image.extract_band(0, n=3) if image.bands >= 3 else image


def shot(target: Page, name: str, *, locator: str | None = None) -> bytes:
    """A screenshot of the page (or one element of it), kept as a test artefact."""
    path = ARTIFACTS / f"{name}.png"
    if locator is None:
        return target.screenshot(path=str(path))
    return target.locator(locator).first.screenshot(path=str(path))


def band_labels(server: LiveServer, object_id: str) -> list[str]:
    doc = httpx.get(f"{server.url}/objects/{object_id}").json()
    return [band["label"] for band in doc["bands"]]


def canvas_id(server: LiveServer, object_id: str) -> str:
    manifest = httpx.get(manifest_of(server, object_id)).json()
    return str(manifest["items"][0]["id"])


def canvas_links(server: LiveServer, object_id: str) -> tuple[str, str, str]:
    """(canvas id, its annotation page, the page's container) of an object's first canvas, as
    a client finds them: manifest → canvas → ``annotations`` page → its ``partOf``."""
    canvas = httpx.get(manifest_of(server, object_id)).json()["items"][0]
    page = str(canvas["annotations"][0]["id"])
    part = httpx.get(page).json()["partOf"]
    container = part["id"] if isinstance(part, dict) else part[0]["id"]
    return str(canvas["id"]), page, str(container)


OSD_CANVAS = ".openseadragon-canvas"


# ---- Mirador ---------------------------------------------------------------------------------


def test_mirador_large_image_every_image_request_succeeds_and_canvas_is_not_blank(
    server: LiveServer, page: Page
) -> None:
    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r) if is_image_api(r) else None)
    page.goto(viewer_url(server, "mirador", "large"))
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Zoom in").click()
    page.wait_for_load_state("networkidle")

    infos = [r for r in responses if r.url.endswith("/info.json")]
    tiles = [r for r in responses if not r.url.endswith("/info.json")]
    assert infos and tiles, [r.url for r in responses]
    failed = [(r.status, r.url) for r in responses if not 200 <= r.status < 300]
    assert not failed
    assert any("/large/" in r.url for r in tiles)
    canvas = decode(shot(page, "mirador-large", locator=OSD_CANVAS))
    assert canvas.deviate() > 20, "the canvas looks blank"


def _region(image: pyvips.Image, box: tuple[float, float, float, float]) -> pyvips.Image:
    left, top, right, bottom = box
    x, y = int(image.width * left), int(image.height * top)
    return image.crop(x, y, int(image.width * right) - x, int(image.height * bottom) - y)


def _dark_fraction(image: pyvips.Image, below: int = 110) -> float:
    grey = image.colourspace("b-w")[0]
    return float(((grey < below) / 255).avg())


def test_mirador_multispectral_layers_list_every_band_and_infrared_reveals_the_text(
    server: LiveServer, page: Page
) -> None:
    page.goto(viewer_url(server, "mirador", "palimpsest", panel="layers"))
    panel = page.locator("aside", has_text="Layers").first
    panel.wait_for()
    page.wait_for_load_state("networkidle")
    listed = panel.inner_text()
    for label in band_labels(server, "palimpsest"):
        assert label in listed, f"{label!r} is not in the layers panel"
    before = decode(shot(page, "mirador-palimpsest-truecolour", locator=OSD_CANVAS))

    infrared = panel.locator("li", has_text="940 nm infrared").first
    infrared.scroll_into_view_if_needed()
    with page.expect_response(lambda r: "IR940" in r.url and r.status == 200):
        infrared.get_by_role("button", name="Show layer").click()
    infrared.get_by_role("button", name="Move layer to front").click()
    page.wait_for_load_state("networkidle")
    page.mouse.move(VIEWPORT["width"] * 0.6, VIEWPORT["height"] * 0.4)  # no tooltips in shots
    page.get_by_role("tooltip").first.wait_for(state="hidden")
    shot(page, "mirador-palimpsest-infrared")
    after = decode(shot(page, "mirador-palimpsest-infrared-canvas", locator=OSD_CANVAS))

    # The portrait fills the canvas's height, centred; "COBOL" sits at 62-84% of its height.
    manifest = httpx.get(manifest_of(server, "palimpsest")).json()
    aspect = manifest["items"][0]["width"] / manifest["items"][0]["height"]
    half = 0.25 * aspect * before.height / before.width
    text_box = (0.5 - half, 0.66, 0.5 + half, 0.80)
    face_box = (0.5 - half, 0.30, 0.5 + half, 0.45)
    changed = (_region(after, text_box) - _region(before, text_box)).abs().avg()
    assert changed > 15, f"showing the infrared band changed the text region by {changed:.1f}"
    revealed = _dark_fraction(_region(after, text_box))
    assert revealed > 0.08 and revealed > 4 * _dark_fraction(_region(after, face_box)), revealed


def sign_in_through_the_form(page: Page, token: str = TOKEN) -> None:
    """Types the token into the Mirador page's form; the page reloads signed in."""
    page.locator("#sign-in input[name=token]").fill(token)
    with page.expect_navigation():
        page.locator("#sign-in button[type=submit]").click()
    page.locator("#session-state", has_text="Annotating as").wait_for()


def readable_credentials(page: Page) -> dict[str, Any]:
    """What page script can read: the cookies it sees and everything in web storage."""
    script = "() => ({cookie: document.cookie, local: localStorage.length, "
    script += "session: sessionStorage.length})"
    return dict(page.evaluate(script))


def test_mirador_annotation_editor_saves_to_the_store_and_shows_api_annotations(
    server: LiveServer, page: Page
) -> None:
    canvas, canvas_page, canvas_container = canvas_links(server, "palimpsest")
    api_text = "Stamp added later (created through the HTTP API)"
    created = httpx.post(
        canvas_container,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/ld+json"},
        content=json.dumps({
            "@context": "http://www.w3.org/ns/anno.jsonld",
            "type": "Annotation",
            "motivation": "commenting",
            "body": {"type": "TextualBody", "value": api_text, "format": "text/plain"},
            "target": f"{canvas}#xywh=100,40,300,120",
        }),
    )  # fmt: skip
    assert created.status_code == 201, created.text

    # Without a token: read-only, but the stored annotation is listed.
    url = viewer_url(server, "mirador", "palimpsest", panel="annotations")
    page.goto(url)
    annotations = page.locator("aside", has_text="Annotations").first
    annotations.get_by_text(api_text).wait_for()
    assert page.get_by_role("button", name="Create annotation").count() == 0

    sign_in_through_the_form(page)
    assert page.locator("#session-state").inner_text() == "Annotating as alice"
    # The session is an HttpOnly cookie: page script reads no credential at all.
    assert readable_credentials(page) == {"cookie": "", "local": 0, "session": 0}
    page.get_by_role("button", name="Create annotation").first.click()
    page.locator("#multiple_body").click()
    page.get_by_role("button", name="Add a rectangle").click()
    box = page.locator(OSD_CANVAS).first.bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.27, box["y"] + box["height"] * 0.63
    x1, y1 = box["x"] + box["width"] * 0.73, box["y"] + box["height"] * 0.77
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    comment = "Hidden word under the paint: COBOL"
    page.locator(".ql-editor").click()
    page.keyboard.type(comment)
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/annotot" in r.url
    ) as saved:
        page.get_by_role("button", name="Save").click()
    assert saved.value.status == 200, saved.value.text()
    assert TOKEN not in saved.value.url, "the token travels in no URL"
    assert saved.value.request.header_value("x-csrf-token")

    stored = httpx.get(canvas_page).json()["items"]
    mine = [a for a in stored if comment in json.dumps(a)]
    assert len(mine) == 1, stored
    assert "alice" in json.dumps(mine[0].get("creator")), "the token's user is the creator"
    page.reload()
    annotations = page.locator("aside", has_text="Annotations").first
    annotations.get_by_text(comment).wait_for()
    annotations.get_by_text(api_text).wait_for()
    assert annotations.get_by_text(comment).count() == 1, "an annotation is listed twice"
    page.get_by_role("button", name="Highlight all").first.click()
    page.mouse.move(VIEWPORT["width"] * 0.6, VIEWPORT["height"] * 0.4)
    page.get_by_role("tooltip").first.wait_for(state="hidden")
    shot(page, "mirador-annotation")


# ---- Universal Viewer ------------------------------------------------------------------------


def test_uv_opens_the_large_image(server: LiveServer, page: Page) -> None:
    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r) if is_image_api(r) else None)
    # UV draws its (empty) OpenSeadragon canvas before it asks for info.json: wait for the
    # info.json answer and then for a first image answer, not for a quiet network alone.
    with page.expect_response(lambda r: is_image_api(r) and r.url.endswith("/info.json")):
        page.goto(viewer_url(server, "uv", "large"))
    while not any(not r.url.endswith("/info.json") for r in responses):
        page.wait_for_event("response")
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    failed = [(r.status, r.url) for r in responses if not 200 <= r.status < 300]
    assert not failed
    canvas = decode(shot(page, "uv-large", locator=OSD_CANVAS))
    assert canvas.deviate() > 20, "the canvas looks blank"


def test_uv_offers_the_band_choice(server: LiveServer, page: Page) -> None:
    page.goto(viewer_url(server, "uv", "palimpsest"))
    page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.locator("button.viewportNavButton.choiceSwitch").click()
    choices = page.locator(".choiceList")
    choices.wait_for()
    listed = choices.inner_text()
    for label in band_labels(server, "palimpsest"):
        assert label in listed, f"{label!r} is not in Universal Viewer's choice list"
    with page.expect_response(lambda r: "IR940" in r.url and r.status == 200):
        choices.locator("label", has_text="940 nm infrared").click()
    page.wait_for_load_state("networkidle")
    shot(page, "uv-palimpsest-infrared")


# ---- the landing page -----------------------------------------------------------------------


def test_landing_page_links_open_both_viewers(server: LiveServer, page: Page) -> None:
    page.goto(server.url + "/")
    entry = page.locator("li.object[data-id=palimpsest]")
    thumb = entry.locator("img")
    thumb.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", thumb.element_handle())
    shot(page, "landing")
    with page.expect_navigation():
        entry.locator("a.uv").click()
    page.locator(OSD_CANVAS).first.wait_for()
    page.go_back()
    with page.expect_navigation():
        page.locator("li.object[data-id=large] a.mirador").click()
    page.locator(OSD_CANVAS).first.wait_for()
    manifest: dict[str, Any] = httpx.get(manifest_of(server, "large")).json()
    assert manifest["type"] == "Manifest"


@pytest.mark.parametrize(
    "where",
    ["landing", "mirador", "mirador-workspace", "mirador-layers", "uv", "uv-bands", "uv-empty"],
)
def test_pages_log_no_console_error_and_request_no_missing_asset(
    server: LiveServer, page: Page, where: str
) -> None:
    urls = {
        "landing": server.url + "/",
        "mirador": viewer_url(server, "mirador", "large"),
        "mirador-workspace": server.url + "/viewer/mirador",
        "mirador-layers": viewer_url(server, "mirador", "palimpsest", panel="layers"),
        "uv": viewer_url(server, "uv", "large"),
        "uv-bands": viewer_url(server, "uv", "palimpsest"),
        "uv-empty": server.url + "/viewer/uv",
    }
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}: {r.failure}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.goto(urls[where])
    if where.startswith(("mirador", "uv")) and where not in ("mirador-workspace", "uv-empty"):
        page.locator(OSD_CANVAS).first.wait_for()
    page.wait_for_load_state("networkidle")
    assert problems == []


def copy_for_readme(name: str, target: Path, width: int = 900) -> None:
    """Used by hand (see docs/viewers.md): a small palette PNG of an artefact for the README."""
    image = pyvips.Image.new_from_file(str(ARTIFACTS / f"{name}.png"))
    image.thumbnail_image(width).pngsave(str(target), palette=True, compression=9)


if __name__ == "__main__":  # python -m tests.test_viewers_e2e: refresh docs/screenshots
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    copy_for_readme("mirador-palimpsest-infrared", out / "mirador-bands.png")
    copy_for_readme("mirador-annotation", out / "mirador-annotation.png")
