"""Start Debian's HAProxy and Varnish with the shipped configurations (config/haproxy.cfg,
config/varnish.vcl, moved to free loopback ports by loadtests/replicas.py, which the replica
benchmark shares) in a temporary directory, and stop them.
scripts/setup --test installs both packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loadtests.replicas import haproxy_config, varnish_command, varnish_vcl
from tests.conftest import free_port


def need(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
    )
    if path is None:
        pytest.fail(f"{binary} is not installed: run scripts/setup --test")
    return path


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_until(ok: Callable[[], bool], daemon: Daemon, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {daemon.log.read_text()}")
        try:
            if ok():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"{what} did not become ready: {daemon.log.read_text()}")


def start_haproxy(
    tmp: Path, backends: list[int], *, port: int = 0, inter: str = ""
) -> tuple[Daemon, int]:
    port, stats = port or free_port(), free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(haproxy_config(backends, port, stats, inter))
    log = tmp / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [need("haproxy"), "-f", str(cfg), "-db"], stdout=out, stderr=subprocess.STDOUT
        )
    daemon = Daemon(proc, port, log)
    _wait_until(
        lambda: httpx.get(f"{daemon.url}/health", timeout=2).status_code == 200, daemon, "haproxy"
    )
    return daemon, stats


def server_states(stats_port: int) -> dict[str, str]:
    """HAProxy's view of each replica (UP, DOWN, …) from its CSV statistics."""
    text = httpx.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=2).text
    header = text.splitlines()[0].lstrip("# ").split(",")
    states = {}
    for line in text.splitlines()[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "iiifsrv" and row.get("svname", "").startswith("r"):
            states[row["svname"]] = row["status"]
    return states


def start_varnish(tmp: Path, backend: int) -> Daemon:
    port = free_port()
    vcl = tmp / "iiifsrv.vcl"
    vcl.write_text(varnish_vcl(backend))
    work = tmp / "varnish"
    work.mkdir()
    cmd = varnish_command(need("varnishd"), work, port, vcl)
    log = tmp / "varnish.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(proc, port, log)
    _wait_until(
        lambda: httpx.get(f"{daemon.url}/health", timeout=2).status_code == 200, daemon, "varnish"
    )
    return daemon
