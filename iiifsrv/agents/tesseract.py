"""The OCR engine: Debian's ``tesseract`` run once per page (one thread: OMP_THREAD_LIMIT=1),
writing ALTO, hOCR and TSV in one pass; the TSV parsed into lines with word confidences.

Blocking (subprocess, files). Imports only the standard library; ``parse_tsv`` is pure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENGINE = "tesseract"
HOMEPAGE = "https://github.com/tesseract-ocr/tesseract"
TIMEOUT_S = 600
_LANG = re.compile(r"^[A-Za-z_]+(?:\+[A-Za-z_]+)*$")


class EngineError(Exception):
    """tesseract is missing, lacks a language, or failed on a page (a one-line reason)."""


@dataclass(frozen=True)
class Word:
    text: str
    box: tuple[int, int, int, int]  # x, y, w, h in the page image's pixels
    confidence: float  # 0-1


@dataclass(frozen=True)
class Line:
    box: tuple[int, int, int, int]
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def confidence(self) -> float:
        return round(sum(w.confidence for w in self.words) / len(self.words), 3)


@dataclass(frozen=True)
class Page:
    lines: tuple[Line, ...]
    alto: bytes
    hocr: bytes


def executable() -> str:
    found = shutil.which(ENGINE)
    if found is None:
        raise EngineError("tesseract is not installed (apt-get install tesseract-ocr)")
    return found


def version() -> str:
    """The engine's version, e.g. "5.3.0"."""
    out = subprocess.run([executable(), "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).split("\n", 1)[0].strip()
    return first.split()[-1] if first else "unknown"


def languages() -> set[str]:
    out = subprocess.run(
        [executable(), "--list-langs"], capture_output=True, text=True, check=False
    )
    return {ln.strip() for ln in out.stdout.splitlines()[1:] if ln.strip()}


def check_languages(lang: str) -> None:
    if not _LANG.match(lang):
        raise EngineError(f"--lang {lang!r} is not like eng or eng+lat")
    missing = [name for name in lang.split("+") if name not in languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{m}" for m in missing)
        raise EngineError(f"tesseract has no {'+'.join(missing)} (apt-get install {packages})")


def parse_tsv(text: str, scale: float = 1.0) -> tuple[Line, ...]:
    """Lines (TSV level 4) and their words (level 5, with ``conf`` 0-100), boxes divided by
    ``scale`` (the factor the page was reduced by before OCR) and rounded to integers. Lines
    without a recognised word are dropped."""
    words: dict[tuple[str, str, str, str], list[Word]] = {}
    boxes: dict[tuple[str, str, str, str], tuple[int, int, int, int]] = {}

    def box(cells: list[str]) -> tuple[int, int, int, int]:
        x, y, w, h = (int(c) for c in cells[6:10])
        return (round(x / scale), round(y / scale), max(1, round(w / scale)),
                max(1, round(h / scale)))  # fmt: skip

    for row in text.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or not cells[0].isdigit():
            continue
        key = (cells[1], cells[2], cells[3], cells[4])
        if cells[0] == "4":
            boxes[key] = box(cells)
        elif cells[0] == "5" and cells[11].strip():
            conf = max(0.0, min(100.0, float(cells[10]))) / 100
            words.setdefault(key, []).append(Word(cells[11].strip(), box(cells), round(conf, 3)))
    return tuple(Line(boxes[k], tuple(ws)) for k, ws in words.items() if k in boxes and ws)


def recognise(image: Path, lang: str, scale: float = 1.0) -> Page:
    """OCR of one page image (PNG): its lines, and the ALTO and hOCR files tesseract wrote."""
    out = image.with_suffix("")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [executable(), str(image), str(out), "-l", lang, "alto", "hocr", "tsv"],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(f"tesseract took longer than {TIMEOUT_S} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise EngineError(f"tesseract: {reason}")
    tsv = out.with_suffix(".tsv").read_text(encoding="utf-8")
    return Page(
        lines=parse_tsv(tsv, scale),
        alto=out.with_suffix(".xml").read_bytes(),
        hocr=out.with_suffix(".hocr").read_bytes(),
    )
