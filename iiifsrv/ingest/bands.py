"""Recognise multispectral capture sets and read their band list: a folder of band images or a
multi-page TIFF, with wavelengths from a ``bands.csv``/``bands.json`` sidecar or from file names.

Blocking I/O (directory listings, sidecars, TIFF page headers via tifffile); standard library,
tifffile and iiifsrv.catalogue only. Decodes no pixels.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tifffile

from iiifsrv.catalogue import Band, Composite
from iiifsrv.ingest.derive import IngestError

IMAGE_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".j2k", ".gif", ".webp"}
SIDECARS = ("bands.json", "bands.csv")
_WAVELENGTH = re.compile(r"(?:^|[^0-9.])(\d{3,4}(?:\.\d+)?)\s?nm(?![a-z])", re.IGNORECASE)
_BAND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
METADATA_KEYS = ("title", "creator", "date", "institution", "description")


@dataclass(frozen=True)
class BandSource:
    name: str
    wavelength_nm: float | None
    label: str
    path: str
    page: int | None = None  # 0-based page of a multi-page TIFF


@dataclass(frozen=True)
class BandSet:
    bands: tuple[BandSource, ...]
    files: tuple[str, ...]  # everything whose bytes define the object (bands and sidecar)
    label: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    rights: str = ""


def wavelength_in(text: str) -> float | None:
    m = _WAVELENGTH.search(text)
    return float(m.group(1)) if m else None


def _region(nm: float) -> tuple[str, str]:
    if nm < 400:
        return "UV", "ultraviolet"
    if nm < 500:
        return "B", "blue"
    if nm < 590:
        return "G", "green"
    if nm < 700:
        return "R", "red"
    return "IR", "infrared"


def _fmt(nm: float) -> str:
    return str(int(nm)) if float(nm).is_integer() else f"{nm:g}"


def default_name(nm: float | None, index: int) -> str:
    if nm is None:
        return f"band{index + 1:02d}"
    return _region(nm)[0] + _fmt(nm).replace(".", "_")


def default_label(nm: float | None, name: str) -> str:
    if nm is None:
        return name
    return f"{_fmt(nm)} nm {_region(nm)[1]}"


def check_band_name(name: str) -> str:
    if not _BAND_NAME.match(name) or name.startswith("composite") or name.lower() == "pca":
        raise IngestError(
            f"invalid band name {name!r}: use letters, digits, '_', '-', '.' (e.g. IR940)"
        )
    return name


def _number(value: Any, where: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip().removesuffix("nm").strip())
    except ValueError:
        raise IngestError(f"{where}: wavelength {value!r} is not a number") from None
    if not 100 <= number <= 20000:
        raise IngestError(f"{where}: wavelength {value!r} nm is out of range (100-20000)")
    return number


def _read_sidecar(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (file or page, wavelength_nm, name, label) and object fields from a sidecar."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"cannot read {path.name}: {exc}") from None
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path.name} is not valid JSON: {exc}") from None
        if isinstance(doc, list):
            doc = {"bands": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("bands"), list):
            raise IngestError(f'{path.name}: expected {{"bands": [...]}}')
        rows = [r for r in doc["bands"] if isinstance(r, dict)]
        if len(rows) != len(doc["bands"]):
            raise IngestError(f"{path.name}: every band must be an object")
        return rows, doc
    reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    columns = set(reader.fieldnames or ())
    if not ({"file", "page"} & {c.strip().lower() for c in columns}):
        raise IngestError(f"{path.name}: needs a header with a 'file' (or 'page') column")
    return rows, {}


def _object_fields(doc: dict[str, Any]) -> tuple[str, dict[str, str], str]:
    meta = doc.get("metadata") or {}
    metadata = {k: str(v) for k, v in meta.items() if k in METADATA_KEYS and v is not None}
    return str(doc.get("label") or ""), metadata, str(doc.get("rights") or "")


def _finish(bands: list[BandSource], files: list[str], doc: dict[str, Any], where: str) -> BandSet:
    if len(bands) < 2:
        raise IngestError(f"{where}: a multispectral set needs at least two bands")
    seen: dict[str, int] = {}
    named = []
    for b in sorted(bands, key=lambda b: (b.wavelength_nm is None, b.wavelength_nm or 0)):
        name = check_band_name(b.name)
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        seen.setdefault(name, 1)
        named.append(BandSource(name, b.wavelength_nm, b.label, b.path, b.page))
    label, metadata, rights = _object_fields(doc)
    return BandSet(tuple(named), tuple(files), label, metadata, rights)


def _sidecar_of(folder: Path, stem: str = "") -> Path | None:
    prefix = f"{stem}." if stem else ""
    for name in SIDECARS:
        candidate = folder / f"{prefix}{name}"
        if candidate.is_file():
            return candidate
    return None


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def is_band_folder(folder: Path) -> bool:
    """A folder is one multispectral object if it has a sidecar or every image names a wavelength.

    Raises IngestError for a folder that mixes band files with other images (ambiguous).
    """
    if _sidecar_of(folder):
        return True
    files = image_files(folder)
    with_nm = [p for p in files if wavelength_in(p.stem) is not None]
    if len(with_nm) >= 2 and len(with_nm) == len(files):
        return True
    if with_nm and len(with_nm) != len(files):
        others = ", ".join(p.name for p in files if p not in with_nm)[:120]
        raise IngestError(
            f"{folder.name}: some images name a wavelength (…_365nm) and others do not ({others}); "
            "add a bands.csv to say which files are bands"
        )
    return False


def folder_bands(folder: Path) -> BandSet:
    """The bands of a folder: from its sidecar if there is one, else from the file names."""
    sidecar = _sidecar_of(folder)
    bands: list[BandSource] = []
    files: list[str] = []
    doc: dict[str, Any] = {}
    if sidecar is not None:
        rows, doc = _read_sidecar(sidecar)
        files.append(str(sidecar))
        for i, row in enumerate(rows):
            where = f"{sidecar.name} row {i + 1}"
            name = str(row.get("file") or "")
            if not name:
                raise IngestError(f"{where}: no file given")
            path = folder / name
            if not path.is_file() or path.parent != folder:
                raise IngestError(f"{where}: no file {name!r} in {folder.name}")
            nm = _number(row.get("wavelength_nm", row.get("wavelength")), where)
            if nm is None:
                nm = wavelength_in(path.stem)
            band = str(row.get("name") or "") or default_name(nm, i)
            label = str(row.get("label") or "") or default_label(nm, band)
            bands.append(BandSource(band, nm, label, str(path)))
            files.append(str(path))
    else:
        for i, path in enumerate(image_files(folder)):
            nm = wavelength_in(path.stem)
            name = default_name(nm, i)
            bands.append(BandSource(name, nm, default_label(nm, name), str(path)))
            files.append(str(path))
    return _finish(bands, files, doc, folder.name)


def tiff_bands(path: Path) -> BandSet | None:
    """The bands of a multi-page TIFF band stack, or None if the TIFF is an ordinary image.

    A stack has two or more full-size single-channel pages (a pyramid's pages shrink instead).
    Wavelengths come from ``<stem>.bands.csv/json`` (rows by 1-based ``page``), else from each
    page's PageName or ImageDescription (``…365nm…``).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            pages = []
            texts = []
            for index in range(len(tif.pages)):
                page = tif.pages.get(index)  # full pages, not frames sharing a key page
                if not isinstance(page, tifffile.TiffPage):
                    return None
                pages.append((page.imagewidth, page.imagelength, page.samplesperpixel))
                tag = page.tags.get(285)  # PageName
                texts.append(str(tag.value) if tag else str(page.description or ""))
    except (tifffile.TiffFileError, ValueError, IndexError, OSError, AttributeError):
        return None  # not readable as a stack: the ordinary path reports the real problem
    if len(pages) < 2 or any(spp != 1 for _, _, spp in pages):
        return None
    first = pages[0][:2]
    if all(pages[i][0] < pages[i - 1][0] for i in range(1, len(pages))):
        return None  # a pyramid
    for i, (w, h, _) in enumerate(pages):
        if (w, h) != first:
            raise IngestError(
                f"{path.name}: page {i + 1} is {w}x{h} but page 1 is {first[0]}x{first[1]}; "
                "all bands must share the same dimensions"
            )
    sidecar = _sidecar_of(path.parent, path.stem)
    doc: dict[str, Any] = {}
    files = [str(path)]
    by_page: dict[int, dict[str, Any]] = {}
    if sidecar is not None:
        rows, doc = _read_sidecar(sidecar)
        files.append(str(sidecar))
        for i, row in enumerate(rows):
            try:
                page_no = int(str(row.get("page")))
            except ValueError:
                raise IngestError(f"{sidecar.name} row {i + 1}: 'page' must be 1-based") from None
            if not 1 <= page_no <= len(pages):
                raise IngestError(f"{sidecar.name} row {i + 1}: no page {page_no} in {path.name}")
            by_page[page_no - 1] = row
    bands = []
    for i, text in enumerate(texts):
        row = by_page.get(i, {})
        where = f"{path.name} page {i + 1}"
        nm = _number(row.get("wavelength_nm", row.get("wavelength")), where)
        if nm is None:
            nm = wavelength_in(text)
        name = str(row.get("name") or "") or default_name(nm, i)
        label = str(row.get("label") or "") or default_label(nm, name)
        bands.append(BandSource(name, nm, label, str(path), page=i))
    return _finish(bands, files, doc, path.name)


def _closest(bands: tuple[Band, ...], target: float, low: float, high: float) -> Band | None:
    inside = [b for b in bands if b.wavelength_nm is not None and low <= b.wavelength_nm < high]
    return min(inside, key=lambda b: abs((b.wavelength_nm or 0) - target), default=None)


def default_composites(bands: tuple[Band, ...], identifier: Any) -> tuple[Composite, ...]:
    """True colour (R, G, B) and false colour (IR→R, R→G, G→B) where the bands exist."""
    red = _closest(bands, 650, 590, 700)
    green = _closest(bands, 550, 500, 590)
    blue = _closest(bands, 450, 400, 500)
    infrared = max(
        (b for b in bands if b.wavelength_nm is not None and b.wavelength_nm >= 700),
        key=lambda b: b.wavelength_nm or 0,
        default=None,
    )
    out = []
    if red and green and blue:
        names = (red.name, green.name, blue.name)
        out.append(Composite("truecolor", f"True colour ({', '.join(names)})", identifier(names)))
    if infrared and red and green:
        names = (infrared.name, red.name, green.name)
        out.append(Composite("falsecolor", f"False colour ({', '.join(names)})", identifier(names)))
    return tuple(out)
