"""The whole topology, for real on loopback: three ``iiifsrv serve --workers 1`` replicas (each its
own process group) on a private PostgreSQL cluster and a private Redis, behind HAProxy with the
shipped configuration (health checks every 200 ms). It behaves as one server: the same manifests,
catalogue, change stream and annotations from every replica; one render for a burst spread over
the three; under wrk load, Redis restarted → no 5xx at all; PostgreSQL restarted → writes 503 while
it is down, image reads never fail, all recovers without touching iiifsrv; a replica SIGKILLed →
no failed request once HAProxy's checks have taken it out. The numbers are printed (pytest -s).

PostgreSQL is a cluster of the test's own (initdb/pg_ctl in a temporary directory) because the
shared server at 5432 cannot be restarted safely while other tests use it; stopping it with
``pg_ctl -m fast`` closes every connection from the server side, as a real restart does (a TCP
proxy cut would only look like a network fault).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pyvips

from iiifsrv.catalogue import Band, CatalogueObject, now_iso
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from tests.cache.conftest import PrivateRedis
from tests.conftest import free_port
from tests.ops.metrics_support import parse, value
from tests.ops.proxies import Daemon, server_states, start_haproxy
from tests.ops.topology import PrivatePostgres, Replica, spawn, wait_healthy, wrk
from tests.state.conftest import manifest

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg.tif"
GREY = "tif-gray8-3lvl-1000x700-tiled256-deflate.tif"
TOKEN = "topology-token-Vb7Qm2Lk9Xw4Rt6Yp3Hc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTER = "200ms"  # HAProxy's check interval here; fall 2 → a dead replica is out within ~0.5 s


@dataclass
class Topology:
    replicas: list[Replica]
    haproxy: Daemon
    stats: int
    pg: PrivatePostgres
    redis: PrivateRedis
    settings: Settings  # for writing the catalogue as `iiifsrv ingest` would
    tmp: Path

    @property
    def url(self) -> str:
        return self.haproxy.url


def _images(root: Path, fixture_files: dict[str, Path]) -> None:
    root.mkdir()
    shutil.copy(fixture_files[TIF], root / "page.tif")
    (root / "leaf").mkdir()
    grey = pyvips.Image.new_from_file(str(fixture_files[GREY]))
    common = {"tile": True, "pyramid": True, "tile_width": 256, "tile_height": 256}
    grey.tiffsave(str(root / "leaf" / "IR940.tif"), compression="deflate", **common)
    (255 - grey).cast("uchar").tiffsave(
        str(root / "leaf" / "UV365.tif"), compression="deflate", **common
    )


def _leaf(object_id: str = "leaf") -> CatalogueObject:
    bands = (
        Band("IR940", 940.0, f"{object_id}/IR940", "IR 940 nm"),
        Band("UV365", 365.0, f"{object_id}/UV365", "UV 365 nm"),
    )
    return CatalogueObject(
        id=object_id, label="A leaf", kind="multispectral", width=1000, height=700,
        bands=bands, updated=now_iso(),
    )  # fmt: skip


@pytest.fixture
def topology(tmp_path: Path, fixture_files: dict[str, Path]) -> Iterator[Topology]:
    images = tmp_path / "images"
    _images(images, fixture_files)
    pg, redis = PrivatePostgres(), PrivateRedis(tmp_path)
    replicas: list[Replica] = []
    haproxy: Daemon | None = None
    try:
        pg.init()
        redis.start()
        settings = Settings(images=str(images), data=str(tmp_path / "tool"), database_url=pg.url)
        state = open_state(settings)
        try:
            state.catalogue.upsert(_leaf())
        finally:
            state.close()
        front = free_port()
        env = {
            "IIIFSRV_DATABASE_URL": pg.url,
            "IIIFSRV_CACHE_URL": redis.url,
            "IIIFSRV_CACHE_TIMEOUT_MS": "200",
            "IIIFSRV_CACHE_BACKOFF": "1",
            "IIIFSRV_TOKENS": f"{TOKEN}=alice:editor",
            "IIIFSRV_PUBLIC_URL": f"http://127.0.0.1:{front}",
            "IIIFSRV_DEBUG": "true",  # Server-Timing tells a shared-cache hit
            "IIIFSRV_LIMIT_CONCURRENCY": "0",
            "IIIFSRV_LOG_LEVEL": "warning",
        }
        for n in range(3):
            replicas.append(spawn(f"r{n + 1}", images, tmp_path / f"data{n + 1}", env))
        wait_healthy(replicas)
        haproxy, stats = start_haproxy(
            tmp_path, [r.port for r in replicas], port=front, inter=INTER
        )
        yield Topology(replicas, haproxy, stats, pg, redis, settings, tmp_path)
    finally:
        if haproxy is not None:
            haproxy.stop()
        for r in replicas:
            r.stop()
        redis.stop()
        pg.destroy()


def _path(url: str) -> str:
    return urlsplit(url).path


async def _stream(c: httpx.AsyncClient, base: str) -> list[tuple[str, str]]:
    """The change stream as one replica serves it, page by page (following its links)."""
    stream = (await c.get(f"{base}/iiif/activity")).json()
    items: list[dict[str, Any]] = []
    url: str | None = stream["first"]["id"]
    while url:
        page = (await c.get(base + _path(url))).json()
        items += page["orderedItems"]
        url = page.get("next", {}).get("id")
    return [(a["type"], a["object"]["id"]) for a in items]


async def _container(c: httpx.AsyncClient, base: str, manifest_url: str) -> tuple[str, str]:
    """(canvas id, annotation container URL) of a manifest's first canvas, by its links."""
    doc = (await c.get(base + _path(manifest_url))).json()
    canvas = doc["items"][0]
    page = (await c.get(base + _path(canvas["annotations"][0]["id"]))).json()
    return canvas["id"], page["partOf"][0]["id"]


