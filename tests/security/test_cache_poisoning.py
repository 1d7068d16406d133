"""Response-cache poisoning (security review #2, #3): a duplicate Host header or a forged
X-Forwarded-Proto must never put another host or scheme into what other clients receive.

Real uvicorn over raw sockets (the attacks are on the wire), then clean requests that follow
the links the server publishes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.settings import load
from iiifsrv.web.app import create_app
from tests.conftest import LiveServer, quadrants, start_server, stop_server

EVIL = "evil.example"


def _images(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    quadrants(300, 200).jpegsave(str(images / "plain.jpg"))
    return images


def _catalogue(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    Catalogue(data / "catalogue.sqlite3").upsert(
        CatalogueObject(
            id="plain",
            label="A plain image",
            kind="image",
            metadata={"institution": "Example Library"},
            image="plain",
            width=300,
            height=200,
        )
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Default settings: no public_url, no trusted proxy."""
    root = tmp_path_factory.mktemp("poison")
    _catalogue(root / "data")
    live = start_server(_images(root), root / "data", env={"IIIFSRV_LOG_LEVEL": "warning"})
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """127.0.0.1 is a trusted reverse proxy: its X-Forwarded-Proto is believed."""
    root = tmp_path_factory.mktemp("proxied")
    _catalogue(root / "data")
    env = {"IIIFSRV_LOG_LEVEL": "warning", "IIIFSRV_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    live = start_server(_images(root), root / "data", env=env)
    yield live
    stop_server(live)


def raw_get(server: LiveServer, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """One GET written byte by byte (httpx cannot send two Host headers); status and body."""
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def manifest_url(server: LiveServer) -> str:
    """The catalogue manifest, found by following the collections the server publishes."""
    queue = [f"{server.url}/iiif/collection"]
    while queue:
        doc = httpx.get(queue.pop(0), timeout=10).json()
        for item in doc["items"]:
            if item["type"] == "Manifest":
                return str(item["id"])
            queue.append(item["id"])
    raise AssertionError("no manifest in the collections")


def targets(server: LiveServer) -> list[str]:
    """Paths of cached responses whose bodies hold absolute ids: info.json 3 and 2, manifest."""
    manifest = manifest_url(server).removeprefix(server.url)
    return ["/iiif/3/plain/info.json", "/iiif/2/plain/info.json", manifest]


def ids(doc: Any) -> list[str]:
    """Every id/@id in a JSON document."""
    out: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("id", "@id") and isinstance(value, str):
                out.append(value)
            out.extend(ids(value))
    elif isinstance(doc, list):
        for value in doc:
            out.extend(ids(value))
    return out


def assert_clean(server: LiveServer, path: str, scheme: str = "http") -> None:
    """What an ordinary client now receives: every absolute id on this server's own origin."""
    for accept in ("*/*", "application/json", None):
        headers = {"Accept": accept} if accept else {}
        response = httpx.get(server.url + path, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert EVIL not in response.text
        found = [i for i in ids(response.json()) if "://" in i and "iiif.io" not in i]
        assert found, path
        own = [i for i in found if i.startswith(f"{scheme}://127.0.0.1:{server.port}/")]
        assert own, found
        assert all(i.startswith(("http://", "https://")) for i in found), found


@pytest.mark.parametrize("evil_first", [False, True])
def test_two_host_headers_are_refused_and_poison_nothing(
    server: LiveServer, evil_first: bool
) -> None:
    own = f"127.0.0.1:{server.port}"
    hosts = [EVIL, own] if evil_first else [own, EVIL]
    for path in targets(server):
        for accept in ("*/*", "application/json"):
            attack = [("Host", hosts[0]), ("Host", hosts[1]), ("Accept", accept)]
            status, body = raw_get(server, path, attack)
            assert (status, body) == (400, b"several Host headers\n"), path
        assert_clean(server, path)


def test_forwarded_proto_from_an_untrusted_address_is_ignored(server: LiveServer) -> None:
    own = f"127.0.0.1:{server.port}"
    for path in targets(server):
        for accept in ("*/*", "application/json"):
            attack = [("Host", own), ("X-Forwarded-Proto", "ws"), ("Accept", accept)]
            status, body = raw_get(server, path, attack)
            assert status == 200
            assert b"ws://" not in body and f"http://{own}/".encode() in body
        assert_clean(server, path)


def test_a_trusted_proxy_sets_the_scheme_of_its_own_responses_only(
    behind_proxy: LiveServer,
) -> None:
    own = f"127.0.0.1:{behind_proxy.port}"
    for path in targets(behind_proxy):
        status, body = raw_get(
            behind_proxy, path, [("Host", own), ("X-Forwarded-Proto", "https"), ("Accept", "*/*")]
        )
        assert status == 200 and f"https://{own}/".encode() in body
        assert b"http://" + own.encode() not in body
        # The same URL without the header: the https body was cached under its own base.
        assert_clean(behind_proxy, path, scheme="http")
        status, body = raw_get(behind_proxy, path, [("Host", own), ("X-Forwarded-Proto", "ws")])
        assert status == 200 and b"ws://" not in body


def test_a_reflected_host_is_cached_under_that_host_only(server: LiveServer) -> None:
    """Without public_url one valid Host is reflected, but only into its own responses."""
    for path in targets(server):
        status, body = raw_get(server, path, [("Host", "mirror.example"), ("Accept", "*/*")])
        assert status == 200 and b"http://mirror.example/" in body
        assert_clean(server, path)


async def test_public_url_is_never_replaced_by_the_host_header(tmp_path: Path) -> None:
    images = _images(tmp_path)
    settings = load(
        overrides={
            "images": str(images),
            "data": str(tmp_path / "data"),
            "public_url": "https://iiif.example.org/base",
        }
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{EVIL}") as client:
        for version in (3, 2):
            response = await client.get(f"/iiif/{version}/plain/info.json")
            doc = json.loads(response.text)
            assert doc.get("id", doc.get("@id")) == (
                f"https://iiif.example.org/base/iiif/{version}/plain"
            )
            assert EVIL not in response.text
