"""Two real ``iiifsrv serve`` processes (one worker each, their own ports and data directories)
on the same PostgreSQL behave as one server: what one writes the other serves at once, the
change stream is one ordered stream, and two conditional PUTs of one manifest → one wins."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.state.conftest import manifest, pg_url

TOKEN = "replica-token-Zq8vN2kLx4Rw7TyPm3Hc"  # load() refuses short tokens
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def replicas(tmp_path: Path, pg_schema: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {"IIIFSRV_TOKENS": f"{TOKEN}=alice:editor", "IIIFSRV_DATABASE_URL": pg_url(pg_schema)}
    started: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            images = tmp_path / name / "images"
            images.mkdir(parents=True)
            started.append(start_server(images, tmp_path / name / "data", "--workers", "1",
                                        env=env))  # fmt: skip
        yield started[0], started[1]
    finally:
        for server in started:
            stop_server(server)


def _path(url: str) -> str:
    return urlsplit(url).path


def _body(name: str, label: str = "A test manifest") -> dict[str, Any]:
    """The manifest as this replica's client posts it: ids under the server it talks to are
    made base-neutral by the server, so the same document fits either replica."""
    return manifest(name, 2, label)


async def _stream(c: httpx.AsyncClient) -> list[tuple[str, str]]:
    stream = (await c.get("/iiif/activity")).json()
    items: list[dict[str, Any]] = []
    url: str | None = stream["first"]["id"]
    while url:
        page = (await c.get(_path(url))).json()
        items += page["orderedItems"]
        url = page.get("next", {}).get("id")
    assert len(items) == stream["totalItems"]
    return [(a["type"], a["object"]["id"].rsplit("/", 1)[1]) for a in items]


async def test_two_replicas_on_one_postgresql(
    replicas: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    a_server, b_server = replicas
    async with (
        httpx.AsyncClient(base_url=a_server.url, timeout=30) as a,
        httpx.AsyncClient(base_url=b_server.url, timeout=30) as b,
    ):
        # Registered through A, served by B at once (the very next request).
        created = await a.post("/iiif/manifests", json=_body("one"), headers=AUTH)
        assert created.status_code == 201, created.text
        on_b = await b.get(_path(created.headers["location"]))
        assert on_b.status_code == 200
        assert on_b.json()["label"] == {"en": ["A test manifest"]}
        listed = (await b.get("/iiif/collection")).json()
        assert [m["label"] for m in listed["items"] if m["type"] == "Manifest"] == [
            {"en": ["A test manifest"]}
        ]

        # Deleted through B, gone from A.
        assert (await b.delete(_path(created.headers["location"]), headers=AUTH)).status_code == 204
        assert (await a.get(_path(created.headers["location"]))).status_code == 404

        # Writes through both at once: one ordered stream, the same seen from either.
        names = [f"m{i}" for i in range(8)]
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).post("/iiif/manifests", json=_body(n), headers=AUTH)
                for i, n in enumerate(names)
            )
        )
        assert [r.status_code for r in results] == [201] * len(names)
        seen_a, seen_b = await _stream(a), await _stream(b)
        assert seen_a == seen_b
        assert seen_a[:2] == [("Create", "one"), ("Delete", "one")]
        assert sorted(seen_a[2:]) == [("Create", n) for n in names]

        # Two clients read the same version, then PUT at the same time with If-Match:
        # exactly one lands, the other is refused; the survivor is whole.
        etag = (await a.get("/iiif/manifests/m0")).headers["etag"].replace("-gzip", "")
        puts = await asyncio.gather(
            a.put("/iiif/manifests/m0", json=_body("m0", "From A"),
                  headers={**AUTH, "If-Match": etag}),
            b.put("/iiif/manifests/m0", json=_body("m0", "From B"),
                  headers={**AUTH, "If-Match": etag}),
        )  # fmt: skip
        codes = sorted(r.status_code for r in puts)
        assert codes[0] == 200 and codes[1] in (409, 412), [r.text for r in puts]
        winner = "From A" if puts[0].status_code == 200 else "From B"
        for c in (a, b):
            doc = (await c.get("/iiif/manifests/m0")).json()
            assert doc["label"] == {"en": [winner]} and len(doc["items"]) == 2
        assert (await _stream(a))[-1] == ("Update", "m0")
        assert len(await _stream(b)) == 2 + len(names) + 1
    # Nothing either replica needs from the other is on its local disk.
    for name in ("a", "b"):
        data = tmp_path / name / "data"
        assert sorted(p.name for p in data.rglob("*")) == [], name
