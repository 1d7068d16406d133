"""Rolling restarts: a real ``iiifsrv serve`` gets SIGTERM while a request is in flight →
/health answers 503 (drain), the listening socket closes, the request still completes, and the
process exits 0 within shutdown_drain + shutdown_timeout."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server

TOKEN = "alice-Zq8vN2kLx4Rw7TyPm3Hc"
BODY = json.dumps({"token": TOKEN}).encode()


def _half_sent_sign_in(port: int) -> socket.socket:
    """A sign-in whose headers and first body byte are sent: in flight until the rest comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    sock.sendall(head + BODY[:1])
    return sock


def _response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _wait(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _serve(tmp_path: Path, image_root: Path, *extra: str, **env: str) -> LiveServer:
    return start_server(
        image_root, tmp_path / "data", *extra, env={"IIIFSRV_TOKENS": f"{TOKEN}=alice", **env}
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_drains_then_finishes_in_flight_and_exits_0(
    tmp_path: Path, image_root: Path, workers: str
) -> None:
    drain, bound = 2, 20
    server = _serve(
        tmp_path,
        image_root,
        "--workers",
        workers,
        IIIFSRV_SHUTDOWN_DRAIN=str(drain),
        IIIFSRV_SHUTDOWN_TIMEOUT=str(bound),
    )
    in_flight = _half_sent_sign_in(server.port)
    try:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)

        # 1. drain: still accepting, but /health says 503 so the balancer takes us out
        def draining() -> bool:
            r = httpx.get(f"{server.url}/health", timeout=2)
            return r.status_code == 503 and r.json() == {"status": "draining"}

        assert _wait(draining, drain), "no 503 from /health during the drain"
        health = httpx.get(f"{server.url}/health", timeout=2)
        assert health.headers["cache-control"] == "no-store"
        live = httpx.get(f"{server.url}/health/live", timeout=2)  # liveness: still alive
        assert live.status_code == 200 and live.json() == {"status": "alive"}
        # 2. then it stops accepting (a single worker closes the socket; under a supervisor
        #    the workers stop accepting from the socket it keeps), the request still in flight
        if workers == "1":
            assert _wait(lambda: _refuses(server.port), drain + 5), "still accepting"
        waiting = "Waiting for connections to close"
        assert _wait(lambda: waiting in server.log.read_text(), drain + 5)
        assert server.proc.poll() is None, "exited before the in-flight request finished"
        # 3. the in-flight request completes normally
        in_flight.sendall(BODY[1:])
        status, body = _response(in_flight)
        assert status == 200 and json.loads(body)["user"] == "alice"
        # 4. and the process exits 0, well within drain + timeout
        assert server.proc.wait(drain + bound) == 0
        assert time.monotonic() - signalled < drain + bound
    finally:
        in_flight.close()
        if server.proc.poll() is None:
            stop_server(server)


def test_a_stuck_request_is_cut_at_the_timeout(tmp_path: Path, image_root: Path) -> None:
    """A request that never finishes delays the exit by shutdown_timeout, not forever."""
    server = _serve(tmp_path, image_root, IIIFSRV_SHUTDOWN_DRAIN="1", IIIFSRV_SHUTDOWN_TIMEOUT="2")
    stuck = _half_sent_sign_in(server.port)
    try:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    finally:
        stuck.close()
        if server.proc.poll() is None:
            stop_server(server)
    assert "timeout graceful shutdown exceeded" in server.log.read_text()


def test_without_drain_sigterm_stops_at_once_and_exits_0(tmp_path: Path, image_root: Path) -> None:
    server = _serve(tmp_path, image_root)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
