#!/usr/bin/env python3
"""Side-by-side benchmark: iiifsrv and Debian's IIPImage (iipsrv) in one run, with wrk.

Generates the test images (../shared/peers/make-images.sh, plus the JPEG2000 from the same
pixels), starts iiifsrv and iipsrv (../shared/peers/setup-iipsrv.sh, loopback only), runs each
case against both in alternation (wrk, bounded in time) and prints the table of ratios, p50/p99
and RSS. Everything goes to 127.0.0.1 only.

  scripts/bench                 # the full run (about 10 minutes with images already made)
  scripts/bench --no-cache      # first views: both servers with their caches off
  scripts/bench --smoke         # tiny image, 1-second cases: proves the harness works (CI)
  scripts/bench --s3 --no-cache # the images from a local Swift (S3) beside the same on disk
  scripts/bench --replicas 3    # 1, 2, 3 replicas behind HAProxy, and Varnish in front (hits)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("IIIFSRV_PEERS", ROOT.parent / "shared" / "peers"))
WALK = PEERS / "walk.lua"
IIPSRV = Path("/usr/lib/iipimage-server/iipsrv.fcgi")


@dataclass
class Case:
    name: str
    image: str
    paths: list[str]  # paths after the server's IIIF prefix, starting with the identifier
    conns: int = 32
    timeout: str = "10s"
    warmup: bool = True
    goal: float = 0.0


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    non2xx: int
    errors: int
    requests: int = 0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload]


# -- images ------------------------------------------------------------------------------------


def make_images(images: Path, smoke: bool) -> tuple[int, int]:
    images.mkdir(parents=True, exist_ok=True)
    import pyvips

    if smoke:
        w, h = 1200, 900
        if not (images / "bench_jpeg.tif").exists():
            img = pyvips.Image.perlin(w, h, cell_size=64).linear(100, 128).cast("uchar")
            img = img.bandjoin([img, img]).copy(interpretation="srgb")
            common = {"tile": True, "pyramid": True, "tile_width": 256, "tile_height": 256}
            img.tiffsave(str(images / "bench_jpeg.tif"), compression="jpeg", Q=75, **common)
            img.tiffsave(str(images / "bench_deflate.tif"), compression="deflate", **common)
            img.jp2ksave(str(images / "bench.jp2"), tile_width=256, tile_height=256, Q=45)
        return w, h
    if not (images / "bench_jpeg.tif").exists() or not (images / "bench_deflate.tif").exists():
        if shutil.which("vips") is None:
            log("making the 10000x8000 test images with pyvips, as make-images.sh does (~3 min)")
            make_images_pyvips(images)
        else:
            log("making the 10000x8000 test images with the peer's make-images.sh (about 3 min)")
            run(["bash", str(PEERS / "make-images.sh")], env={**os.environ, "IMAGES": str(images)})
    if not (images / "bench.jp2").exists():
        # make-images.sh skips the JP2 when `vips -l | grep -q` meets SIGPIPE under pipefail;
        # write it here from the same pixels, with the same options.
        log("writing bench.jp2 from bench_deflate.tif (same pixels, 256 tiles, Q45)")
        src = pyvips.Image.new_from_file(str(images / "bench_deflate.tif"))
        tmp = images / ".bench.jp2.part"
        src.jp2ksave(str(tmp), tile_width=256, tile_height=256, Q=45)
        os.replace(tmp, images / "bench.jp2")
    return 10000, 8000


def make_images_pyvips(images: Path, w: int = 10000, h: int = 8000) -> None:
    """make-images.sh's recipe through pyvips (when the vips command is not installed): per
    band a fractal surface normalised to sd 40 around 128 plus Gaussian noise (sigma 10)."""
    import pyvips

    bands = []
    for dimension in (2.4, 2.6, 2.2):
        surface = pyvips.Image.fractsurf(w, h, dimension).copy_memory()
        level = surface.linear(40 / surface.deviate(), 128)
        bands.append((level + pyvips.Image.gaussnoise(w, h, sigma=10, mean=0)).cast("uchar"))
    rgb = bands[0].bandjoin(bands[1:]).copy(interpretation="srgb").copy_memory()
    common = {"tile": True, "pyramid": True, "tile_width": 256, "tile_height": 256}
    for name, options in (("bench_jpeg.tif", {"compression": "jpeg", "Q": 75}),
                          ("bench_deflate.tif", {"compression": "deflate"})):  # fmt: skip
        tmp = images / f".{name}.part"
        rgb.tiffsave(str(tmp), **options, **common)
        os.replace(tmp, images / name)
    tmp = images / ".bench.jp2.part"
    rgb.jp2ksave(str(tmp), tile_width=256, tile_height=256, Q=45)
    os.replace(tmp, images / "bench.jp2")


# -- request lists -----------------------------------------------------------------------------


def tiles(ident: str, w: int, h: int, sfs: list[int], tile: int = 256, seed: int = 1) -> list[str]:
    out = []
    for sf in sfs:
        step = tile * sf
        for y in range(0, h, step):
            for x in range(0, w, step):
                rw, rh = min(step, w - x), min(step, h - y)
                out.append(f"{ident}/{x},{y},{rw},{rh}/{math.ceil(rw / sf)},/0/default.jpg")
    random.Random(seed).shuffle(out)
    return out


def regions(ident: str, w: int, h: int, smoke: bool) -> list[str]:
    """Distinct downscaled regions, as issue 14's table: 20 places of a 6000x4800 region (60 % of
    the image; the same share of the smoke image) at each width 900..1100 (0.09w..0.11w): 4020
    URLs, no two alike, so a run of the usual length never repeats one and no decoded level or
    response can be reused."""
    rw, rh = w * 6 // 10, h * 6 // 10
    sizes = range(w * 9 // 100, w * 11 // 100 + 1)
    rng = random.Random(14)
    places = [(rng.randrange(0, w - rw), rng.randrange(0, h - rh)) for _ in range(20)]
    out = [f"{ident}/{x},{y},{rw},{rh}/{size},/0/default.jpg" for size in sizes for x, y in places]
    rng.shuffle(out)
    return out


def viewer_session(ident: str, w: int, h: int, tile: int = 256) -> list[str]:
    """What Mirador/OpenSeadragon ask for: info.json, a thumbnail, then the tiles covering a
    1600x900 viewport at each level while zooming into the centre, then panning right/down."""
    paths = [f"{ident}/info.json", f"{ident}/full/200,/0/default.jpg"]
    levels = []
    sf = 1
    while max(w, h) / sf > tile:
        levels.append(sf)
        sf *= 2
    levels.append(sf)
    view_w, view_h = 1600, 900

    def viewport(cx: float, cy: float, sf: int) -> list[str]:
        span_w, span_h = view_w * sf, view_h * sf
        x0, y0 = max(0, cx - span_w / 2), max(0, cy - span_h / 2)
        step = tile * sf
        out = []
        for ty in range(int(y0 // step), int(min(h, y0 + span_h) // step) + 1):
            for tx in range(int(x0 // step), int(min(w, x0 + span_w) // step) + 1):
                x, y = tx * step, ty * step
                if x >= w or y >= h:
                    continue
                rw, rh = min(step, w - x), min(step, h - y)
                out.append(f"{ident}/{x},{y},{rw},{rh}/{math.ceil(rw / sf)},/0/default.jpg")
        return out

    for sf in reversed(levels):  # zoom in
        paths += viewport(w / 2, h / 2, sf)
    for step in range(1, 6):  # pan at the two finest levels
        for sf in (2, 1):
            paths += viewport(w / 2 + step * 400 * sf, h / 2 + step * 200 * sf, sf)
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def cases(w: int, h: int, smoke: bool) -> list[Case]:
    jpeg, deflate, jp2 = "bench_jpeg.tif", "bench_deflate.tif", "bench.jp2"
    return [
        Case("distinct full-resolution tiles, JPEG TIFF", jpeg, tiles(jpeg, w, h, [1]), goal=6),
        Case(
            "distinct lower-level tiles (sf 2, 4), JPEG TIFF",
            jpeg,
            tiles(jpeg, w, h, [2, 4]),
            goal=6,
        ),
        Case(
            "one tile repeated",
            jpeg,
            [f"{jpeg}/{(w // 512) * 256},{(h // 512) * 256},256,256/256,/0/default.jpg"],
            goal=8,
        ),
        Case(
            "distinct tiles, deflate TIFF (after a warm-up pass)",
            deflate,
            tiles(deflate, w, h, [1]),
            goal=3,
        ),
        Case(
            "distinct downscaled views full/{900..1100},",
            jpeg,
            [f"{jpeg}/full/{x},/0/default.jpg" for x in range(900, 1101)],
            conns=8,
            timeout="30s",
            warmup=False,
            goal=1.8,
        ),
        Case(
            "distinct downscaled regions x,y,6000,4800/{900..1100},",
            jpeg,
            regions(jpeg, w, h, smoke),
            conns=8,
            timeout="30s",
            warmup=False,
            goal=1.8,
        ),
        Case(
            "distinct tiles, JPEG2000", jp2, tiles(jp2, w, h, [1]), conns=8, timeout="30s", goal=3
        ),
        Case(
            "replayed viewer session (Mirador)", jpeg, viewer_session(jpeg, w, h), conns=16, goal=5
        ),
    ]


# -- servers -----------------------------------------------------------------------------------


def wait_http(
    url: str, seconds: float = 30, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers 2xx; fail at once if ``proc`` (the server) has exited, and say
    what the last attempt got (a 503 body names the reason, e.g. the store not answering)."""
    deadline = time.monotonic() + seconds
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=10).read()
            return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.read()[:300]!r}"
        except Exception as exc:  # refused while starting, or a time-out
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 2xx in {seconds:.0f} s (last: {last})")


