#!/usr/bin/env python3
"""Memory soak and cold-start latency of iiifsrv (127.0.0.1 only, bounded in requests and time).

1. Makes a 50000x50000 pyramidal JPEG BigTIFF (once; about a minute) and N hard links to it,
   each a never-seen identifier.
2. Starts iiifsrv at idle and times the first tile of each never-seen identifier (the server
   opens the file, reads its structure, answers the tile): the cold-start latency.
3. Sends at least --requests distinct-tile requests with wrk over every tile of every level,
   sampling each worker's RSS every few seconds; prints the samples and the growth.

  .venv/bin/python loadtests/soak.py                 # 50000x50000, >= 100,000 requests
  .venv/bin/python loadtests/soak.py --smoke         # 4000x4000, >= 2,000 requests (CI)
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import WALK, iiifsrv_pids, memory, port_busy, start_iiifsrv, stop_iiifsrv  # noqa: E402


def make_image(path: Path, size: int) -> None:
    if path.exists():
        return
    import pyvips

    xyz = pyvips.Image.xyz(size, size)
    r = (xyz[0] * 255 / size).cast("uchar")
    g = (xyz[1] * 255 / size).cast("uchar")
    b = (((xyz[0] // 256) + (xyz[1] // 256)) % 2 * 120 + 60).cast("uchar")
    image = r.bandjoin([g, b]).copy(interpretation="srgb")
    tmp = path.with_name(f".{path.name}.part")
    image.tiffsave(
        str(tmp),
        tile=True,
        pyramid=True,
        compression="jpeg",
        Q=75,
        bigtiff=True,
        tile_width=256,
        tile_height=256,
    )
    os.replace(tmp, path)


def tile_paths(ident: str, size: int, tile: int = 256) -> list[str]:
    out = []
    sf = 1
    while size / sf >= 1:
        step = tile * sf
        for y in range(0, size, step):
            for x in range(0, size, step):
                rw, rh = min(step, size - x), min(step, size - y)
                out.append(f"/iiif/3/{ident}/{x},{y},{rw},{rh}/{math.ceil(rw / sf)},/0/default.jpg")
        if step >= size:
            break
        sf *= 2
    random.Random(7).shuffle(out)
    return out


def first_tile_ms(port: int, ident: str, size: int) -> float:
    x = (size // 512) * 256
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.perf_counter()
    conn.request("GET", f"/iiif/3/{ident}/{x},{x},256,256/256,/0/default.jpg")
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - t0) * 1000
    conn.close()
    assert response.status == 200 and body[:2] == b"\xff\xd8", response.status
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--size", type=int, default=50000)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=60, help="upper bound on the load phase")
    ap.add_argument("--port", type=int, default=8183)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/iiifbench/soak")
    ap.add_argument("--cache-bytes", type=int, default=None, help="IIIFSRV_CACHE_BYTES for the run")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.requests, args.seconds, args.dir = (
            4000,
            2000,
            10,
            "/tmp/iiifbench-smoke/soak",
        )
    images = Path(args.dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    master = images / f"giga-{args.size}.tif"
    t0 = time.time()
    make_image(master, args.size)
    print(
        f"image: {master.name} ({master.stat().st_size / 1e6:.0f} MB, made in {time.time() - t0:.0f} s)"
    )
    names = []
    for i in range(5):
        link = images / f"unseen-{os.getpid()}-{i}.tif"
        os.link(master, link)
        names.append(link.stem)
    if port_busy(args.port):
        print(f"port {args.port} is busy", file=sys.stderr)
        return 2
    env = {} if args.cache_bytes is None else {"IIIFSRV_CACHE_BYTES": str(args.cache_bytes)}
    server = start_iiifsrv(images, args.port, args.workers, env)
    try:
        time.sleep(1.0)  # idle: let the workers settle before timing a cold request
        cold = [first_tile_ms(args.port, name, args.size) for name in names]
        print("first tile of a never-seen image (ms): " + ", ".join(f"{c:.1f}" for c in cold))
        paths = tile_paths(master.stem, args.size)
        listing = Path(args.dir) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        print(f"{len(paths)} distinct tile paths over every level")
        samples: list[tuple[float, int, int]] = []
        done = threading.Event()

        def sample() -> None:
            start = time.time()
            while not done.is_set():
                rss, hwm = memory(iiifsrv_pids(server))
                samples.append((time.time() - start, rss, hwm))
                done.wait(2.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        total = 0
        deadline = time.time() + args.seconds
        while total < args.requests and time.time() < deadline:
            seconds = max(1, min(10, int(deadline - time.time())))
            out = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    "-c32",
                    f"-d{seconds}s",
                    "-s",
                    str(WALK),
                    f"http://127.0.0.1:{args.port}",
                    "--",
                    str(listing),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
            kv = dict(item.split("=", 1) for item in line.split()[1:])
            total += int(kv["requests"])
            if int(kv["non2xx"]) or int(kv["socket_errors"]):
                print(f"errors: {line}", file=sys.stderr)
                return 1
        done.set()
        sampler.join()
        rss_end, hwm_end = memory(iiifsrv_pids(server))
    finally:
        stop_iiifsrv(server)
        for name in names:
            (images / f"{name}.tif").unlink(missing_ok=True)
    print(f"requests: {total} (all 2xx)")
    print("t_s  rss_all_workers_MB  peak_worker_MB")
    for t, rss, hwm in samples:
        print(f"{t:5.0f} {rss:8d} {hwm:8d}")
    settled = [rss for t, rss, _ in samples if t >= samples[-1][0] / 2] or [rss_end]
    print(
        f"RSS second half: min {min(settled)} MB, max {max(settled)} MB; end {rss_end} MB; "
        f"peak worker {hwm_end} MB"
    )
    return 0 if total >= args.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
