"""The sample multispectral object "palimpsest": a real photograph as the visible bands, plus
ultraviolet and infrared bands that show what the visible bands hide. Ingested like any band set.

Blocking; imports pyvips and ingest.{run,profiles}. The photograph is Grace Hopper's portrait
(U.S. Navy, public domain) that matplotlib ships; without matplotlib a synthetic scene is used.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
from pathlib import Path

import pyvips

from iiifsrv.ingest import profiles
from iiifsrv.ingest.run import CATALOGUE_NAME, run

log = logging.getLogger("iiifsrv.samples")

OBJECT_ID = "palimpsest"
IR_TEXT = "COBOL"  # the "underdrawing": carbon ink under the paint, dark only in infrared
UV_TEXT = "BUG 1947"  # a "later stamp" that fluoresces: bright only in ultraviolet
PHOTO_RIGHTS = "http://creativecommons.org/publicdomain/mark/1.0/"
BANDS = (
    ("UV365", 365.0, "365 nm ultraviolet fluorescence"),
    ("B450", 450.0, "450 nm blue"),
    ("G550", 550.0, "550 nm green"),
    ("R650", 650.0, "650 nm red"),
    ("IR850", 850.0, "850 nm infrared"),
    ("IR940", 940.0, "940 nm infrared"),
)


def photograph() -> tuple[pyvips.Image, str]:
    """A real photograph available offline, and a line saying where it comes from."""
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if path.is_file():
            image = pyvips.Image.new_from_file(str(path))
            return image.colourspace("srgb").extract_band(0, n=3), (
                "Grace Hopper, photograph (U.S. Navy, public domain), from matplotlib's sample data"
            )
    from iiifsrv.samples import landscape

    log.warning("matplotlib is not installed: the multispectral sample uses a synthetic scene")
    return landscape(512, 600, labels=False), "synthetic scene (install matplotlib for a photo)"


def _text_mask(text: str, width: int, height: int, *, top: float) -> pyvips.Image:
    """``text`` as a 0-1 mask, about 70% of the image wide, its top at ``top`` of the height."""
    glyphs = pyvips.Image.text(text, font="sans bold", width=int(width * 0.7), dpi=600)
    scale = min(width * 0.7 / glyphs.width, height * 0.22 / glyphs.height)
    glyphs = glyphs.resize(scale)
    left = (width - glyphs.width) // 2
    mask = pyvips.Image.black(width, height).insert(glyphs, left, int(height * top))
    return mask / 255.0


def bands(scale: int = 1) -> tuple[dict[str, pyvips.Image], pyvips.Image, pyvips.Image, str]:
    """The band images (8-bit grey), the IR and UV text masks (0-1), and the photo's credit."""
    photo, credit = photograph()
    if scale != 1:
        photo = photo.resize(scale, kernel="lanczos3")
    width, height = photo.width, photo.height
    lum = photo.colourspace("b-w").cast("float")
    ir_mask = _text_mask(IR_TEXT, width, height, top=0.62)
    uv_mask = _text_mask(UV_TEXT, width, height, top=0.08)
    # Visible light: the photograph itself; the hidden layers do not show.
    out = {
        "B450": photo.extract_band(2),
        "G550": photo.extract_band(1),
        "R650": photo.extract_band(0),
        # Infrared: paint turns translucent (lighter, flatter) and the carbon text shows dark.
        "IR850": lum * 0.55 + 95 - ir_mask * 70,
        "IR940": lum * 0.35 + 140 - ir_mask * 135,
        # Ultraviolet: dim reflectance, and the stamp fluoresces brightly.
        "UV365": lum * 0.3 + 20 + uv_mask * 150,
    }
    grey = {name: image.cast("uchar").copy(interpretation="b-w") for name, image in out.items()}
    return grey, ir_mask, uv_mask, credit


def ensure(images: Path, data: Path, *, small: bool = False) -> list[Path]:
    """Generate, ingest and catalogue the sample unless it is already there; return new files."""
    catalogue = data / CATALOGUE_NAME
    targets = [images / OBJECT_ID / f"{name}.tif" for name, _, _ in BANDS]
    if catalogue.is_file() and all(t.is_file() for t in targets):
        from iiifsrv.catalogue import Catalogue

        if Catalogue(catalogue).get(OBJECT_ID) is not None:
            return []
    masters = data / "sample-masters" / OBJECT_ID
    masters.mkdir(parents=True, exist_ok=True)
    images_by_name, _, _, credit = bands(1 if small else 3)
    for name, image in images_by_name.items():
        image.tiffsave(str(masters / f"{name}.tif"), compression="deflate")
    sidecar = {
        "label": "Palimpsest (sample): hidden text in infrared, a stamp in ultraviolet",
        "rights": PHOTO_RIGHTS,
        "metadata": {
            "title": "Multispectral sample",
            "creator": "iiifsrv sample generator",
            "description": (
                f"Visible bands: {credit}. The 850/940 nm infrared bands reveal the word "
                f"{IR_TEXT!r} under the paint; the 365 nm ultraviolet band shows a stamp "
                f"{UV_TEXT!r}. Neither is visible in the blue, green or red bands."
            ),
        },
        "bands": [
            {"file": f"{name}.tif", "wavelength_nm": nm, "name": name, "label": label}
            for name, nm, label in BANDS
        ],
    }
    (masters / "bands.json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    report = io.StringIO()
    outcomes = run(
        [str(masters)],
        images=images,
        data=data,
        profile=profiles.load("default"),
        object_id=OBJECT_ID,
        out=report,
        err=io.StringIO(),
    )
    if any(o.status == "failed" for o in outcomes):
        log.error("the multispectral sample failed: %s", report.getvalue().strip())
        return []
    return targets
