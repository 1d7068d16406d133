"""Generate the sample collection (never committed): a large JPEG pyramid, a 16-bit deflate
pyramid, a JPEG2000, a flat JPEG, a printed page (for OCR), the IIIF validator's test image, a
short WAV tone and a multispectral object.

Blocking; imports pyvips. Files are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import struct
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

log = logging.getLogger("iiifsrv.samples")

VALIDATOR_ID = "67352ccc-d1b0-11e1-89ae-279075081939"


def _find_conformance() -> Path | None:
    """The shared conformance folder beside the checkout, if there is one."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "conformance", here / "shared" / "conformance"):
        if (candidate / f"{VALIDATOR_ID}.png").is_file():
            return candidate
    return None


def landscape(width: int, height: int, *, labels: bool = True) -> pyvips.Image:
    """A recognisable synthetic scene: smooth colour fields, a 1000-px grid, cell labels."""
    cell = max(64, width // 6)
    r = pyvips.Image.perlin(width, height, cell_size=cell, seed=1)
    g = pyvips.Image.perlin(width, height, cell_size=max(32, cell // 2), seed=2)
    b = pyvips.Image.perlin(width, height, cell_size=max(16, cell // 4), seed=3)
    xyz = pyvips.Image.xyz(width, height)
    gx = (xyz[0] / max(1, width)) * 90
    gy = (xyz[1] / max(1, height)) * 90
    rgb = (r * 180 + 110 + gx).bandjoin([g * 180 + 110 + gy, b * 180 + 120])
    step = 1000 if width >= 4000 else max(100, width // 10)
    grid = ((xyz[0] % step) < max(2, step // 250)) | ((xyz[1] % step) < max(2, step // 250))
    rgb = grid.ifthenelse([30, 30, 40], rgb)
    if labels:
        mask = pyvips.Image.black(width, height)
        dpi = 300 if step >= 1000 else 72
        for y in range(0, height, step):
            for x in range(0, width, step):
                text = pyvips.Image.text(f"{x // step},{y // step}", dpi=dpi, font="sans bold")
                if x + 20 + text.width < width and y + 20 + text.height < height:
                    mask = mask.insert(text, x + 20, y + 20)
        rgb = (mask > 128).ifthenelse([255, 255, 255], rgb)
    return rgb.cast("uchar").copy(interpretation="srgb")


# The printed page: Lincoln's Gettysburg Address (1863, public domain), set in DejaVu Serif
# (Debian's fonts-dejavu-core) so that `iiifsrv enrich ocr` has a text to read.
PRINTED_ID = "printed-page"
PRINTED_TEXT = (
    "Four score and seven years ago our fathers brought forth on",
    "this continent, a new nation, conceived in Liberty, and",
    "dedicated to the proposition that all men are created equal.",
    "Now we are engaged in a great civil war, testing whether that",
    "nation, or any nation so conceived and so dedicated, can long",
    "endure. We are met on a great battle-field of that war. We have",
    "come to dedicate a portion of that field, as a final resting",
    "place for those who here gave their lives that that nation",
    "might live. It is altogether fitting and proper that we",
    "should do this.",
)
FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def printed_page(
    lines: tuple[str, ...] = PRINTED_TEXT, *, size: int = 40, margin: int = 120
) -> tuple[pyvips.Image, list[tuple[int, int, int, int]]]:
    """Black text on a paper-white page, and the x,y,w,h box each line was drawn in."""
    font = f"DejaVu Serif {size}"
    options = {"fontfile": FONT_FILE} if os.path.isfile(FONT_FILE) else {}
    glyphs = [pyvips.Image.text(text, font=font, dpi=72, **options) for text in lines]
    step = int(size * 1.9)
    width = max(g.width for g in glyphs) + 2 * margin
    height = margin * 2 + step * len(lines)
    ink = pyvips.Image.black(width, height)
    boxes = []
    for n, glyph in enumerate(glyphs):
        x, y = margin, margin + n * step
        ink = ink.insert(glyph, x, y)
        boxes.append((x, y, glyph.width, glyph.height))
    paper = 250 - (ink.cast("float") * (230 / 255))
    return paper.cast("uchar").copy(interpretation="b-w"), boxes


def _atomic(path: Path, write: Callable[[str], object]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    write(str(tmp))
    os.replace(tmp, path)


def _write_tone(target: str, seconds: float = 2.0, rate: int = 16000) -> None:
    """A 440 Hz mono 16-bit WAV, written with the standard library (no codec needed)."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(target, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)


def ensure(root: Path, *, small: bool = False, data: Path | None = None) -> list[Path]:
    """Create whatever sample is missing under ``root``; return the files created.

    With ``data``, also the multispectral sample object, recorded in ``data``'s catalogue.
    """
    root.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    scale = 10 if small else 1

    def need(name: str) -> Path | None:
        path = root / name
        return None if path.exists() else path

    if path := need("large.tif"):
        t0 = time.time()
        w, h = 20000 // scale, 15000 // scale
        log.info("writing %s (%dx%d JPEG pyramid, about a minute at full size)", path, w, h)
        image = landscape(w, h)
        _atomic(
            path,
            lambda tmp: image.tiffsave(
                tmp,
                tile=True,
                pyramid=True,
                compression="jpeg",
                Q=85,
                tile_width=256,
                tile_height=256,
                bigtiff=not small,
            ),
        )
        made.append(path)
        log.info("wrote %s in %.0f s", path, time.time() - t0)
    if path := need("sixteen-bit.tif"):
        w, h = 4000 // scale, 3000 // scale
        image = (
            (landscape(w, h, labels=not small).cast("ushort") * 257)
            .cast("ushort")
            .copy(interpretation="rgb16")
        )
        _atomic(
            path,
            lambda tmp: image.tiffsave(
                tmp, tile=True, pyramid=True, compression="deflate", tile_width=256, tile_height=256
            ),
        )
        made.append(path)
    if path := need("jpeg2000.jp2"):
        w, h = 4000 // scale, 3000 // scale
        image = landscape(w, h, labels=not small)
        _atomic(path, lambda tmp: image.jp2ksave(tmp, tile_width=256, tile_height=256, Q=45))
        made.append(path)
    if path := need("flat.jpg"):
        w, h = 3000 // scale, 2000 // scale
        image = landscape(w, h, labels=not small)
        _atomic(path, lambda tmp: image.jpegsave(tmp, Q=88))
        made.append(path)
    if path := need(f"{PRINTED_ID}.tif"):
        page, _boxes = printed_page()
        _atomic(path, lambda tmp: page.tiffsave(tmp, tile=True, pyramid=True,
                                                compression="deflate"))  # fmt: skip
        made.append(path)
    if path := need("tone.wav"):
        _atomic(path, _write_tone)  # A/V sample for /media and audio manifests
        made.append(path)
    if path := need(f"{VALIDATOR_ID}.png"):
        source = _find_conformance()
        if source is not None:
            _atomic(path, lambda tmp: shutil.copyfile(source / f"{VALIDATOR_ID}.png", tmp))
            made.append(path)
        else:
            log.warning("validator test image not found (../shared/conformance); skipped")
    if data is not None:  # the multispectral sample (ingest branch)
        from iiifsrv.ingest import sample

        made.extend(sample.ensure(root, data, small=small))
        catalogue_images(root, data)
    return made


# The plain samples as catalogue objects, so each has a manifest (and a viewer link on "/").
PLAIN_OBJECTS = (
    ("large", "large.tif", "Large test image: JPEG pyramid (BigTIFF), 256x256 tiles"),
    ("sixteen-bit", "sixteen-bit.tif", "16-bit RGB pyramidal TIFF (deflate)"),
    ("jpeg2000", "jpeg2000.jp2", "JPEG2000, 256x256 tiles"),
    ("flat", "flat.jpg", "Plain JPEG (no pyramid)"),
    (PRINTED_ID, f"{PRINTED_ID}.tif", "Printed page: the Gettysburg Address (OCR sample)"),
)


def read_printed_page(settings: Any) -> str:
    """OCR the printed page once (``enrich ocr``), when tesseract is installed: its lines are
    then searchable and shown in the viewers right after ``scripts/serve``. Returns a note."""
    from iiifsrv.agents import ocr, tesseract

    try:
        tesseract.check_languages("eng")
    except tesseract.EngineError as exc:
        return f"printed page not read: {exc}"
    quiet = io.StringIO()
    results = ocr.run(settings, [PRINTED_ID], lang="eng", jobs=1, agent=settings.ocr_agent,
                      out=quiet, err=quiet)  # fmt: skip
    return "; ".join(f"OCR of {r.object_id}: {r.status} {r.message}".strip() for r in results)


def catalogue_images(root: Path, data: Path) -> None:
    """Record the plain sample images (and the WAV tone) in ``data``'s catalogue, once."""
    from iiifsrv.catalogue import Catalogue, CatalogueObject
    from iiifsrv.ingest.run import CATALOGUE_NAME

    catalogue = Catalogue(data / CATALOGUE_NAME)
    meta = {"creator": "iiifsrv sample generator"}
    rights = "http://creativecommons.org/publicdomain/zero/1.0/"
    for object_id, name, label in PLAIN_OBJECTS:
        path = root / name
        if not path.is_file() or catalogue.get(object_id) is not None:
            continue
        header = pyvips.Image.new_from_file(str(path))
        catalogue.upsert(
            CatalogueObject(
                id=object_id,
                label=f"{label}, {header.width}x{header.height}",
                kind="image",
                metadata=meta,
                rights=rights,
                source=name,
                image=object_id,
                width=header.width,
                height=header.height,
            )
        )
    if (root / "tone.wav").is_file() and catalogue.get("tone") is None:
        catalogue.upsert(
            CatalogueObject(
                id="tone",
                label="440 Hz tone (WAV)",
                kind="audio",
                metadata=meta,
                rights=rights,
                source="tone.wav",
                media="tone.wav",
            )
        )
