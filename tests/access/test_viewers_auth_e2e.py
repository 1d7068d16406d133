"""IIIF Auth 1.0 in the bundled viewers, end to end: Mirador 4 and Universal Viewer 4.4 served
by iiifsrv (same origin), in Debian's Chromium, driven by clicks. A restricted image shows the
login prompt, signing in shows its tiles without a reload (Mirador needs our adapter,
viewers/src/auth-refresh-plugin.js), clickthrough shows the image once the terms are accepted,
a degraded image shows the small version and then full resolution, signing out removes access.

The viewers are opened from what the server publishes: the landing page's links, or, for what
the landing page does not list to an anonymous visitor, the collection it links to. What is
checked is what a user gets: the prompt texts the info.json advertises, the tiles requested and
their statuses (the network log of the page, its pop-ups and frames), and the canvas's pixels.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pyvips
from playwright.sync_api import Browser, BrowserContext, Page, Response, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from iiifsrv import samples
from iiifsrv.access.accounts import Accounts
from tests.access.conftest import CHEAP, PASSWORD
from tests.conftest import LiveServer, start_server, stop_server
from tests.test_viewers_e2e import CHROMIUM, CHROMIUM_ARGS, OSD_CANVAS, VIEWPORT

BUILD = Path(__file__).resolve().parents[2] / "iiifsrv" / "static" / "build"
TIMEOUT_MS = 30_000
RULES = """
[[rule]]
object = "sixteen-bit"
access = "restricted"
roles = ["staff"]

[[rule]]
object = "large"
access = "degraded"
max_size = 256
roles = ["staff"]