def port_busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_iiifsrv(
    images: Path | str, port: int, workers: int, extra_env: dict[str, str], data: Path | None = None
) -> subprocess.Popen[bytes]:
    if port_busy(port):
        raise SystemExit(f"[bench] port {port} is already in use: stop that server or pass --port")
    exe = shutil.which("iiifsrv") or str(ROOT / ".venv" / "bin" / "iiifsrv")
    env = {**os.environ, "IIIFSRV_LOG_LEVEL": "warning", **extra_env}
    data = data or Path(images).parent / "iiifsrv-data"
    data.mkdir(parents=True, exist_ok=True)
    log_path = data.parent / f"iiifsrv-{port}.log"  # warnings and errors; read on failure
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "--images",
            str(images),
            "--data",
            str(data),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    log.close()  # the child holds its own copy
    try:
        wait_http(f"http://127.0.0.1:{port}/health", seconds=90, proc=proc)
    except RuntimeError as exc:
        stop_iiifsrv(proc)  # a server that never answered is not left running
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{exc}\n[bench] the last lines of {log_path}:\n{tail}") from None
    return proc


def stop_iiifsrv(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def peer_run_dir(images: Path) -> Path:
    """The peer's PID files, logs and lighttpd.conf: beside this bench's images, so two benches
    with their own images and ports never stop each other's peer."""
    return images.parent / "peer-run"


def peer(action: str, images: Path, port: int, cache: bool = True) -> None:
    """``cache=False``: iipsrv's tile cache off too (``CACHE_MB=0``), for first views."""
    env = {
        **os.environ,
        "IMAGES": str(images),
        "HTTP_PORT": str(port),
        "FCGI_PORT0": str(port + 1000),
        "RUN": str(peer_run_dir(images)),
        "NPROCS": "2",
        "CACHE_MB": "10" if cache else "0",
    }
    run(["bash", str(PEERS / "setup-iipsrv.sh"), action], env=env, stdout=subprocess.DEVNULL)


def iiifsrv_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
    ).stdout
    children = [int(p) for p in out.split()]
    return children or [proc.pid]


