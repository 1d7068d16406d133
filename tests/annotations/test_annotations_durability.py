"""Durability: a real uvicorn receiving concurrent writes is SIGKILLed; every write that got a
2xx is there after a restart (SQLite with synchronous=FULL, and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from iiifsrv.settings import Settings, to_environ
from tests.annotations.annotation_samples import anno, container, path
from tests.ports import free_port

STRONG = "durability-alice-7Gq2xZ9wLk4Pv8Rt"
ALICE = {"Authorization": f"Bearer {STRONG}"}

WRITERS = 8
KILL_AFTER = 60


def start(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **to_environ(settings)}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "iiifsrv.web.app:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=base) as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited during start-up"
            try:
                if (await c.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


async def test_acknowledged_writes_survive_sigkill(
    backend_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A worker loads its settings through load(), which refuses weak tokens.
    strong = {"tokens": f"{STRONG}=alice", "public_url": base}
    settings = backend_settings.__class__(**{**backend_settings.as_dict(), **strong})
    log = tmp_path / "uvicorn.log"
    proc = start(settings, port, log)
    acknowledged: list[str] = []
    try:
        await wait_ready(base, proc)
        enough = asyncio.Event()

        async def writer(n: int) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                i = 0
                while True:
                    try:
                        r = await c.post(
                            container(), json=anno(f"writer {n} note {i}"), headers=ALICE
                        )
                    except httpx.TransportError:
                        return  # the server died mid-request: not acknowledged
                    assert r.status_code == 201, r.text
                    acknowledged.append(r.headers["location"])
                    if len(acknowledged) >= KILL_AFTER:
                        enough.set()
                    i += 1

        tasks = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
        await asyncio.wait_for(enough.wait(), timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # while the other writers are mid-request
        proc.wait(timeout=10)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert len(acknowledged) >= KILL_AFTER
    proc = start(settings, port, log)
    try:
        await wait_ready(base, proc)
        async with httpx.AsyncClient(base_url=base) as c:
            listed = (await c.get(container() + "page")).json()["items"]
            assert set(acknowledged) <= {a["id"] for a in listed}
            for url in acknowledged[:: max(1, len(acknowledged) // 10)]:
                assert (await c.get(path(url))).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