[[rule]]
object = "flat"
access = "clickthrough"
"""
AUTH1 = "http://iiif.io/api/auth/1/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    for path in (BUILD / ".vite" / "manifest.json", BUILD / "uv" / "umd" / "UV.js", CHROMIUM):
        if not path.is_file():
            pytest.fail(f"missing {path}: run scripts/setup --test")
    root = tmp_path_factory.mktemp("auth-viewers")
    images, data = root / "images", root / "data"
    samples.ensure(images, small=True, data=data)
    Accounts(data, CHEAP).add("sam", PASSWORD, ["staff"])
    rules = root / "access.toml"
    rules.write_text(RULES)
    live = start_server(images, data, env={"IIIFSRV_ACCESS_RULES": str(rules)})
    yield live
    stop_server(live)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """One visitor: a browser context, its page, and every response it received (the page's,
    its pop-ups' and its frames')."""

    context: BrowserContext
    page: Page
    responses: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def infos(self) -> list[Response]:
        return [r for r in self.responses if r.url.endswith("/info.json")]

    def tiles(self, service: str, since: int = 0) -> list[Response]:
        """The viewer's image requests of one image service (tiles and sizes) from position
        ``since`` (not the landing page's thumbnails)."""
        return [
            r
            for r in self.responses[since:]
            if r.url.startswith(service + "/")
            and not r.url.endswith("/info.json")
            and "/viewer/" in r.frame.url
        ]

    def wait_for(self, what: Callable[[Response], bool], since: int = 0) -> Response:
        """The first response from position ``since`` (received or still to come) for which
        ``what`` holds."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            for r in self.responses[since:]:
                if what(r):
                    return r
            with contextlib.suppress(PlaywrightTimeout):
                self.context.wait_for_event("response", timeout=1000)
        raise AssertionError("the expected response never came")


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    v = Visit(context, page)
    context.on("response", lambda r: v.responses.append(r))
    page.on("pageerror", lambda exc: v.errors.append(str(exc)))
    yield v
    context.close()
    assert not v.errors, f"uncaught errors in the page: {v.errors}"


# ---- following what the server publishes ------------------------------------------------------


def open_from_landing(visit: Visit, server: LiveServer, object_id: str, viewer: str) -> None:
    """Click the viewer's link of an object listed on the landing page."""
    visit.page.goto(server.url + "/")
    with visit.page.expect_navigation():
        visit.page.locator(f"li.object[data-id={object_id}] a.{viewer}").click()


def open_from_collection(visit: Visit, server: LiveServer, label: str, viewer: str) -> None:
    """An object the landing page does not list to this visitor: its manifest from the IIIF
    collection the landing page links to, opened in the viewer page (README: ``/viewer/…``)."""
    page = visit.page
    page.goto(server.url + "/")
    listed = page.locator("li.object strong").all_inner_texts()
    assert not any(t.startswith(label) for t in listed), "a restricted object is listed"
    href = page.get_by_role("link", name="IIIF collection").get_attribute("href")
    assert href
    collection = httpx.get(href).json()
    found = [i["id"] for i in collection["items"] if i["label"]["en"][0].startswith(label)]
    assert len(found) == 1, collection
    page.goto(f"{server.url}/viewer/{viewer}?manifest={quote(found[0], safe='')}")


def first_info(visit: Visit) -> tuple[str, Response]:
    """The image service the viewer asked for (from the manifest), and its answer."""
    info = visit.wait_for(lambda r: r.url.endswith("/info.json"))
    return info.url.removesuffix("/info.json"), info


def image_of(service: str, status: int) -> Callable[[Response], bool]:
    """An image (tile or size) of ``service`` answered with ``status``."""
    return lambda r: (
        r.url.startswith(service + "/") and not r.url.endswith("/info.json") and r.status == status
    )


def info_of(service: str, status: int) -> Callable[[Response], bool]:
    return lambda r: r.url == f"{service}/info.json" and r.status == status


def login_service(info_json: dict[str, Any], kind: str) -> dict[str, Any]:
    """The Auth 1.0 cookie service of a kind (login, clickthrough) an info.json advertises."""
    found = [s for s in info_json.get("service", []) if s.get("profile") == AUTH1 + kind]
    assert len(found) == 1, info_json.get("service")
    return found[0]


# ---- what the user sees -----------------------------------------------------------------------


def canvas(page: Page) -> pyvips.Image:
    """The middle of the viewer's canvas, in grey (the viewers' controls sit on its edges).
    A viewer may mount its image again while the picture is taken (Mirador's auth-refresh
    plugin does, when access changes): then the new canvas is taken, once it is there."""
    for attempt in range(3):
        try:
            png = page.locator(OSD_CANVAS).first.screenshot()
            break
        except PlaywrightError as exc:
            if "not attached to the DOM" not in exc.message or attempt == 2:
                raise
            settle(page)
    image = pyvips.Image.new_from_buffer(png, "").extract_band(0, n=3).colourspace("b-w")[0]
    w, h = image.width, image.height
    return image.crop(w // 5, h // 8, w * 3 // 5, h * 5 // 8)


def detail(image: pyvips.Image) -> float:
    """Fine detail: the mean difference from a blurred copy (an upscaled small image has little)."""
    return float((image - image.gaussblur(2)).abs().avg())


def assert_blank(visit: Visit, viewer: str, service: str, since: int = 0) -> None:
    """Nothing of the image shows: Mirador's canvas is empty; Universal Viewer covers it with
    its prompt (checked by the caller) and has received no image of the service."""
    if viewer == "mirador":
        assert canvas(visit.page).deviate() < 3, "the canvas shows something"
    else:
        assert not [r for r in visit.tiles(service, since) if r.status == 200]


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")


def assert_images_arrive(visit: Visit, service: str, since: int) -> None:
    """The viewer asks for the service's images again, and every answer is 200."""
    visit.wait_for(image_of(service, 200), since)
    settle(visit.page)
    got = visit.tiles(service, since)
    assert got and all(r.status == 200 for r in got), [(r.status, r.url) for r in got]


def sign_in_in_popup(visit: Visit, button: Callable[[], None]) -> None:
    """Click the viewer's button that opens the login service; sign in there (it closes)."""
    with visit.context.expect_page() as opened:
        button()
    popup = opened.value
    popup.locator("input[name=user]").fill("sam")
    popup.locator("input[name=password]").fill(PASSWORD)
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Sign in").click()


def agree_in_popup(visit: Visit, button: Callable[[], None], confirm: str) -> None:
    with visit.context.expect_page() as opened:
        button()
    popup = opened.value
    with popup.expect_event("close"):
        popup.get_by_role("button", name=confirm).click()


def sign_out(visit: Visit) -> None:
    """The viewer's Sign out (Mirador's logout button, or the UV page's): the logout service
    opens in a window that closes itself."""
    with visit.context.expect_page() as opened:
        visit.page.get_by_role("button", name="Sign out").click()
    popup = opened.value
    if not popup.is_closed():
        popup.wait_for_event("close")


def prompt(visit: Visit, viewer: str, service: dict[str, Any]) -> Callable[[], None]:
    """Checks the viewer shows the service's texts; returns the click that opens it."""
    page = visit.page
    if viewer == "mirador":
        page.get_by_text(service["label"]).first.wait_for()
        page.get_by_role("button", name="Continue").click()
    page.get_by_text(service["header"]).first.wait_for()
    page.get_by_text(service["description"]).first.wait_for()
    confirm = page.locator("button:visible, a:visible", has_text=service["confirmLabel"])
    return lambda: confirm.last.click()


# ---- restricted: sign in, sign out --------------------------------------------------------------


@pytest.mark.parametrize("viewer", ["mirador", "uv"])
def test_restricted_image_sign_in_shows_the_tiles_and_sign_out_removes_them(
    server: LiveServer, visit: Visit, viewer: str
) -> None:
    open_from_collection(visit, server, "16-bit RGB", viewer)
    service, info = first_info(visit)
    assert info.status == 401
    body = info.json()
    assert body.get("id", body.get("@id")) == service, "a complete info.json in the 401"
    login = login_service(body, "login")
    confirm = prompt(visit, viewer, login)
    settle(visit.page)
    assert all(r.status == 401 for r in visit.tiles(service)), "no tile before signing in"
    assert_blank(visit, viewer, service)

    mark = len(visit.responses)
    sign_in_in_popup(visit, confirm)
    assert_images_arrive(visit, service, mark)
    assert canvas(visit.page).deviate() > 20, "the canvas is blank after signing in"
    assert not visit.page.get_by_text(login["header"]).first.is_visible()

    mark = len(visit.responses)
    sign_out(visit)
    visit.wait_for(info_of(service, 401), mark)
    page = visit.page
    page.get_by_text(login["label"] if viewer == "mirador" else login["header"]).first.wait_for()
    settle(page)
    assert all(r.status == 401 for r in visit.tiles(service, mark))
    assert_blank(visit, viewer, service, mark)


# ---- clickthrough -------------------------------------------------------------------------------


@pytest.mark.parametrize("viewer", ["mirador", "uv"])
def test_clickthrough_shows_the_image_once_the_terms_are_accepted(
    server: LiveServer, visit: Visit, viewer: str
) -> None:
    open_from_collection(visit, server, "Plain JPEG", viewer)
    service, info = first_info(visit)
    assert info.status == 401
    terms = login_service(info.json(), "clickthrough")
    confirm = prompt(visit, viewer, terms)
    settle(visit.page)
    assert all(r.status == 401 for r in visit.tiles(service))
    assert_blank(visit, viewer, service)

    mark = len(visit.responses)
    agree_in_popup(visit, confirm, terms["confirmLabel"])
    assert_images_arrive(visit, service, mark)
    assert canvas(visit.page).deviate() > 20, "the canvas is blank after agreeing"


# ---- degraded: the small version, then full resolution -----------------------------------------


@pytest.mark.parametrize("viewer", ["mirador", "uv"])
def test_degraded_image_shows_the_small_version_then_full_resolution_after_sign_in(
    server: LiveServer, visit: Visit, viewer: str
) -> None:
    open_from_landing(visit, server, "large", viewer)
    service, info = first_info(visit)
    assert info.status == 302
    tier = str(info.headers["location"]).removesuffix("/info.json")
    small = visit.wait_for(info_of(tier, 200)).json()
    assert "tiles" not in small and max(s["width"] for s in small["sizes"]) <= 256
    login = login_service(small, "login")
    page = visit.page
    page.get_by_text(login["label"]).first.wait_for()
    settle(page)
    shown = visit.tiles(tier)
    assert shown and all(r.status == 200 for r in shown)
    for r in visit.tiles(service):  # the manifest's thumbnail, nothing larger (same URL again)
        again = httpx.get(r.url)
        if r.status == 200:
            got = pyvips.Image.new_from_buffer(again.content, "")
            assert max(got.width, got.height) <= 256, r.url
    blurred = canvas(page)
    assert blurred.deviate() > 20, "the small version is not shown"

    if viewer == "mirador":
        page.get_by_role("button", name="Continue").click()
    button = page.locator("button:visible, a:visible", has_text=login["confirmLabel"]).last
    mark = len(visit.responses)
    sign_in_in_popup(visit, button.click)
    assert_images_arrive(visit, service, mark)
    sharp = canvas(page)
    assert detail(sharp) > 1.5 * detail(blurred), (detail(sharp), detail(blurred))

    mark = len(visit.responses)
    sign_out(visit)
    visit.wait_for(info_of(service, 302), mark)  # the small version again (its image may
    settle(page)  # come from the browser's cache)
    assert all(r.status != 200 for r in visit.tiles(service, mark)), "full tiles after sign-out"
    assert detail(canvas(page)) < 0.8 * detail(sharp), "still sharp after signing out"
