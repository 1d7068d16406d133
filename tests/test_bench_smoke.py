"""The benchmark and soak harnesses, run tiny so they cannot rot (the real runs are in
docs/benchmarks.md; CI does not time anything)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.ports import bindable

PEERS = ROOT.parent / "shared" / "peers"


def _peer_port() -> int:
    """A free port for the peer's lighttpd whose FastCGI ports (port + 1000, + 1001) are free too
    (fixed ports collide with another run of the suite on the same machine)."""
    for _ in range(100):
        port = free_port()
        if bindable(port + 1000) and bindable(port + 1001):
            return port
    raise RuntimeError("no free port for the peer")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )


def test_bench_smoke_side_by_side() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: scripts/setup --test installs it")
    peer = PEERS.is_dir() and (
        os.geteuid() == 0 or Path("/usr/lib/iipimage-server/iipsrv.fcgi").exists()
    )
    port, peer_port = free_port(), _peer_port()
    args = ["loadtests/bench.py", "--smoke", "--port", str(port), "--peer-port", str(peer_port)]
    done = _run(*args, *([] if peer else ["--no-peer"]))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 9  # header + 8 cases
    assert "distinct full-resolution tiles, JPEG TIFF" in rows[1]
    if peer:
        assert all(cell.strip().endswith("x") for cell in [r.split("|")[4] for r in rows[1:]])


def test_soak_smoke() -> None:
    done = _run("loadtests/soak.py", "--smoke", "--seconds", "3", "--port", str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first tile of a never-seen image (ms)" in done.stdout
    assert "(all 2xx)" in done.stdout


def test_bench_s3_smoke() -> None:
    """``scripts/bench --s3`` on the tiny image, one case: Swift, both servers, the counters
    and the raw ranged GETs all run (the real numbers are in docs/benchmarks.md)."""
    port = free_port(span=2)  # it uses port and port + 1
    args = ["loadtests/bench.py", "--smoke", "--s3", "--no-cache", "--port", str(port)]
    done = _run(*args, "--only", "distinct full-resolution")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 2  # header + the case
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    # One GET per stored tile at most (edge tiles of this small image come from its level
    # kept decoded: no GET)
    assert 0 < float(cells[7]) <= 1.0
    assert cells[10].endswith("%")  # measured against the raw ranged GETs


def test_bench_replicas_smoke() -> None:
    """``scripts/bench --replicas 2``, 1-second cells: two rows (1 and 2 replicas behind the
    shipped HAProxy configuration, with the shipped Varnish one in front), no failed request."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: scripts/setup --test installs it")
    done = _run("loadtests/bench.py", "--smoke", "--replicas", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 3  # header + 1 and 2 replicas
    for n, row in enumerate(rows[1:], start=1):
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[0] == str(n) and float(cells[1]) > 0 and float(cells[3]) > 0
        assert cells[5] == "0"  # failed requests
