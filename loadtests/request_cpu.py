#!/usr/bin/env python3
"""CPU per request, and where it goes, for one case against iiifsrv or the physical floor.

Starts the target on 127.0.0.1 (iiifsrv serve, or loadtests/floor_app.py through the same
uvicorn/uvloop/httptools stack), runs wrk for a bounded time, and reports requests/s and the
server's CPU per request (utime + stime of its worker processes over the measured run; less
sensitive to a shared machine than requests/s), each worker's CPU and the connections each
holds halfway through the run (how the client's connections split). With ``--profile`` py-spy
samples the workers (non-blocking) and the samples are split by stage: HTTP (uvicorn,
httptools, the event loop), Python routing/parse/plan, access decision, metrics, cache,
freshness stat, read, send.

  .venv/bin/python loadtests/request_cpu.py --case tiles --cache off --profile
  .venv/bin/python loadtests/request_cpu.py --target floor --case tiles
  .venv/bin/python loadtests/request_cpu.py --case tiles --cache on --profile

py-spy is a tool, not a dependency: ``--py-spy PATH`` (default: py-spy on PATH).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (the bench's images, URL lists, wrk runner)

TICKS = os.sysconf("SC_CLK_TCK")

# (stage, pattern over a py-spy frame "function (file:line)"), tried from the innermost frame out;
# native frames (libc, uvloop's C) are skipped until a Python frame of a stage matches.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("inflate", re.compile(r"deflate_decode|libdeflate|inflate|lzw_decode|zstd_decode")),
    ("predictor", re.compile(r"delta_decode")),
    (
        "encode (libjpeg-turbo)",
        re.compile(r"jpeg8_encode|encode_jpeg \(|simplejpeg|jpeg_finish|jsimd"),
    ),
    (
        "engine decode (planes)",
        re.compile(r"^decode_into \(|^decode \(.*engine/tiles|^_tiff_tile \("),
    ),
    ("engine resample", re.compile(r"engine/resample\.py")),
    ("engine encode (planes)", re.compile(r"^encode \(.*engine/turbo|^encode_jpeg \(")),
    ("engine Python (assemble, crop)", re.compile(r"iiifsrv/engine/")),
    ("read", re.compile(r"read_raw_tile|read_file \(|tile_bytes \(|Source\.read \(")),
    ("lossless crop", re.compile(r"dct_crop\.py")),
    ("render (thread)", re.compile(r"imaging\.py|pyvips/|encoders")),
    ("send", re.compile(r"^RequestResponseCycle\.send \(")),
    ("metrics", re.compile(r"web/metrics\.py|prometheus_client/|web/edge\.py|telemetry\.py")),
    ("access decision", re.compile(r"web/auth\.py|iiifsrv/access/|_decide \(|credentials\.py")),
    ("base URL", re.compile(r"request_base \(|base_for \(")),
    ("freshness stat", re.compile(r"^(Located\.check|Hot\.fresh|ImageService\._stat_cached) \(")),
    ("cache look-up", re.compile(r"caches/memory\.py|cachetools/")),
    (
        "Python routing/parse/plan",
        re.compile(
            r"iiifsrv/(iiif/|service\.py|conditional\.py|web/image_api\.py|web/app\.py|web/respond"
            r"|web/fast\.py)|floor_app\.py|starlette/"
        ),
    ),
    ("HTTP (uvicorn/httptools/loop)", re.compile(r"uvicorn/|httptools|asyncio/|uvloop|anyio/")),
]
# Samples of a thread waiting: the event loop in epoll, a worker thread waiting for work (at the
# leaf), uvicorn's ping thread and multiprocessing's resource tracker (anywhere in the stack).
IDLE_LEAF = re.compile(
    r"epoll_pwait|epoll_wait|pthread_cond_(timed)?wait|do_futex_wait|sem_|PyThread_acquire_lock"
)
IDLE_THREAD = re.compile(r"always_pong|resource_tracker")


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in STAGES:
            if pattern.search(frame):
                return name
    return "other"


def split(raw_files: list[Path]) -> collections.Counter[str]:
    """Busy samples per stage (idle samples left out)."""
    counts: collections.Counter[str] = collections.Counter()
    for path in raw_files:
        for line in path.read_text().splitlines():
            stack_text, _, n = line.rpartition(" ")
            if not stack_text or not n.isdigit():
                continue
            frames = stack_text.split(";")
            if any(IDLE_LEAF.search(f) for f in frames[-4:]) or IDLE_THREAD.search(stack_text):
                continue
            counts[stage_of(frames)] += int(n)
    return counts


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def connections(pids: list[int], port: int) -> list[int]:
    """Established connections to ``port`` held by each process (its socket fds matched against
    /proc/net/tcp): how the kernel and the accept loops split the client's connections."""
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                established.add(fields[9])  # the socket's inode
    counts = []
    for pid in pids:
        n = 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in established:
                n += 1
        counts.append(n)
    return counts


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()] or [pid]


