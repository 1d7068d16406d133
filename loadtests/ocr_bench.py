"""OCR throughput of ``iiifsrv enrich ocr``: pages per minute with --jobs 1 and --jobs 2.

Generates N printed A4 pages at 300 dpi (2480x3508, 40 lines of known text, about 72 characters
each, set in DejaVu Serif at 40 px), ingests them with ``iiifsrv ingest`` into a
private image root and catalogue, then times the real command, end to end (process start,
reading each page, tesseract, writing the lines, ALTO and hOCR, rebuilding the manifests),
once per --jobs value, each on its own copy of the catalogue. Prints the wall time, the pages
per minute, the lines found per page and the load average before and after each run (the
figures are only as good as the machine is quiet), and the CPU time the command and its
processes (tesseract included) spent per page: that one barely depends on other load, and
60 / (CPU s per page) x cores is what idle cores would do. Local files only; nothing is served.

    .venv/bin/python loadtests/ocr_bench.py [--pages 20] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iiifsrv import samples

WIDTH, HEIGHT = 2480, 3508  # A4 at 300 dpi
LINES_PER_PAGE = 40
FONT_SIZE = 40
LINE_CHARS = 72
WORDS = " ".join(samples.PRINTED_TEXT).replace(".", "").replace(",", "").split()


def page_text(rng: random.Random) -> tuple[str, ...]:
    """40 lines of about 72 characters, words of the Gettysburg Address in a random order."""
    lines = []
    for _ in range(LINES_PER_PAGE):
        words: list[str] = []
        while len(" ".join(words)) < LINE_CHARS - 4:
            words.append(rng.choice(WORDS))
        lines.append(" ".join(words))
    return tuple(lines)


def make_pages(folder: Path, count: int) -> None:
    rng = random.Random(15)
    folder.mkdir(parents=True)
    for n in range(count):
        ink, _ = samples.printed_page(page_text(rng), size=FONT_SIZE, margin=150)
        assert ink.width <= WIDTH and ink.height <= HEIGHT, (ink.width, ink.height)
        page = ink.embed(0, 0, WIDTH, HEIGHT, extend="background", background=[250])
        page.pngsave(str(folder / f"page-{n + 1:03d}.png"), compression=1)


def iiifsrv(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "iiifsrv", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if shutil.which("tesseract") is None:
        raise SystemExit("needs Debian's tesseract-ocr (scripts/setup installs it)")
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
    print(f"{version.stdout.splitlines()[0]}; {os.cpu_count()} cores; {args.pages} pages "
          f"{WIDTH}x{HEIGHT}, {LINES_PER_PAGE} lines each")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="iiifsrv-ocr-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_pages(root / "scans", args.pages)
        images, ingested = root / "images", root / "data"
        iiifsrv("ingest", str(root / "scans"), "--images", str(images), "--data", str(ingested))
        print(f"generated and ingested in {time.perf_counter() - t0:.0f} s")
        for jobs in args.jobs:
            data = root / f"data-jobs{jobs}"
            shutil.copytree(ingested, data)
            before = load()
            cpu0 = children_cpu()
            t0 = time.perf_counter()
            done = iiifsrv("enrich", "ocr", "--all", "--jobs", str(jobs),
                           "--images", str(images), "--data", str(data))  # fmt: skip
            took = time.perf_counter() - t0
            cpu = (children_cpu() - cpu0) / args.pages
            found = [int(n) for n in re.findall(r": done \((\d+) lines\)", done.stdout)]
            if len(found) != args.pages:
                raise SystemExit(f"{len(found)} of {args.pages} pages read:\n{done.stdout}")
            print(
                f"--jobs {jobs}: {took:.1f} s, {args.pages / took * 60:.1f} pages/min "
                f"({took / args.pages:.2f} s/page); lines per page: median "
                f"{statistics.median(found):.0f}, min {min(found)}; CPU {cpu:.2f} s/page "
                f"(idle-core estimate {60 / cpu * min(jobs, os.cpu_count() or 1):.0f} pages/min); "
                f"load average before {before}, after {load()}"
            )


if __name__ == "__main__":
    main()