def _note(canvas: str, manifest_id: str, text: str) -> dict[str, Any]:
    return {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": text, "format": "text/plain"},
        "target": {
            "type": "SpecificResource",
            "source": {"id": canvas, "type": "Canvas",
                       "partOf": [{"id": manifest_id, "type": "Manifest"}]},
            "selector": {"type": "FragmentSelector", "value": "xywh=1,2,30,20"},
        },
    }  # fmt: skip


def _reads(tmp: Path) -> Path:
    """Image reads for wrk: stored tiles, renders, full images, info.json of a plain file and of
    catalogue bands, a computed ratio (its band list comes from the catalogue)."""
    paths = [
        "/iiif/3/page.tif/info.json",
        "/iiif/3/leaf%2FIR940/info.json",
        "/iiif/2/leaf%2FUV365/info.json",
        "/iiif/3/page.tif/full/200,/0/default.jpg",
        "/iiif/3/leaf%2Fratio:IR940,UV365/full/120,/0/default.png",
    ]
    for x in range(0, 1000, 256):
        for y in range(0, 700, 256):
            paths.append(f"/iiif/3/page.tif/{x},{y},256,256/max/0/default.jpg")
            paths.append(f"/iiif/3/leaf%2FIR940/{x},{y},256,256/128,/0/default.jpg")
    file = tmp / "reads.txt"
    file.write_text("\n".join(paths) + "\n")
    return file


