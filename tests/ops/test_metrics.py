"""GET /metrics: requests by route class and status, latency, bytes, cache tiers, renders,
passthrough, source reads, worker memory; one JSON access-log line per request, tokens masked.
In-process first, then real ``iiifsrv serve`` processes (one and two workers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from iiifsrv.settings import Settings, replace
from iiifsrv.web.app import create_app
from iiifsrv.web.metrics import route_class
from tests.conftest import start_server, stop_server
from tests.ops.metrics_support import label_values, parse, value

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
TILE = f"/iiif/3/{TIF}/0,0,256,256/256,/0/default.jpg"  # aligned: passed through
RENDER = f"/iiif/3/{TIF}/10,20,300,200/150,/0/default.png"  # rendered
TOKEN = "alice-Zq8vN2kLx4Rw7TyPm3Hc"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/iiif/3/a/full/max/0/default.jpg", "image"),
        ("/iiif/2/a%2Fb/info.json", "image_info"),
        ("/iiif/manifests/x", "presentation"),
        ("/iiif/activity/all-changes", "presentation"),
        ("/annotations/search/x", "annotations"),
        ("/annotot/key/abc/lists", "annotations"),
        ("/media/a.wav", "media"),
        ("/objects", "objects"),
        ("/", "viewer"),
        ("/viewer/mirador", "viewer"),
        ("/health", "health"),
        ("/metrics", "metrics"),
        ("/wp-login.php", "other"),
    ],
)
def test_route_classes_are_few_and_fixed(path: str, route: str) -> None:
    assert route_class(path) == route


async def _scrape(client: httpx.AsyncClient) -> dict:  # type: ignore[type-arg]
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    assert r.headers["cache-control"] == "no-store"
    return parse(r.text)


async def test_metrics_count_what_happened(client: httpx.AsyncClient) -> None:
    before = await _scrape(client)
    tile1 = await client.get(TILE)
    tile2 = await client.get(TILE)  # the per-URL ("hot") cache
    rendered = await client.get(RENDER)
    missing = await client.get("/iiif/3/no-such-image/info.json")
    assert [r.status_code for r in (tile1, tile2, rendered, missing)] == [200, 200, 200, 404]
    after = await _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("iiifsrv_http_requests_total", route="image", status="200") == 3
    assert delta("iiifsrv_http_requests_total", route="image_info", status="404") == 1
    assert delta("iiifsrv_http_requests_total", route="metrics", status="200") == 1
    assert delta("iiifsrv_http_request_duration_seconds_count", route="image") == 3
    assert delta("iiifsrv_http_request_duration_seconds_bucket", route="image", le="+Inf") == 3
    sent = len(tile1.content) + len(tile2.content) + len(rendered.content)
    assert delta("iiifsrv_http_response_bytes_total", route="image") == sent
    assert delta("iiifsrv_cache_requests_total", tier="hot", result="hit") == 1
    assert delta("iiifsrv_cache_requests_total", tier="hot", result="miss") >= 2
    # Every tier counts both ways: the file is described once, then its description reused;
    # the stored tile and the render each missed the encoded-image cache.
    assert delta("iiifsrv_cache_requests_total", tier="source", result="miss") == 1
    assert delta("iiifsrv_cache_requests_total", tier="source", result="hit") == 1
    assert delta("iiifsrv_cache_requests_total", tier="response", result="miss") == 2
    assert delta("iiifsrv_passthrough_total") == 1
    assert delta("iiifsrv_source_reads_total", op="raw_tile") == 1
    assert delta("iiifsrv_renders_total", format="png") == 1
    assert delta("iiifsrv_source_reads_total", op="render") == 1
    assert delta("iiifsrv_render_duration_seconds_count") == 1
    assert value(after, "iiifsrv_cache_bytes", tier="hot") > len(tile1.content)
    assert value(after, "iiifsrv_worker_resident_bytes") > 10 * 1024 * 1024
    assert value(after, "iiifsrv_draining") == 0


async def test_metrics_can_be_turned_off(settings: Settings) -> None:
    app = create_app(replace(settings, metrics=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/metrics")).status_code == 404


def test_two_workers_report_together(tmp_path: Path, image_root: Path) -> None:
    """Multiprocess mode: whichever worker answers the scrape, it reports every worker's
    requests; each worker's memory appears with its pid; the directory is removed at exit."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = start_server(image_root, tmp_path / "data", "--workers", "2", env={"TMPDIR": str(tmp)})
    try:
        n = 24
        for i in range(n):  # new connections: spread over both workers
            r = httpx.get(f"{server.url}/iiif/3/{TIF}/{i},0,200,200/100,/0/default.jpg")
            assert r.status_code == 200
        assert [p.name for p in tmp.iterdir()][0].startswith("iiifsrv-metrics-")
        pids: set[str] = set()
        for _ in range(8):
            samples = parse(httpx.get(f"{server.url}/metrics").text)
            assert value(samples, "iiifsrv_http_requests_total", route="image") == n
            assert value(samples, "iiifsrv_renders_total", format="jpg") == n
            pids |= label_values(samples, "iiifsrv_worker_resident_bytes", "pid")
        assert len(pids) == 2, pids  # both workers sampled (every few seconds or when scraped)
    finally:
        stop_server(server)
    assert server.proc.returncode == 0
    assert list(tmp.iterdir()) == []


