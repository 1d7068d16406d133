"""The shipped HTTP cache and load balancer configurations, run for real: Debian's Varnish
(config/varnish.vcl) and HAProxy (config/haproxy.cfg) in front of real ``iiifsrv serve``
processes on loopback. What reaches a replica is read from the replica's own /metrics."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server
from tests.ops.metrics_support import parse, value
from tests.ops.proxies import Daemon, server_states, start_haproxy, start_varnish

TIF = "tif-rgb-3lvl-1000x700-tiled256-jpeg"
TOKEN = "alice-Zq8vN2kLx4Rw7TyPm3Hc"


def reached(server: LiveServer, route: str, status: str | None = None) -> float:
    """Requests of ``route`` class the replica answered (its /metrics, scraped directly)."""
    samples = parse(httpx.get(f"{server.url}/metrics").text)
    labels = {"route": route} if status is None else {"route": route, "status": status}
    return value(samples, "iiifsrv_http_requests_total", **labels)


@pytest.fixture
def replica(tmp_path: Path, image_root: Path) -> Iterator[LiveServer]:
    server = start_server(image_root, tmp_path / "r", env={"IIIFSRV_TOKENS": f"{TOKEN}=alice"})
    yield server
    stop_server(server)


@pytest.fixture
def varnish(tmp_path: Path, replica: LiveServer) -> Iterator[Daemon]:
    daemon = start_varnish(tmp_path, replica.port)
    yield daemon
    daemon.stop()


def test_varnish_serves_the_second_tile_from_its_cache(
    varnish: Daemon, replica: LiveServer
) -> None:
    url = f"{varnish.url}/iiif/3/{TIF}/0,0,512,512/256,/0/default.jpg"
    first, second = httpx.get(url), httpx.get(url)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert len(first.headers["x-varnish"].split()) == 1
    assert len(second.headers["x-varnish"].split()) == 2  # this request's id and the stored one
    assert "age" in second.headers
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert reached(replica, "image") == 1
    # a cookie iiifsrv never reads (analytics) does not stop sharing
    third = httpx.get(url, headers={"Cookie": "_ga=GA1.2.3"})
    assert third.headers["x-cache"] == "HIT" and reached(replica, "image") == 1


def test_varnish_never_stores_an_error(varnish: Daemon, replica: LiveServer) -> None:
    url = f"{varnish.url}/iiif/3/no-such-image/full/max/0/default.jpg"
    for _ in range(2):
        r = httpx.get(url)
        assert r.status_code == 404 and r.headers["cache-control"] == "no-store"
        assert r.headers["x-cache"] != "HIT"
    assert reached(replica, "image", "404") == 2


def test_varnish_never_shares_what_depends_on_the_session(
    varnish: Daemon, replica: LiveServer
) -> None:
    with httpx.Client(base_url=varnish.url) as c:
        signed = c.post("/session", json={"token": TOKEN})  # sets the cookie: through Varnish
        assert signed.status_code == 200 and "iiifsrv_session=" in signed.headers["set-cookie"]
        for _ in range(2):  # who am I: depends on the cookie
            who = c.get("/session")
            assert who.json()["user"] == "alice" and who.headers["x-cache"] == "PASS"
        url = f"/iiif/3/{TIF}/0,0,256,256/128,/0/default.jpg"
        for _ in range(2):  # a tile asked with the cookie: private, from the replica each time
            tile = c.get(url)
            assert tile.status_code == 200 and tile.headers["x-cache"] == "PASS"
            assert tile.headers["cache-control"].startswith("private")
    assert reached(replica, "session") == 3 and reached(replica, "image") == 2
    # and nothing of it was stored: an anonymous client gets a fresh public response
    anonymous = httpx.get(f"{varnish.url}{url}")
    assert anonymous.headers["x-cache"] == "MISS"
    assert anonymous.headers["cache-control"] == "public, max-age=86400"
    anonymous_who = httpx.get(f"{varnish.url}/session")
    assert anonymous_who.json()["user"] is None


def test_haproxy_balances_and_drains_a_replica_whose_health_is_503(
    tmp_path: Path, image_root: Path
) -> None:
    drain = 6  # longer than HAProxy's fall 2 × inter 1s
    env = {"IIIFSRV_SHUTDOWN_DRAIN": str(drain)}
    r1 = start_server(image_root, tmp_path / "r1", env=env)
    r2 = start_server(image_root, tmp_path / "r2", env=env)
    haproxy: Daemon | None = None
    try:
        haproxy, stats = start_haproxy(tmp_path, [r1.port, r2.port])
        deadline = time.monotonic() + 10
        while server_states(stats) != {"r1": "UP", "r2": "UP"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server_states(stats) == {"r1": "UP", "r2": "UP"}
        for i in range(20):
            url = f"{haproxy.url}/iiif/3/{TIF}/{i},0,256,256/128,/0/default.jpg"
            assert httpx.get(url).status_code == 200
        one, two = reached(r1, "image"), reached(r2, "image")
        assert one + two == 20 and abs(one - two) <= 1, (one, two)  # round robin

        r1.proc.send_signal(signal.SIGTERM)  # a rolling restart takes r1 out
        deadline = time.monotonic() + drain
        while not server_states(stats)["r1"].startswith("DOWN") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server_states(stats)["r1"].startswith("DOWN")
        assert r1.proc.poll() is None  # still draining: HAProxy noticed before it stopped
        assert httpx.get(f"{r1.url}/health").status_code == 503
        for i in range(20):
            url = f"{haproxy.url}/iiif/3/{TIF}/{i},300,256,256/128,/0/default.jpg"
            assert httpx.get(url).status_code == 200
        assert reached(r1, "image") == one  # nothing more went to the draining replica
        assert reached(r2, "image") == two + 20
        assert r1.proc.wait(drain + 30) == 0
        assert httpx.get(f"{haproxy.url}/health").status_code == 200  # served by r2
    finally:
        if haproxy is not None:
            haproxy.stop()
        for server in (r1, r2):
            if server.proc.poll() is None:
                stop_server(server)