def _after(delay: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def _renders(c: httpx.AsyncClient, replicas: list[Replica]) -> list[float]:
    texts = [(await c.get(f"{r.url}/metrics")).text for r in replicas]
    return [value(parse(t), "iiifsrv_renders_total") for t in texts]


async def test_three_replicas_behind_haproxy_behave_as_one(topology: Topology) -> None:
    t = topology
    r1, r2, r3 = t.replicas
    started = time.monotonic()
    reads = _reads(t.tmp)
    report: list[str] = []
    async with httpx.AsyncClient(timeout=30) as c:
        # -- consistency: manifests, catalogue, change stream, annotations ------------------
        created = await c.post(f"{r1.url}/iiif/manifests", json=manifest("one"), headers=AUTH)
        assert created.status_code == 201, created.text
        where = created.headers["location"]
        bodies = [(await c.get(r.url + _path(where))).content for r in t.replicas]
        assert len(set(bodies)) == 1 and b"A test manifest" in bodies[0]
        assert (await c.delete(r3.url + _path(where), headers=AUTH)).status_code == 204
        assert [(await c.get(r.url + _path(where))).status_code for r in t.replicas] == [404] * 3
        writes = await asyncio.gather(
            *(
                c.post(f"{t.replicas[i % 3].url}/iiif/manifests", json=manifest(f"m{i}"),
                       headers=AUTH)
                for i in range(6)
            )
        )  # fmt: skip
        assert [w.status_code for w in writes] == [201] * 6
        streams = [await _stream(c, r.url) for r in t.replicas]
        assert streams[0] == streams[1] == streams[2]
        assert len(streams[0]) >= 8  # one, its deletion, six more (and the catalogue's)

        state = open_state(t.settings)  # a new object, as `iiifsrv ingest` records it
        try:
            state.catalogue.upsert(_leaf("leaf2"))
            seen = [(await c.get(f"{r.url}/objects/leaf2")).content for r in t.replicas]
            assert len(set(seen)) == 1 and b'"multispectral"' in seen[0]
            state.catalogue.remove("leaf2")
        finally:
            state.close()
        gone = [(await c.get(f"{r.url}/objects/leaf2")).status_code for r in t.replicas]
        assert gone == [404] * 3

        leaf = f"{t.url}/iiif/manifests/leaf"
        canvas, container = await _container(c, r2.url, leaf)
        note = await c.post(
            r2.url + _path(container), json=_note(canvas, leaf, "seen on r2"), headers=AUTH
        )
        assert note.status_code == 201, note.text
        pages = []
        for r in t.replicas:
            _, on_r = await _container(c, r.url, leaf)
            pages.append((await c.get(r.url + _path(on_r))).json())
        assert pages[0] == pages[1] == pages[2]
        assert "seen on r2" in str(pages[0])
        report.append(f"consistency: 3 replicas agree ({len(streams[0])} activities)")

        # -- coalescing: 50 concurrent requests for one uncached tile over the three --------
        before = await _renders(c, t.replicas)
        tile = "/iiif/3/page.tif/130,70,410,390/205,/0/default.jpg"  # not a stored tile
        burst = await asyncio.gather(*(c.get(t.replicas[i % 3].url + tile) for i in range(50)))
        assert [b.status_code for b in burst] == [200] * 50
        assert len({b.content for b in burst}) == 1
        renders = sum(await _renders(c, t.replicas)) - sum(before)
        report.append(f"coalescing: 50 requests over 3 replicas -> {renders:.0f} render(s)")
        assert renders == 1

        # -- Redis killed and restarted under load: no 5xx at any point ----------------------
        for path in reads.read_text().split():  # every read works, and is warm
            got = await c.get(t.url + path)
            assert got.status_code == 200, (path, got.status_code, got.text)
        events = [_after(1.0, t.redis.stop), _after(2.5, t.redis.start)]
        load = await asyncio.to_thread(wrk, t.url, reads, 5, 4, True)
        for e in events:
            e.join()
        assert load.failed == 0, f"Redis restart: {load}"
        shared_again = None
        t0 = time.monotonic()
        for n in range(100):  # a new render on r1, then the same on r2: from Redis again
            fresh = f"/iiif/3/page.tif/{n},{n},300,300/150,/0/default.jpg"
            await c.get(r1.url + fresh)
            timing = (await c.get(r2.url + fresh)).headers.get("server-timing", "")
            if "shared;dur=" in timing:
                shared_again = time.monotonic() - t0
                break
            await asyncio.sleep(0.1)
        assert shared_again is not None
        report.append(f"Redis restarted under wrk: {load}; shared hits again {shared_again:.2f}s")

        # -- PostgreSQL restarted under load: writes 503, image reads never fail --------------
        fallbacks = [value(parse((await c.get(f"{r.url}/metrics")).text),
                           "iiifsrv_catalogue_fallbacks_total") for r in t.replicas]  # fmt: skip
        outcomes: list[tuple[float, str, int, str, float]] = []  # start, kind, status, text, end
        window: dict[str, float] = {}
        stop_writing = threading.Event()

        def writer() -> None:
            n = 0
            with httpx.Client(timeout=30) as w:
                while not stop_writing.is_set():
                    n += 1
                    at = time.monotonic()
                    if n % 2:
                        r = w.post(f"{t.url}/iiif/manifests", json=manifest(f"w{n}"),
                                   headers=AUTH)  # fmt: skip
                        kind = "manifest"
                    else:
                        body = _note(canvas, leaf, f"note {n}")
                        r = w.post(t.url + _path(container), json=body, headers=AUTH)
                        kind = "annotation"
                    outcomes.append((at, kind, r.status_code, r.text[:200], time.monotonic()))
                    time.sleep(0.1)

        def pg_down() -> None:
            t.pg.stop()
            window["down"] = time.monotonic()

        def pg_up() -> None:
            window["starting"] = time.monotonic()
            t.pg.start()
            window["up"] = time.monotonic()

        writing = threading.Thread(target=writer)
        writing.start()
        events = [_after(1.0, pg_down), _after(4.0, pg_up)]
        load = await asyncio.to_thread(wrk, t.url, reads, 8, 4, True)
        for e in events:
            e.join()
        while time.monotonic() - window["up"] < 9:  # writes go on for 9 s after the start
            await asyncio.sleep(0.2)
        stop_writing.set()
        writing.join()
        assert load.failed == 0, f"image reads failed while PostgreSQL restarted: {load}"
        # Writes tried while PostgreSQL was down answer 503 with a message; one that was still
        # waiting for a connection when the database came back may land (201) — never earlier.
        tried = [o for o in outcomes if window["down"] <= o[0] < window["starting"]]
        during = [o for o in tried if o[4] < window["starting"]]
        assert during, "no write was tried while PostgreSQL was down"
        assert {o[2] for o in during} == {503}, during
        assert all("unavailable" in o[3] for o in during), during
        assert all(o[2] == 503 or (o[2] == 201 and o[4] >= window["starting"]) for o in tried)
        before_stop = [o for o in outcomes if o[0] < window["down"] - 1.0]
        assert {o[2] for o in before_stop} <= {201}, before_stop
        since = [o for o in outcomes if o[0] > window["up"]]
        landed = [o[0] - window["up"] for o in since if o[2] == 201]
        refused = [o[0] - window["up"] for o in since if o[2] != 201]
        assert landed, since
        recovered, last_refused = min(landed), max(refused, default=0.0)
        # Each replica finds PostgreSQL again by itself (its gate lets one call probe once a
        # second): within 0.5 s on a quiet machine, up to ~4 s with both cores saturated by
        # other work; from then on every write lands, on every replica.
        assert last_refused < 6.0, [(round(o[0] - window["up"], 2), o[1], o[2]) for o in since]
        after = [o for o in since if o[0] - window["up"] > last_refused]
        assert len(after) >= 6 and {o[1] for o in after} == {"manifest", "annotation"}, after
        fell_back = [
            value(parse((await c.get(f"{r.url}/metrics")).text),
                  "iiifsrv_catalogue_fallbacks_total") - f
            for r, f in zip(t.replicas, fallbacks, strict=True)
        ]  # fmt: skip
        report.append(
            f"PostgreSQL stopped {window['starting'] - window['down']:.1f}s under wrk: image "
            f"reads {load}; writes while down: {len(during)}, all 503; first write landed "
            f"{recovered:.1f}s after the start, the last refused {last_refused:.1f}s after, then "
            f"{len(after)} writes all 201; catalogue reads from the last-known view per "
            f"replica: {[int(f) for f in fell_back]}"
        )
        assert sum(fell_back) > 0
        for r in t.replicas:  # each replica writes again, and the others see it at once
            again = await c.post(f"{r.url}/iiif/manifests", json=manifest(f"after-{r.name}"),
                                 headers=AUTH)  # fmt: skip
            assert again.status_code == 201, again.text
            seen_codes = [(await c.get(o.url + _path(again.headers["location"]))).status_code
                          for o in t.replicas]  # fmt: skip
            assert seen_codes == [200] * 3

        # -- one replica SIGKILLed under load: no failure once the checks took it out --------
        killed: dict[str, float] = {}

        def kill() -> None:  # then watch HAProxy's view of r3 until its checks take it out
            r3.kill()
            at = time.monotonic()
            while time.monotonic() - at < 10:
                if server_states(t.stats).get("r3", "").startswith("DOWN"):
                    killed["out_after"] = time.monotonic() - at
                    return
                time.sleep(0.02)

        event = _after(1.0, kill)
        during_kill = await asyncio.to_thread(wrk, t.url, reads, 3, 4)
        event.join()
        out_after = killed.get("out_after")
        assert out_after is not None, server_states(t.stats)
        settled = await asyncio.to_thread(wrk, t.url, reads, 3, 4)
        report.append(
            f"SIGKILL r3 under wrk: {during_kill}; HAProxy marked it DOWN {out_after:.2f}s "
            f"later (check every {INTER}, fall 2); afterwards: {settled}"
        )
        assert settled.failed == 0, settled
        assert settled.requests > 0
    report.append(f"whole topology test {time.monotonic() - started:.1f}s")
    print("\n" + "\n".join(report))
