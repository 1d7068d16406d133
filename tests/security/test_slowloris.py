"""Slowloris (security review #5) on a real uvicorn: connections that never finish their
request headers are closed after header_timeout, one address cannot hold more than
max_connections_per_client connections, and other clients are served meanwhile.

The attacker connects from 127.0.0.2 (the loopback range, Linux); the legitimate client from
127.0.0.1. Waits are bounded socket timeouts, never sleeps."""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv.web.connections import Guard
from tests.conftest import LiveServer, start_server, stop_server

ATTACKER = "127.0.0.2"
PARTIAL = b"GET /health HTTP/1.1\r\nHost: x\r\n"  # the blank line never comes


def _server(tmp: Path, **settings: str) -> LiveServer:
    env = {"IIIFSRV_LOG_LEVEL": "warning"}
    env.update({f"IIIFSRV_{k.upper()}": v for k, v in settings.items()})
    (tmp / "images").mkdir()
    return start_server(tmp / "images", tmp / "data", env=env)


@pytest.fixture
def hold(request: pytest.FixtureRequest) -> Iterator[list[socket.socket]]:
    """The attacker's sockets, all closed afterwards whatever happens."""
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def open_partial(server: LiveServer, count: int, sockets: list[socket.socket]) -> None:
    for _ in range(count):
        sock = socket.create_connection(
            ("127.0.0.1", server.port), timeout=5, source_address=(ATTACKER, 0)
        )
        sockets.append(sock)
        with contextlib.suppress(OSError):  # a refused one may already be closed
            sock.sendall(PARTIAL)


def closed_by_server(sockets: list[socket.socket], within: float) -> list[bool]:
    """For each socket: did the server close it (recv gives b'') within ``within`` seconds?
    One bounded wait for all of them; returns early once every socket is closed."""
    closed: set[int] = set()
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        deadline = time.monotonic() + within
        while len(closed) < len(sockets) and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                try:
                    data = key.fileobj.recv(1024)  # type: ignore[union-attr]
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if data == b"":
                    closed.add(key.data)
                    selector.unregister(key.fileobj)
    return [index in closed for index in range(len(sockets))]


def health_within_one_second(server: LiveServer) -> int:
    started = time.monotonic()
    response = httpx.get(f"{server.url}/health", timeout=1.0)
    assert time.monotonic() - started < 1.0
    return response.status_code


def test_connections_over_the_per_client_cap_are_closed_at_once(
    tmp_path: Path, hold: list[socket.socket]
) -> None:
    cap, attempts = 40, 100
    server = _server(tmp_path, max_connections_per_client=str(cap), header_timeout="60")
    try:
        open_partial(server, attempts, hold)
        # The legitimate client (another address) is served while the attacker holds his share.
        assert health_within_one_second(server) == 200
        closed = closed_by_server(hold, 1.0)
        assert closed[:cap] == [False] * cap  # held, waiting for their headers
        assert all(closed[cap:])  # the rest were closed by the server at once
        # Once the attacker lets go, that address may connect again.
        for sock in hold:
            sock.close()
        hold.clear()
        open_partial(server, 1, hold)
        assert closed_by_server(hold, 0.3) == [False]
    finally:
        stop_server(server)


def test_incomplete_headers_are_closed_after_the_header_timeout(
    tmp_path: Path, hold: list[socket.socket]
) -> None:
    server = _server(tmp_path, header_timeout="1", max_connections_per_client="256")
    try:
        open_partial(server, 200, hold)
        silent = socket.create_connection(
            ("127.0.0.1", server.port), timeout=5, source_address=(ATTACKER, 0)
        )
        hold.append(silent)  # connects and never sends a byte
        assert health_within_one_second(server) == 200
        # Every attacker socket is closed by the server within a bounded wait.
        assert all(closed_by_server(hold, 15.0))
        # A slow but complete request on a kept-alive connection is not cut.
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/health").status_code == 200
    finally:
        stop_server(server)


def test_guard_counts_per_address_and_exempts_trusted_proxies() -> None:
    guard = Guard()
    guard.configure(header_timeout=5, max_per_client=2, exempt="10.0.0.0/8, 192.0.2.1")
    assert [guard.admit("198.51.100.7") for _ in range(3)] == [True, True, False]
    assert all(guard.admit("10.1.2.3") for _ in range(5))  # a trusted proxy network
    assert all(guard.admit("192.0.2.1") for _ in range(5))
    guard.release("198.51.100.7")
    assert guard.admit("198.51.100.7")
    assert guard.open["198.51.100.7"] == 2
    for _ in range(2):
        guard.release("198.51.100.7")
    assert "198.51.100.7" not in guard.open
    guard.configure(header_timeout=5, max_per_client=0)
    assert all(guard.admit("198.51.100.9") for _ in range(300))  # 0 = no cap
