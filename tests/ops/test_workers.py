"""Several workers on Linux: each accepts from its own listening socket (SO_REUSEPORT), so the
kernel spreads connections over them; a dead worker's replacement serves its socket's queue;
``reuse_port = false`` keeps one shared socket. Real ``iiifsrv serve`` processes, read through
/proc (what ``ss -ltnp`` shows)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, Linux only")


def _sockets(state: str, port: int) -> dict[str, tuple[int, int]]:
    """inode -> (local port, remote port) of the TCP sockets in ``state`` ("0A" listening,
    "01" established) whose local port is ``port``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            local, remote = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
            if f[3] == state and local == port:
                found[f[9]] = (local, remote)
    return found


def _inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _workers(pid: int) -> list[int]:
    return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _served_by(worker_pids: list[int], port: int, clients: list[socket.socket]) -> list[int]:
    """How many of ``clients`` (connected) each worker holds."""
    mine = {c.getsockname()[1] for c in clients}
    server_side = {i for i, (_, remote) in _sockets("01", port).items() if remote in mine}
    return [len(_inodes(pid) & server_side) for pid in worker_pids]


def _get(sock: socket.socket, port: int) -> int:
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split()[1])


def _listening_workers(server_pid: int, port: int) -> list[int]:
    """The worker processes holding a listening socket of ``port`` (not the supervisor)."""
    listening = set(_sockets("0A", port))
    return [pid for pid in _workers(server_pid) if _inodes(pid) & listening]


def _connect(port: int, n: int) -> list[socket.socket]:
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    for c in clients:
        assert _get(c, port) == 200  # accepted and answered
    return clients


def test_each_worker_has_its_own_socket_and_connections_spread(
    tmp_path: Path, image_root: Path
) -> None:
    server = start_server(image_root, tmp_path / "data", "--workers", "2")
    clients: list[socket.socket] = []
    try:
        assert len(_sockets("0A", server.port)) == 2  # two listening sockets on one port
        workers = _listening_workers(server.proc.pid, server.port)
        assert len(workers) == 2
        # each worker listens on a different one
        listening = set(_sockets("0A", server.port))
        assert len({frozenset(_inodes(pid) & listening) for pid in workers}) == 2
        clients = _connect(server.port, 32)
        split = _served_by(workers, server.port, clients)
        # spread by the hash of each connection's address: 32 fall 4:28 or worse ~1e-5 of runs
        assert sum(split) == 32 and min(split) >= 4, split
    finally:
        for c in clients:
            c.close()
        stop_server(server)
    assert server.proc.returncode == 0


def test_a_dead_workers_socket_is_served_by_its_replacement(
    tmp_path: Path, image_root: Path
) -> None:
    server = start_server(image_root, tmp_path / "data", "--workers", "2")
    clients: list[socket.socket] = []
    try:
        workers = _listening_workers(server.proc.pid, server.port)
        os.kill(workers[0], signal.SIGKILL)
        # every new connection is answered, those the kernel hashes to the dead worker's
        # socket once its replacement runs (they wait in the socket's queue meanwhile)
        clients = _connect(server.port, 16)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = _listening_workers(server.proc.pid, server.port)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.1)
        assert workers[0] not in now and len(now) == 2
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        for c in clients:
            c.close()
        stop_server(server)
    assert server.proc.returncode == 0


def test_reuse_port_off_one_shared_socket(tmp_path: Path, image_root: Path) -> None:
    server = start_server(
        image_root, tmp_path / "data", "--workers", "2", env={"IIIFSRV_REUSE_PORT": "false"}
    )
    try:
        assert len(_sockets("0A", server.port)) == 1
        assert len(_listening_workers(server.proc.pid, server.port)) == 2  # both accept from it
    finally:
        stop_server(server)
    assert server.proc.returncode == 0
