"""A real OpenID provider on loopback (npm oidc-provider, tests/oidc/provider.mjs, installed by
``scripts/setup --test``) and helpers that walk its login and consent pages like a browser."""

from __future__ import annotations

import html.parser
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import free_port, stop_process

HERE = Path(__file__).resolve().parent
CLIENT_ID = "iiifsrv"
CLIENT_SECRET = "oidc-client-secret-Hq2w9Zt4Lm7Xv1Pc"
CALLBACK = "/auth/oidc/callback"
Browser = Callable[[], httpx.Client]


@dataclass
class Provider:
    proc: subprocess.Popen[bytes]
    issuer: str

    def tamper(self, mode: str) -> None:
        """Alter the id_token of the next token response (see provider.mjs)."""
        assert httpx.get(f"{self.issuer}/test/tamper", params={"mode": mode}).status_code == 204

    def stop(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        stop_process(self.proc, 5)


def start_provider(*redirect_uris: str, host: str = "127.0.0.1") -> Provider:
    """The provider on a free loopback port, with the iiifsrv client allowed ``redirect_uris``;
    ``host`` names it in its issuer URL."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the OpenID provider is not installed: run scripts/setup --test")
    port = free_port()
    proc = subprocess.Popen(
        [node, "provider.mjs", str(port), CLIENT_SECRET, ",".join(redirect_uris), host],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # "ready <issuer>" once it listens
    if not line.startswith("ready "):
        proc.kill()
        pytest.fail(f"the OpenID provider did not start: {line!r}")
    return Provider(proc, line.split()[1])


@pytest.fixture
def browser() -> Iterator[Browser]:
    """``browser()``: a new HTTP client with its own cookie jar (closed after the test)."""
    opened: list[httpx.Client] = []

    def make() -> httpx.Client:
        client = httpx.Client(timeout=10)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


class Forms(html.parser.HTMLParser):
    """The forms of a page: action and fields (hidden inputs with their values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a.get("href", "")


def parse(page: str) -> Forms:
    forms = Forms()
    forms.feed(page)
    return forms


def sign_in_at_provider(client: httpx.Client, start: str, login: str) -> str:
    """Follow ``start`` (iiifsrv's /auth/oidc/login) through the provider's login and consent
    forms, as a browser does; the URL of iiifsrv's callback the provider redirects to (not
    requested yet)."""
    url = start
    method, data = "GET", None
    for _ in range(20):
        r = client.request(method, url, data=data, follow_redirects=False)
        if r.is_redirect:
            url = urljoin(str(r.url), r.headers["location"])
            method, data = "GET", None
            if CALLBACK in url.split("?")[0]:
                return url
            continue
        assert r.status_code == 200, (r.status_code, r.text[:500])
        forms = parse(r.text).forms
        assert forms, r.text[:500]
        action, fields = forms[0]
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any password")
        url, method, data = urljoin(str(r.url), action), "POST", fields
    raise AssertionError("the provider never redirected back to iiifsrv")