def start(args: argparse.Namespace, images: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IIIFSRV_LOG_LEVEL": "warning"}
    if args.target == "iiifsrv":
        exe = args.exe or str(ROOT / ".venv" / "bin" / "iiifsrv")
        if args.cache == "off":
            env["IIIFSRV_CACHE_BYTES"] = "0"
        cmd = [exe, "serve", "--images", str(images), "--data", str(images.parent / "pdata")]
        cmd += ["--port", str(port), "--workers", str(args.workers)]
    else:
        env["FLOOR_TIFF"] = str(images / "bench_jpeg.tif")
        env["FLOOR_KIND"] = args.target.removeprefix("floor-") if "-" in args.target else "raw"
        cmd = [str(ROOT / ".venv" / "bin" / "uvicorn"), "floor_app:app", "--app-dir", str(HERE)]
        cmd += ["--port", str(port), "--workers", str(args.workers), "--loop", "uvloop"]
        cmd += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    bench.wait_http(f"http://127.0.0.1:{port}/iiif/3/bench_jpeg.tif/0,0,256,256/256,/0/default.jpg")
    return proc


def paths(case: str, w: int, h: int) -> list[str]:
    ident = "bench_deflate.tif" if case == "deflate" else "bench_jpeg.tif"
    tiles = bench.tiles(ident, w, h, [1])
    if case == "aligned":
        return [t for t in tiles if "/256,/" in t and ",256,256/" in t]
    if case == "edge":
        return [t for t in tiles if ",256,256/" not in t]
    if case == "regions":  # issue 14's distinct downscaled regions x,y,6000,4800/{900..1100},
        return bench.regions(ident, w, h, False)
    if case == "views":  # distinct downscaled whole views full/{900..1100},
        return [f"{ident}/full/{x},/0/default.jpg" for x in range(w * 9 // 100, w * 11 // 100 + 1)]
    if case == "repeat":
        return [f"{ident}/{(w // 512) * 256},{(h // 512) * 256},256,256/256,/0/default.jpg"]
    return tiles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--target",
        choices=["iiifsrv", "floor", "floor-starlette"],
        default="iiifsrv",
    )
    ap.add_argument(
        "--case",
        choices=["tiles", "aligned", "edge", "repeat", "deflate", "regions", "views"],
        default="tiles",
    )
    ap.add_argument("--cache", choices=["on", "off"], default="off")
    ap.add_argument("--images", default="/tmp/iiifbench/images")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--exe", help="the iiifsrv executable (e.g. another checkout's, to compare)")
    ap.add_argument("--profile", action="store_true", help="py-spy the workers, split by stage")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = ap.parse_args()
    images = Path(args.images)
    w, h = bench.make_images(images, smoke=False)
    port = args.port or free_port()
    listing = Path(tempfile.mkdtemp(prefix="request-cpu-")) / "paths.txt"
    listing.write_text("".join(f"/iiif/3/{p}\n" for p in paths(args.case, w, h)))
    case = bench.Case(args.case, "bench_jpeg.tif", [], conns=args.conns)
    proc = start(args, images, port)
    try:
        base = f"http://127.0.0.1:{port}"
        if args.warmup != "0":
            bench.wrk(base, listing, case, args.warmup, "0")
        workers = children(proc.pid)
        counted = sorted(set(workers + [proc.pid]))  # with --workers 1 the server is the worker
        spies: list[subprocess.Popen[bytes]] = []
        raw_files: list[Path] = []
        seconds = float(args.duration.rstrip("s"))
        if args.profile:
            for pid in workers:
                out = listing.parent / f"spy-{pid}.txt"
                raw_files.append(out)
                spies.append(
                    subprocess.Popen(
                        [args.py_spy, "record", "--pid", str(pid), "--format"]
                        + [
                            "raw",
                            "--native",
                            "--rate",
                            str(args.rate),
                            "--duration",
                            str(int(seconds)),
                        ]
                        + ["--output", str(out)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        split_seen: list[int] = []
        # halfway through the run: the connections each worker holds
        timer = threading.Timer(seconds / 2, lambda: split_seen.extend(connections(workers, port)))
        before, t0 = cpu_ticks(counted), time.monotonic()
        per_worker = [cpu_ticks([pid]) for pid in workers]
        timer.start()
        result = bench.wrk(base, listing, case, args.duration, "0")
        used = (cpu_ticks(counted) - before) / TICKS
        per_worker = [cpu_ticks([pid]) - t for pid, t in zip(workers, per_worker, strict=True)]
        timer.join()
        elapsed = time.monotonic() - t0
        for spy in spies:
            spy.wait(30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    requests = result.rps * seconds
    label = f"{args.target}" + (f" (caches {args.cache})" if args.target == "iiifsrv" else "")
    print(f"{label}, case {args.case}, {args.workers} workers, wrk -t2 -c{args.conns}:")
    print(
        f"  {result.rps:.0f} req/s, p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms, "
        f"non-2xx {result.non2xx}; server CPU {used / max(requests, 1) * 1e6:.0f} us/request "
        f"({used / elapsed * 100:.0f} % of one core); load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"  connections per worker (mid-run): {'/'.join(map(str, split_seen)) or '-'}; "
        f"CPU s per worker: {'/'.join(f'{t / TICKS:.1f}' for t in per_worker)}"
    )
    if args.profile:
        counts = split([f for f in raw_files if f.exists()])
        total = sum(counts.values()) or 1
        us = used / max(requests, 1) * 1e6
        print("  | stage | share of worker samples | ~us/request |")
        print("  | --- | ---: | ---: |")
        for name, n in counts.most_common():
            print(f"  | {name} | {n / total * 100:.1f} % | {us * n / total:.1f} |")
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