def iipsrv_pids(images: Path) -> list[int]:
    return [int(p.read_text()) for p in peer_run_dir(images).glob("iipsrv-*.pid")]


def memory(pids: list[int]) -> tuple[int, int]:
    """(sum of VmRSS, largest VmHWM) in MB."""
    rss = hwm = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+)", status, re.M))
        rss += int(values.get("VmRSS", 0))
        hwm = max(hwm, int(values.get("VmHWM", 0)))
    return rss // 1024, hwm // 1024


# -- wrk ---------------------------------------------------------------------------------------


def wrk(
    base: str, paths_file: Path, case: Case, duration: str, warmup: str, script: Path = WALK
) -> Result:
    def once(seconds: str) -> str:
        cmd = [
            "wrk",
            "-t2",
            f"-c{case.conns}",
            f"-d{seconds}",
            "--timeout",
            case.timeout,
            "--latency",
            "-s",
            str(script),
            base,
            "--",
            str(paths_file),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    if case.warmup and warmup != "0":
        once(warmup)
    out = once(duration)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    kv = dict(item.split("=", 1) for item in line.split()[1:])
    return Result(
        float(kv["rps"]),
        float(kv["p50_ms"]),
        float(kv["p99_ms"]),
        int(kv["non2xx"]),
        int(kv["socket_errors"]),
        int(kv["requests"]),
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--smoke", action="store_true", help="tiny image, 1-second cases")
    ap.add_argument("--duration", default="20s", help="measured wrk time per case and server")
    ap.add_argument("--warmup", default="3s", help="unmeasured wrk time before each measurement")
    ap.add_argument("--workers", type=int, default=2, help="iiifsrv workers (2 = the cores here)")
    ap.add_argument("--port", type=int, default=8182)
    ap.add_argument("--peer-port", type=int, default=8090)
    ap.add_argument(
        "--images",
        help="where the test images are made and kept (default /tmp/iiifbench/images, "
        "/tmp/iiifbench-smoke/images with --smoke); the peer's run files go beside them",
    )
    ap.add_argument("--only", help="run only cases whose name contains this text")
    ap.add_argument("--no-peer", action="store_true", help="measure iiifsrv alone")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="measure 1..N replicas (--workers 1 each) behind HAProxy and Varnish instead",
    )
    ap.add_argument(
        "--no-cache",
        action="store_true",
        help="first views: iiifsrv's response caches off (cache_bytes=0) and the peer's tile "
        "cache off (CACHE_MB=0): passthrough and renders only",
    )
    ap.add_argument(
        "--s3",
        action="store_true",
        help="the images from a local OpenStack Swift (s3api) beside the same images on disk, "
        "and the raw ranged-GET rate of that Swift (instead of the peer; see loadtests/s3bench.py)",
    )
    args = ap.parse_args()
    if args.smoke:
        args.duration, args.warmup = "1s", "0"
    args.images = args.images or f"/tmp/iiifbench{'-smoke' if args.smoke else ''}/images"
    images = Path(args.images)
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install wrk (scripts/setup --test installs it)")
        return 2
    if args.replicas:  # the small pyramid: this measures the topology, not decoding
        if not args.smoke:
            images = images.parent.parent / "iiifbench-replicas" / "images"
        w, h = make_images(images, True)
        return bench_replicas(images, w, h, args)
    w, h = make_images(images, args.smoke)
    if args.s3:
        import s3bench

        return s3bench.run(args, w, h)
    with_peer = not args.no_peer
    if with_peer and not IIPSRV.exists():
        log("installing the peer (Debian iipimage-server, lighttpd) with setup-iipsrv.sh install")
        run(["bash", str(PEERS / "setup-iipsrv.sh"), "install"], stdout=subprocess.DEVNULL)
    lists = images.parent / "lists"
    lists.mkdir(exist_ok=True)
    ours = start_iiifsrv(
        images, args.port, args.workers, {"IIIFSRV_CACHE_BYTES": "0"} if args.no_cache else {}
    )
    if with_peer:
        peer("stop", images, args.peer_port)
        peer("start", images, args.peer_port, cache=not args.no_cache)
    rows = []
    try:
        for index, case in enumerate(cases(w, h, args.smoke)):
            if args.only and args.only not in case.name:
                continue
            ours_file = lists / f"case{index}-iiifsrv.txt"
            ours_file.write_text("".join(f"/iiif/3/{p}\n" for p in case.paths))
            peer_file = lists / f"case{index}-iipsrv.txt"
            peer_file.write_text("".join(f"/iiif/{p}\n" for p in case.paths))
            order = ["ours", "peer"] if index % 2 == 0 else ["peer", "ours"]
            results: dict[str, Result] = {}
            for who in order:
                if who == "peer" and not with_peer:
                    continue
                if who == "ours":
                    base, file = f"http://127.0.0.1:{args.port}", ours_file
                else:
                    base, file = f"http://127.0.0.1:{args.peer_port}", peer_file
                results[who] = wrk(base, file, case, args.duration, args.warmup)
            rss, hwm = memory(iiifsrv_pids(ours))
            peer_rss = memory(iipsrv_pids(images))[0] if with_peer else 0
            rows.append((case, results, rss, hwm, peer_rss))
            r = results["ours"]
            ratio = (
                f"{r.rps / results['peer'].rps:.1f}x"
                if "peer" in results and results["peer"].rps
                else "-"
            )
            log(f"{case.name}: iiifsrv {r.rps:.0f}/s (p99 {r.p99:.1f} ms) ratio {ratio}")
    finally:
        stop_iiifsrv(ours)
        if with_peer:
            peer("stop", images, args.peer_port)
    print_table(rows, args, w, h)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "case": c.name,
                        "goal": c.goal,
                        **{who: vars(res) for who, res in results.items()},
                        "iiifsrv_rss_mb": rss,
                        "iiifsrv_peak_worker_mb": hwm,
                        "iipsrv_rss_mb": prss,
                    }
                    for c, results, rss, hwm, prss in rows
                ],
                indent=2,
            )
        )
    bad = [c.name for c, results, *_ in rows if results["ours"].non2xx or results["ours"].errors]
    if bad:
        log(f"non-2xx responses or socket errors from iiifsrv in: {bad}")
        return 1
    return 0


