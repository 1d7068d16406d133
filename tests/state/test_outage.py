"""PostgreSQL stopped and started again under a running app (a private cluster, really shut down):
images — plain files, catalogue bands, composites — are served from the replica's last-known
catalogue with the same bytes; writes are a 503 that says why and when to retry, at once rather
than after a pool time-out; everything works again by itself once PostgreSQL is back."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Band, CatalogueObject, now_iso
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from iiifsrv.web.app import create_app
from tests.ops.topology import PrivatePostgres
from tests.state.conftest import EDITOR, TOKENS, manifest

GREY = "tif-gray8-3lvl-1000x700-tiled256-deflate.tif"
READS = (
    "/iiif/3/plain.tif/info.json",
    "/iiif/3/leaf%2FIR940/info.json",
    "/iiif/3/leaf%2Fcomposite:IR940,UV365,IR940/full/100,/0/default.png",
    "/iiif/3/leaf%2FIR940/0,0,256,256/max/0/default.jpg",
)


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def settings(tmp_path: Path, fixture_files: dict[str, Path], pg: PrivatePostgres) -> Settings:
    images = tmp_path / "images"
    (images / "leaf").mkdir(parents=True)
    for name in ("plain.tif", "leaf/IR940.tif"):
        shutil.copy(fixture_files[GREY], images / name)
    inverted = (255 - pyvips.Image.new_from_file(str(fixture_files[GREY]))).cast("uchar")
    inverted.tiffsave(str(images / "leaf" / "UV365.tif"), tile=True, pyramid=True)
    made = Settings(images=str(images), data=str(tmp_path / "data"), tokens=TOKENS,
                    database_url=pg.url, public_url="http://test")  # fmt: skip
    state = open_state(made)
    try:
        bands = tuple(Band(n, w, f"leaf/{n}", n) for n, w in (("IR940", 940.0), ("UV365", 365.0)))
        state.catalogue.upsert(CatalogueObject(
            id="leaf", label="A leaf", kind="multispectral", width=1000, height=700,
            bands=bands, updated=now_iso(),
        ))  # fmt: skip
    finally:
        state.close()
    return made


async def test_images_served_and_writes_refused_while_postgresql_is_down(
    settings: Settings, pg: PrivatePostgres
) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            before = {p: (await c.get(p)) for p in READS}
            assert {p: r.status_code for p, r in before.items()} == dict.fromkeys(READS, 200)
            assert "spectra" in before[READS[1]].text  # the catalogue's part of info.json
            first = await c.post("/iiif/manifests", json=manifest("one"), headers=EDITOR)
            assert first.status_code == 201, first.text

            pg.stop()
            # Another Accept: no per-URL replay, the catalogue is asked again.
            during = {p: (await c.get(p, headers={"Accept": "*/*"})) for p in READS}
            assert {p: r.status_code for p, r in during.items()} == dict.fromkeys(READS, 200)
            assert {p: r.content for p, r in during.items()} == {
                p: r.content for p, r in before.items()
            }
            times = []
            for name in ("two", "three", "four"):
                t0 = time.monotonic()
                refused = await c.post("/iiif/manifests", json=manifest(name), headers=EDITOR)
                times.append(time.monotonic() - t0)
                assert refused.status_code == 503
                assert refused.text.startswith("the database is unavailable"), refused.text
                assert refused.headers["retry-after"] == "5"
            # The first write notices the outage (up to the 5 s pool wait); the next ones are
            # refused at once, or after one short probe (1 s) — never another pool wait.
            assert max(times[1:]) < 2.5, times

            pg.start()
            deadline, status = time.monotonic() + 15, 0
            while time.monotonic() < deadline and status != 201:
                status = (
                    await c.post("/iiif/manifests", json=manifest("back"), headers=EDITOR)
                ).status_code
            assert status == 201
            assert (await c.get("/iiif/manifests/one")).status_code == 200
            after = await c.get(READS[1], headers={"Accept": "application/json"})
            assert after.status_code == 200 and "spectra" in after.text
    finally:
        await app.state.annotation_store.close()
        app.state.state.close()


async def test_a_replica_started_while_postgresql_is_down(
    settings: Settings, pg: PrivatePostgres
) -> None:
    """Nothing seen yet: plain image files are served (they need no catalogue); what needs the
    catalogue is a 503 until PostgreSQL is back, then everything is served by itself."""
    pg.stop()
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await c.get(READS[0])).status_code == 200
            assert (await c.get(READS[1])).status_code == 503
            pg.start()
            deadline, status = time.monotonic() + 15, 0
            while time.monotonic() < deadline and status != 200:
                status = (await c.get(READS[1])).status_code
            assert status == 200
    finally:
        await app.state.annotation_store.close()
        app.state.state.close()
