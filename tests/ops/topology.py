"""The pieces of a real topology on loopback, each started by the test and stoppable by it: a
private PostgreSQL cluster (initdb + pg_ctl from Debian's postgresql-15, so it can really be
restarted), iiifsrv replicas in their own process groups, and wrk through a Lua path list.

Nothing here touches the shared PostgreSQL at 5432 or the shared Redis at 6379.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

PG_BIN = Path(os.environ.get("IIIFSRV_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
WALK = ROOT / "loadtests" / "walk.lua"


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own in a temporary directory (as the postgres user when
    run as root: initdb refuses root), on a free port, fsync off; stop() and start() are a real
    server shutdown and start."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.fail(f"{PG_BIN}/initdb is missing: install postgresql-15 (scripts/setup --test)")
        self.dir = Path(tempfile.mkdtemp(prefix="iiifsrv-pg-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/test"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _pg(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust",
                 "-U", "postgres", "--no-sync", "-E", "UTF8")  # fmt: skip
        self.start()
        import psycopg

        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
                 "-l", str(self.dir / "server.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Replica:
    """``iiifsrv serve --workers 1`` in a process group of its own (SIGKILL takes all of it)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()


def spawn(name: str, images: Path, data: Path, env: dict[str, str]) -> Replica:
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"{name}.log"
    cmd = [sys.executable, "-m", "iiifsrv", "serve", "--port", str(port), "--workers", "1",
           "--images", str(images), "--data", str(data)]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    return Replica(name, port, proc, log)


def wait_healthy(replicas: list[Replica], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    waiting = list(replicas)
    while waiting and time.monotonic() < deadline:
        for r in list(waiting):
            if r.proc.poll() is not None:
                raise RuntimeError(f"{r.name} exited: {r.log.read_text()}")
            try:
                if httpx.get(f"{r.url}/health", timeout=1).status_code == 200:
                    waiting.remove(r)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    if waiting:
        raise RuntimeError(
            f"{[r.name for r in waiting]} did not start: {waiting[0].log.read_text()}"
        )


@dataclass
class Load:
    requests: int
    rps: float
    non2xx: int
    socket_errors: int
    p99_ms: float

    @property
    def failed(self) -> int:
        return self.non2xx + self.socket_errors

    def __str__(self) -> str:
        return (
            f"{self.requests} requests, {self.rps:.0f}/s, p99 {self.p99_ms:.0f} ms, "
            f"{self.non2xx} non-2xx/3xx, {self.socket_errors} socket errors"
        )


def wrk(base: str, paths: Path, seconds: float, conns: int = 4, vary: bool = False) -> Load:
    """wrk -t1 for ``seconds`` over the paths in the file (loadtests/walk.lua), bounded;
    ``vary``: a new Accept header per request, so no per-URL cache answers it."""
    exe = shutil.which("wrk")
    if exe is None:
        pytest.fail("wrk is not installed: run scripts/setup --test")
    cmd = [exe, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
           "-s", str(WALK), base, "--", str(paths)]  # fmt: skip
    env = {**os.environ, "VARY_ACCEPT": "1" if vary else "0"}
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=seconds + 30, env=env
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT"))
    kv = dict(item.split("=", 1) for item in line.split()[1:])
    return Load(
        int(kv["requests"]),
        float(kv["rps"]),
        int(kv["non2xx"]),
        int(kv["socket_errors"]),
        float(kv["p99_ms"]),
    )