def bench_replicas(images: Path, w: int, h: int, args: argparse.Namespace) -> int:
    """A viewer session's tiles through HAProxy over 1..N replicas, then the same through Varnish
    in front of that HAProxy (every request a cache hit after the warm-up)."""
    import replicas

    case = Case("viewer session", "bench_jpeg.tif", viewer_session("bench_jpeg.tif", w, h), 16)

    def measure(base: str, listing: Path) -> Result:
        result = wrk(base, listing, case, args.duration, args.warmup, replicas.WALK)
        log(f"{base}: {result.rps:.0f}/s p99 {result.p99:.1f} ms")
        return result

    counts = list(range(1, args.replicas + 1))
    rows = replicas.run(images, case.paths, counts, measure)
    print(
        f"\n{len(case.paths)} paths of a viewer session on a {w}x{h} JPEG pyramid, wrk -t2 "
        f"-c{case.conns}, {args.duration} per cell after {args.warmup} warm-up, "
        f"{os.cpu_count()} cores; iiifsrv --workers 1 per replica\n"
    )
    print("| replicas | HAProxy req/s | p50 / p99 ms | Varnish in front req/s | p50 / p99 ms "
          "| failed | load average after |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    failed = 0
    for n, hp, vn, load in rows:
        bad = hp.non2xx + hp.errors + vn.non2xx + vn.errors
        failed += bad
        print(f"| {n} | {hp.rps:.0f} | {hp.p50:.1f} / {hp.p99:.1f} | {vn.rps:.0f} | "
              f"{vn.p50:.1f} / {vn.p99:.1f} | {bad} | {load} |")  # fmt: skip
    return 1 if failed else 0


def print_table(rows: list, args: argparse.Namespace, w: int, h: int) -> None:  # type: ignore[type-arg]
    cache = "caches OFF" if args.no_cache else "caches on (default 96 MiB per worker)"
    peer_cache = "tile cache OFF" if args.no_cache else "tile cache 10 MB"
    print(
        f"\nimage {w}x{h}, wrk -t2, {args.duration} per case after {args.warmup} warm-up, "
        f"iiifsrv --workers {args.workers} ({cache}), iipsrv 2 processes behind lighttpd "
        f"({peer_cache}), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    print(
        "| case | iiifsrv req/s | iipsrv req/s | ratio | goal | iiifsrv p50 / p99 ms | iipsrv p50 / p99 ms | iiifsrv non-2xx | iiifsrv RSS (peak worker) MB | iipsrv RSS MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, results, rss, hwm, prss in rows:
        o = results["ours"]
        p = results.get("peer")
        ratio = f"{o.rps / p.rps:.2f}x" if p and p.rps else "-"
        peer_cols = f"{p.rps:.0f} " if p else "- "
        peer_lat = f"{p.p50:.1f} / {p.p99:.1f}" if p else "-"
        print(
            f"| {case.name} | {o.rps:.0f} | {peer_cols}| {ratio} | {case.goal:g}x | {o.p50:.1f} / {o.p99:.1f} | "
            f"{peer_lat} | {o.non2xx + o.errors} | {rss} ({hwm}) | {prss} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
