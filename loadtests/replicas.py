"""``scripts/bench --replicas N``: throughput of 1..N iiifsrv replicas behind HAProxy, and of the
same with Varnish in front (cache hits), side by side in one run, with wrk on 127.0.0.1.

Also the one place that turns the shipped config/haproxy.cfg and config/varnish.vcl into configs
for given loopback ports (tests/ops/proxies.py uses the same functions).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
WALK = ROOT / "loadtests" / "walk.lua"
T = TypeVar("T")


def haproxy_config(backends: list[int], port: int, stats_port: int, inter: str = "") -> str:
    """config/haproxy.cfg with its listening ports moved, one ``server`` line per backend (shaped
    like the shipped ones) and, when given, another health-check interval."""
    text = (ROOT / "config" / "haproxy.cfg").read_text()
    text = text.replace("bind 127.0.0.1:8080", f"bind 127.0.0.1:{port}")
    text = text.replace("bind 127.0.0.1:8404", f"bind 127.0.0.1:{stats_port}")
    lines = text.splitlines()
    servers = [i for i, ln in enumerate(lines) if ln.strip().startswith("server r")]
    assert len(servers) == 2 and servers[1] == servers[0] + 1, servers
    shape = lines[servers[0]]
    lines[servers[0] : servers[1] + 1] = [
        re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{b}", shape).replace(" r1 ", f" r{n} ")
        for n, b in enumerate(backends, start=1)
    ]
    text = "\n".join(lines) + "\n"
    if inter:
        assert "check inter 1s " in text
        text = text.replace("check inter 1s ", f"check inter {inter} ")
    return text


def varnish_vcl(backend: int) -> str:
    """config/varnish.vcl pointing at ``backend`` on 127.0.0.1."""
    text = (ROOT / "config" / "varnish.vcl").read_text()
    assert '.port = "8080";' in text
    return text.replace('.port = "8080";', f'.port = "{backend}";')


def varnish_command(binary: str, work: Path, port: int, vcl: Path) -> list[str]:
    cmd = [binary, "-F", "-n", str(work), "-a", f"127.0.0.1:{port}", "-f", str(vcl)]
    cmd += ["-s", "malloc,64m", "-T", "none"]
    if os.geteuid() == 0:
        cmd += ["-j", "none"]  # root: no privilege separation in a private temp dir
    return cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _binary(name: str) -> str:
    sbin = Path("/usr/sbin") / name
    found = shutil.which(name) or (str(sbin) if sbin.exists() else "")
    if not found:
        raise SystemExit(f"[bench] {name} is not installed (scripts/setup --test installs it)")
    return found


class Stack:
    """n replicas (``--workers 1`` each, own process groups), HAProxy, Varnish in front."""

    def __init__(self, images: Path, n: int, work: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        exe = shutil.which("iiifsrv") or str(ROOT / ".venv" / "bin" / "iiifsrv")
        env = {**os.environ, "IIIFSRV_LOG_LEVEL": "warning"}
        ports = [_free_port() for _ in range(n)]
        for i, port in enumerate(ports):
            data = work / f"data{i}"
            self.procs.append(subprocess.Popen(
                [exe, "serve", "--images", str(images), "--data", str(data), "--port", str(port),
                 "--workers", "1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))  # fmt: skip
        for port in ports:
            _wait(f"http://127.0.0.1:{port}/health")
        self.haproxy_port = _free_port()
        cfg = work / "haproxy.cfg"
        cfg.write_text(haproxy_config(ports, self.haproxy_port, _free_port()))
        self.haproxy = subprocess.Popen(
            [_binary("haproxy"), "-f", str(cfg), "-db"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(f"http://127.0.0.1:{self.haproxy_port}/health")
        self.varnish_port = _free_port()
        vcl = work / "iiifsrv.vcl"
        vcl.write_text(varnish_vcl(self.haproxy_port))
        (work / "varnish").mkdir()
        self.varnish = subprocess.Popen(
            varnish_command(_binary("varnishd"), work / "varnish", self.varnish_port, vcl),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(f"http://127.0.0.1:{self.varnish_port}/health")

    def stop(self) -> None:
        for daemon in (self.varnish, self.haproxy):
            daemon.terminate()
            daemon.wait(15)
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(
    images: Path, paths: list[str], counts: list[int], measure: Callable[[str, Path], T]
) -> list[tuple[int, T, T, str]]:
    """For each replica count: (count, HAProxy result, Varnish result, load average after)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="iiifsrv-replicas-") as tmp:
        listing = Path(tmp) / "paths.txt"
        listing.write_text("".join(f"/iiif/3/{p}\n" for p in paths))
        for n in counts:
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            stack = Stack(images, n, work)
            try:
                via_haproxy = measure(f"http://127.0.0.1:{stack.haproxy_port}", listing)
                via_varnish = measure(f"http://127.0.0.1:{stack.varnish_port}", listing)
            finally:
                stack.stop()
            rows.append((n, via_haproxy, via_varnish, load_average()))
    return rows
