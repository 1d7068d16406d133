#!/usr/bin/env python3
"""Client CPU per ranged GET of a stored tile, in one process against a local Swift (s3api):
S3Storage.read in a worker thread (urllib3; what every stored tile cost until 2026-11-30) beside
S3Storage.read_async on the event loop (sources/keepalive.py; what a stored tile costs now),
with ``--concurrency`` GETs in flight, in alternation (A B A B). Process CPU time over the run
divided by the GETs: the server's side of the GET, without HTTP serving, planning or sending.

  .venv/bin/python loadtests/s3_get_cpu.py --gets 2000 --concurrency 16

Starts Swift as the tests do (tests/s3_support.py) and uploads one tiled JPEG TIFF made here
(4096x4096, 256 tiles); 127.0.0.1 only, bounded in time; a harness, not part of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gets", type=int, default=2000, help="measured GETs per pass")
    ap.add_argument("--concurrency", type=int, default=16, help="GETs in flight")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import pyvips
    import tifffile

    from iiifsrv.sources.s3 import S3Storage
    from tests.s3_support import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, start_swift

    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    work = Path(tempfile.mkdtemp(prefix="s3-get-cpu-"))
    tif = work / "tiles.tif"
    noise = pyvips.Image.gaussnoise(4096, 4096, sigma=40, mean=128).cast("uchar")
    noise.bandjoin([noise, noise]).copy(interpretation="srgb").tiffsave(
        str(tif), tile=True, tile_width=256, tile_height=256, compression="jpeg", Q=80
    )
    with tifffile.TiffFile(tif) as t:
        page = t.pages[0]
        ranges = list(zip(map(int, page.dataoffsets), map(int, page.databytecounts), strict=True))
    swift = start_swift(work / "swift")
    try:
        swift.client().upload_file(str(tif), BUCKET, "cpu/tiles.tif")
        storage = S3Storage(BUCKET, "cpu/", endpoint=swift.endpoint, region=REGION)
        etag = storage.stat("tiles.tif").tag

        async def in_thread(offset: int, length: int) -> bytes:
            return await anyio.to_thread.run_sync(
                lambda: storage.read("tiles.tif", offset, length, etag=etag)
            )

        async def on_loop(offset: int, length: int) -> bytes:
            return await storage.read_async("tiles.tif", offset, length, etag=etag)

        async def measure(name: str, get: object) -> None:
            for measured in (False, True):
                work_list = iter(random.choices(ranges, k=args.gets))

                async def worker(work_list: Iterator[tuple[int, int]] = work_list) -> None:
                    for offset, length in work_list:
                        assert len(await get(offset, length)) == length  # type: ignore[operator]

                t0, c0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                t1, c1 = time.perf_counter(), time.process_time()
                if measured:
                    print(
                        f"{name:45s} {1000 * (c1 - c0) / args.gets:.3f} ms CPU per GET, "
                        f"{args.gets / (t1 - t0):.0f} GETs/s",
                        flush=True,
                    )

        async def run() -> None:
            print(f"load average {os.getloadavg()[0]:.2f}; {args.concurrency} GETs in flight")
            for _ in range(args.rounds):
                await measure("S3Storage.read in a thread (urllib3)", in_thread)
                await measure("S3Storage.read_async on the loop (keepalive)", on_loop)
            storage.close_connections()
            await asyncio.sleep(0.05)

        asyncio.run(run())
    finally:
        swift.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
