"""Shared-cache fixtures: the shared Redis at 127.0.0.1:6379 (never stopped by a test), and a
private redis-server and a private memcached on free ports that a test may stop and start again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port

REDIS_URL = os.environ.get("IIIFSRV_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"the test Redis at {REDIS_URL} is not reachable: {exc}")
    return REDIS_URL


class PrivateRedis:
    """A redis-server of the test's own (no persistence), stoppable and restartable."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        cmd += ["no", "--dir", str(self.workdir), "--enable-debug-command", "local"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # as abruptly as a crash
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


class PrivateMemcached:
    """A memcached of the test's own on a free port, stoppable, restartable and pausable
    (SIGSTOP: the server holds every reply, as a stalled one does)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"memcached://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("memcached")
        assert exe, "memcached is not installed (scripts/setup --test installs it)"
        cmd = [exe, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
        cmd += ["-u", "root"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(100).startswith(b"VERSION"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private memcached did not start")

    def command(self, line: bytes, end: bytes = b"END\r\n") -> bytes:
        """One command's reply, read until ``end``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(line)
            reply = b""
            while not reply.endswith(end):
                reply += s.recv(65536)
            return reply

    def pause(self, paused: bool) -> None:
        """SIGSTOP (returns once the process is stopped) or SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 5
        while paused and stat.read_text().rpartition(")")[2].split()[0] != "T":
            assert time.monotonic() < deadline, "memcached did not stop"
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_memcached() -> Iterator[PrivateMemcached]:
    server = PrivateMemcached()
    server.start()
    yield server
    server.stop()
