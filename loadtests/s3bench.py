"""``scripts/bench --s3``: the benchmark images served from object storage, side by side with
the same images on local disk, and the ceiling the object store sets.

Starts OpenStack Swift with s3api on 127.0.0.1 as the tests do (tests/s3_support.py), uploads
the benchmark images, starts two iiifsrv (one on the folder, one on ``s3://images/bench``) and
runs each case against both in alternation. For the S3 server it reads its own counters from
/metrics (iiifsrv_s3_requests{op="get"}, iiifsrv_s3_get_bytes) before and after the measured
run: GETs and bytes per tile. The ceiling is the same Swift answering the equivalent raw ranged
GETs (the byte ranges of the stored tiles each case asks for, read from the TIFF's tile index
or the JPEG2000's tile-parts) under the same number of connections, sent by wrk (ranged.lua) to
a presigned URL: the same load generator as for iiifsrv, so client cost is equal and
negligible; presigned, because wrk cannot sign each request, and the Range header is not part
of the signature, so one URL per object serves every range (s3api still checks the signature
on every request).

Blocking; a harness, not part of the server. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench
from bench import Case, Result, log

RANGED = bench.HERE / "ranged.lua"
PREFIX = "bench"
_METRIC = re.compile(
    r'^(iiifsrv_s3_requests_total\{op="get"\}|iiifsrv_s3_get_bytes_total'
    r'|iiifsrv_http_requests_total\{route="image(?:_info)?",status="[^"]*"\}) (\S+)$'
)


@dataclass
class Row:
    case: Case
    local: Result
    s3: Result
    gets: float  # per tile, measured run
    kib: float  # KiB received from S3 per tile
    raw: Result | None
    cpu_iiifsrv: float  # ms of CPU per request: the S3 iiifsrv's workers
    cpu_swift: float  # ms of CPU per request: Swift while iiifsrv read from it
    cpu_swift_raw: float  # ms of CPU per raw ranged GET: Swift


def s3_counters(base: str) -> tuple[float, float, float]:
    """(S3 GETs, bytes received, Image API requests answered) the server's workers counted;
    the workers publish the S3 counters every few seconds (web/metrics.py SAMPLE_SECONDS), so
    callers wait that long first."""
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    gets = received = requests = 0.0
    for m in map(_METRIC.match, text.splitlines()):
        if m is None:
            continue
        if m.group(1).startswith("iiifsrv_http"):
            requests += float(m.group(2))
        elif "get_bytes" in m.group(1):
            received = float(m.group(2))
        else:
            gets = float(m.group(2))
    return gets, received, requests


def cpu_seconds(groups: list[int]) -> float:
    """User + system CPU of every process in the process groups ``groups`` (a server and the
    workers it forked), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def settle() -> None:
    from iiifsrv.web.metrics import SAMPLE_SECONDS

    time.sleep(SAMPLE_SECONDS + 0.5)