def test_json_access_log_one_line_per_request_tokens_masked(
    tmp_path: Path, image_root: Path
) -> None:
    server = start_server(
        image_root,
        tmp_path / "data",
        env={"IIIFSRV_ACCESS_LOG": "json", "IIIFSRV_TOKENS": f"{TOKEN}=alice"},
    )
    try:
        tile = httpx.get(f"{server.url}{TILE}", headers={"User-Agent": "probe/1"})
        keyed = httpx.get(f"{server.url}/annotot/key/{TOKEN}/lists?uri=x")
        missing = httpx.get(f"{server.url}/nothing-here")
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert TOKEN not in log
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    by_path = {line["path"]: line for line in lines}
    assert len(lines) == 3 + 1  # and start_server's /health probe
    first = by_path[TILE]
    assert first["method"] == "GET" and first["status"] == 200 and first["route"] == "image"
    assert first["bytes"] == len(tile.content) and first["user_agent"] == "probe/1"
    assert first["client"] == "127.0.0.1" and first["time"].endswith("Z")
    assert isinstance(first["duration_ms"], float)
    masked = by_path["/annotot/key/…/lists"]
    assert masked["status"] == keyed.status_code and masked["query"] == "uri=x"
    assert by_path["/nothing-here"]["status"] == missing.status_code == 404


def test_no_access_log_by_default(tmp_path: Path, image_root: Path) -> None:
    server = start_server(image_root, tmp_path / "data")
    try:
        assert httpx.get(f"{server.url}{TILE}").status_code == 200
    finally:
        stop_server(server)
    assert not [ln for ln in server.log.read_text().splitlines() if ln.startswith("{")]
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


def test_s3_counters_become_prometheus_counters() -> None:
    """The S3 store counts its own requests (sources/s3.py); the sampler exports the
    differences, so each request is counted once however often it samples."""
    from prometheus_client import REGISTRY

    from iiifsrv.sources.s3 import Counters
    from iiifsrv.web.metrics import Sampler

    def now(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    counters = Counters()
    sampler = Sampler({}, s3=counters.snapshot)
    gets, got, heads = (
        now("iiifsrv_s3_requests_total", op="get"),
        now("iiifsrv_s3_get_bytes_total"),
        now("iiifsrv_s3_requests_total", op="head"),
    )
    counters.gets, counters.get_bytes, counters.heads = 3, 3000, 1
    sampler.sample()
    sampler.sample()
    counters.gets += 1
    counters.get_bytes += 500
    sampler.sample()
    assert now("iiifsrv_s3_requests_total", op="get") - gets == 4
    assert now("iiifsrv_s3_get_bytes_total") - got == 3500
    assert now("iiifsrv_s3_requests_total", op="head") - heads == 1


async def test_shared_cache_and_database_pool_in_metrics(tmp_path: Path, image_root: Path) -> None:
    """With Redis (cache_url) and PostgreSQL (database_url), the real ones on loopback: the
    shared tier's look-ups and events are exported exactly as the cache counted them, and both
    connection pools (the state's, the annotation store's) appear."""
    import shutil

    from tests.cache.conftest import REDIS_URL
    from tests.state.conftest import drop_schema, new_schema, pg_url

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(image_root / f"{TIF}.tif", images / "fresh.tif")  # a version never cached
    schema = new_schema()
    try:
        settings = Settings(
            images=str(images),
            data=str(tmp_path / "data"),
            database_url=pg_url(schema),
            cache_url=REDIS_URL,
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            before = await _scrape(c)
            tile = await c.get("/iiif/3/fresh/10,20,300,200/150,/0/default.jpg")
            assert tile.status_code == 200
            assert (await c.get("/objects")).status_code == 200  # the catalogue, in PostgreSQL
            listed = await c.get("/annotot/lists", params={"uri": "http://t/canvas/1"})
            # The annotation store (its own pool) was asked: nothing there for that canvas.
            assert listed.status_code == 404 and "no annotation lists" in listed.text
            after = await _scrape(c)
            stats = app.state.service.shared.stats
            await app.state.service.close()
            await app.state.annotation_store.close()
            app.state.state.close()
    finally:
        drop_schema(schema)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert stats.misses >= 1 and stats.puts >= 1
    assert delta("iiifsrv_cache_requests_total", tier="shared", result="miss") == stats.misses
    assert delta("iiifsrv_cache_requests_total", tier="shared", result="hit") == stats.hits
    assert delta("iiifsrv_shared_cache_events_total", event="put") == stats.puts
    assert delta("iiifsrv_renders_total", format="jpg") == 1
    assert value(after, "iiifsrv_db_pool_connections", store="state", state="size") >= 1
    assert value(after, "iiifsrv_db_pool_connections", store="annotations", state="size") >= 1
