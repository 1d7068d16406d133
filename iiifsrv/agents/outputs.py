"""Where an agent's files live (``<data>/ocr/<object>/``), their public URLs, and the canvas
links (``seeAlso`` ALTO, ``rendering`` hOCR) a manifest gets for them.

Standard library only, plus a stat of the data directory (cheap, called when a manifest is built).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

OCR_DIR = "ocr"
OCR_PATH = "/ocr"
ALTO = "alto.xml"
HOCR = "hocr.html"
ALTO_PROFILE = "http://www.loc.gov/standards/alto/"
HOCR_PROFILE = "http://kba.github.io/hocr-spec/1.2/"
# What each served file is: media type.
FILES = {ALTO: "application/xml", HOCR: "text/vnd.hocr+html"}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def safe_object(object_id: str) -> bool:
    """Whether an object id can name a folder (no separators, no leading dot)."""
    return bool(_SAFE.match(object_id))


def ocr_folder(data: Path, object_id: str) -> Path:
    if not safe_object(object_id):
        raise ValueError(f"object id {object_id!r} cannot name an OCR folder")
    return data / OCR_DIR / object_id


def file_url(base: str, object_id: str, name: str) -> str:
    return f"{base}{OCR_PATH}/{quote(object_id, safe='')}/{name}"


def canvas_links(data: Path, base: str, object_id: str) -> dict[str, Any]:
    """``seeAlso`` (ALTO) and ``rendering`` (hOCR) of an object's canvas once it has OCR files."""
    if not safe_object(object_id):
        return {}
    folder = data / OCR_DIR / object_id
    out: dict[str, Any] = {}
    if (folder / ALTO).is_file():
        out["seeAlso"] = [
            {
                "id": file_url(base, object_id, ALTO),
                "type": "Dataset",
                "format": FILES[ALTO],
                "profile": ALTO_PROFILE,
                "label": {"en": ["ALTO XML (OCR)"]},
            }
        ]
    if (folder / HOCR).is_file():
        out["rendering"] = [
            {
                "id": file_url(base, object_id, HOCR),
                "type": "Text",
                "format": FILES[HOCR],
                "profile": HOCR_PROFILE,
                "label": {"en": ["hOCR (OCR)"]},
            }
        ]
    return out