def tile_ranges(tif: Path, paths: list[str], tile: int = 256) -> list[tuple[int, int]] | None:
    """The (offset, length) of the stored tile each tile request reads, or None when a path
    is not a tile of the TIFF (info.json, a downscaled view)."""
    import tifffile

    shape = re.compile(r"^[^/]+/(\d+),(\d+),(\d+),(\d+)/(\d+),/0/default\.jpg$")
    with tifffile.TiffFile(tif) as t:
        levels = [lvl.keyframe for lvl in t.series[0].levels]
        index = [(p.imagewidth, p.dataoffsets, p.databytecounts) for p in levels]
    out = []
    for path in paths:
        m = shape.match(path)
        if m is None:
            return None
        x, y, rw, _, sw = (int(g) for g in m.groups())
        for level in range(len(index)):
            sf = 2**level
            if x % (tile * sf) == 0 and y % (tile * sf) == 0 and math.ceil(rw / sf) == sw:
                break
        else:
            return None
        width, offsets, counts = index[level]
        across = math.ceil(width / tile)
        n = (y // (tile * sf)) * across + x // (tile * sf)
        out.append((int(offsets[n]), int(counts[n])))
    return out


def jp2_tile_ranges(path: Path, paths: list[str]) -> list[tuple[int, int]] | None:
    """The (offset, length) of the tile-part each full-resolution tile request of the
    JPEG2000 ``path`` reads (one tile-part per tile, as jp2ksave writes), or None."""
    from iiifsrv.sources import jp2

    shape = re.compile(r"^[^/]+/(\d+),(\d+),(\d+),(\d+)/(\d+),/0/default\.jpg$")
    with path.open("rb") as fh:
        header = jp2.read_header(fh)
        _, start, end = jp2.codestream_bounds(fh, path.stat().st_size)
        fh.seek(start)
        first = start + jp2.main_header_end(fh.read(1 << 20))

        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)

        parts = {t: (o, n) for t, o, n in jp2.walk_tile_parts(read, first, end, 1 << 20)}
    across = math.ceil(header.width / header.tile_width)
    out = []
    for p in paths:
        m = shape.match(p)
        if m is None or int(m.group(3)) != int(m.group(5)):
            return None
        x, y = int(m.group(1)), int(m.group(2))
        out.append(parts[(y // header.tile_height) * across + x // header.tile_width])
    return out


def upload(swift: Any, images: Path, names: list[str]) -> None:
    from boto3.s3.transfer import TransferConfig

    client = swift.client()
    config = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20)
    for name in names:
        t0 = time.monotonic()
        client.upload_file(str(images / name), "images", f"{PREFIX}/{name}", Config=config)
        size = (images / name).stat().st_size
        log(f"uploaded {name} ({size / 1e6:.0f} MB) to Swift in {time.monotonic() - t0:.1f} s")


def run(args: argparse.Namespace, w: int, h: int) -> int:
    sys.path.insert(0, str(bench.ROOT))
    from tests.s3_support import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, start_swift

    images = Path(args.images)
    work = images.parent / "s3bench"
    shutil.rmtree(work, ignore_errors=True)
    lists = work / "lists"
    lists.mkdir(parents=True)
    load_start = os.getloadavg()
    log(f"starting Swift (s3api) on 127.0.0.1; load average {load_start}")
    swift = start_swift(work / "swift")
    procs = []
    rows: list[Row] = []
    try:
        all_cases = [c for c in bench.cases(w, h, args.smoke) if "downscaled" not in c.name]
        chosen = [c for c in all_cases if not args.only or args.only in c.name]
        upload(swift, images, sorted({c.image for c in chosen}))
        env = {"IIIFSRV_CACHE_BYTES": "0"} if args.no_cache else {}
        local_base = f"http://127.0.0.1:{args.port}"
        s3_base = f"http://127.0.0.1:{args.port + 1}"
        s3_env = {
            **env,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "IIIFSRV_S3_ENDPOINT": swift.endpoint,
            "IIIFSRV_S3_REGION": REGION,
        }
        procs.append(bench.start_iiifsrv(images, args.port, args.workers, env, work / "data-l"))
        procs.append(
            bench.start_iiifsrv(
                f"s3://{BUCKET}/{PREFIX}", args.port + 1, args.workers, s3_env, work / "data-s3"
            )
        )
        client = swift.client()
        for index, case in enumerate(chosen):
            paths_file = lists / f"case{index}.txt"
            paths_file.write_text("".join(f"/iiif/3/{p}\n" for p in case.paths))
            results: dict[str, Result] = {}
            gets = kib = cpu_ours = cpu_swift = cpu_raw = 0.0
            swift_groups = [p.pid for p in swift.procs.values()]
            for who in ["local", "s3"] if index % 2 == 0 else ["s3", "local"]:
                base = local_base if who == "local" else s3_base
                if who == "local":
                    results[who] = bench.wrk(base, paths_file, case, args.duration, args.warmup)
                    continue
                if case.warmup and args.warmup != "0":  # the structure is read here, once
                    bench.wrk(base, paths_file, case, args.warmup, "0")
                settle()
                before = s3_counters(base)
                cpu = cpu_seconds([procs[1].pid]), cpu_seconds(swift_groups)
                results[who] = bench.wrk(base, paths_file, case, args.duration, "0")
                cpu_after = cpu_seconds([procs[1].pid]), cpu_seconds(swift_groups)
                settle()
                after = s3_counters(base)
                served = max(1.0, after[2] - before[2])
                gets = (after[0] - before[0]) / served
                kib = (after[1] - before[1]) / served / 1024
                cpu_ours = 1000 * (cpu_after[0] - cpu[0]) / served
                cpu_swift = 1000 * (cpu_after[1] - cpu[1]) / served
            raw = None
            if case.image.endswith(".tif"):
                ranges = tile_ranges(images / case.image, case.paths)
            elif case.image.endswith(".jp2"):
                ranges = jp2_tile_ranges(images / case.image, case.paths)
            else:
                ranges = None
            if ranges is not None:
                url = client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": BUCKET, "Key": f"{PREFIX}/{case.image}"},
                    ExpiresIn=3600,
                )
                target = url.split(swift.endpoint, 1)[1]
                ranges_file = lists / f"case{index}-ranges.txt"
                ranges_file.write_text(
                    "".join(f"{target} bytes={o}-{o + n - 1}\n" for o, n in ranges)
                )
                if args.warmup != "0":
                    bench.wrk(swift.endpoint, ranges_file, case, args.warmup, "0", RANGED)
                cpu = cpu_seconds([procs[1].pid]), cpu_seconds(swift_groups)
                raw = bench.wrk(swift.endpoint, ranges_file, case, args.duration, "0", RANGED)
                cpu_raw = 1000 * (cpu_seconds(swift_groups) - cpu[1]) / max(1, raw.requests)
            row = Row(
                case, results["local"], results["s3"], gets, kib, raw, cpu_ours, cpu_swift, cpu_raw
            )
            rows.append(row)
            ceiling = f", raw ranged GETs {raw.rps:.0f}/s" if raw else ""
            log(
                f"{case.name}: local {row.local.rps:.0f}/s, S3 {row.s3.rps:.0f}/s "
                f"({gets:.2f} GETs, {kib:.1f} KiB per tile){ceiling}"
            )
    finally:
        for proc in procs:
            bench.stop_iiifsrv(proc)
        swift.stop()
    print_table(rows, args, w, h, load_start, os.getloadavg())
    bad = [r.case.name for r in rows if r.s3.non2xx or r.s3.errors or r.local.non2xx]
    if bad or any(r.raw and (r.raw.non2xx or r.raw.errors) for r in rows):
        log(f"non-2xx responses or socket errors in: {bad or 'the raw ranged GETs'}")
        return 1
    return 0


def print_table(
    rows: list[Row],
    args: argparse.Namespace,
    w: int,
    h: int,
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
) -> None:
    cache = "caches OFF" if args.no_cache else "caches on (default 96 MiB per worker)"
    print(
        f"\nimage {w}x{h}, wrk -t2, {args.duration} per case after {args.warmup} warm-up, "
        f"both iiifsrv --workers {args.workers} ({cache}); S3 = OpenStack Swift s3api on "
        f"127.0.0.1 (1 proxy worker); load average {' '.join(f'{v:.2f}' for v in load_start)} "
        f"at start, {' '.join(f'{v:.2f}' for v in load_end)} at the end\n"
    )
    print(
        "| case | conns | local disk req/s | S3 req/s | S3 / local | local p50 / p99 ms "
        "| S3 p50 / p99 ms | S3 GETs per request | S3 KiB per request "
        "| raw ranged GETs/s (p50 / p99 ms) | S3 / raw | CPU ms per request: iiifsrv on S3, "
        "Swift for it, Swift per raw GET | non-2xx |"
    )
    print("| --- |" + " ---: |" * 12)
    for r in rows:
        raw = f"{r.raw.rps:.0f} ({r.raw.p50:.1f} / {r.raw.p99:.1f})" if r.raw else "-"
        versus = f"{100 * r.s3.rps / r.raw.rps:.0f} %" if r.raw and r.raw.rps else "-"
        bad = r.local.non2xx + r.local.errors + r.s3.non2xx + r.s3.errors
        print(
            f"| {r.case.name} | {r.case.conns} | {r.local.rps:.0f} | {r.s3.rps:.0f} "
            f"| {r.s3.rps / r.local.rps if r.local.rps else 0:.2f}x "
            f"| {r.local.p50:.1f} / {r.local.p99:.1f} | {r.s3.p50:.1f} / {r.s3.p99:.1f} "
            f"| {r.gets:.2f} | {r.kib:.1f} | {raw} | {versus} "
            f"| {r.cpu_iiifsrv:.2f}, {r.cpu_swift:.2f}, {r.cpu_swift_raw:.2f} | {bad} |"
        )
