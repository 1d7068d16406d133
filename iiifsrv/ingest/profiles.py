"""Ingest profiles: the TOML files in the top-level ``codecs/`` folder, read into Profile objects.

Imports only the standard library. A profile names, per kind of image (8-bit, 16-bit, spectral
band), the derivative's container, compression and quality; plus the ICC policy and tile size.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

CODECS_DIR = Path(__file__).resolve().parent.parent.parent / "codecs"
KINDS = ("eight_bit", "sixteen_bit", "band")
TIFF_COMPRESSIONS = ("jpeg", "deflate", "zstd", "lzw", "none")


class ProfileError(ValueError):
    """A profile that cannot be found or read."""


@dataclass(frozen=True)
class Encoding:
    format: str  # "tiff", "jp2" or "htj2k" (High-Throughput JPEG2000 codestream, named .jp2)
    compression: str = "deflate"  # tiff only
    quality: int = 85
    lossless: bool = False  # jp2 only

    @property
    def is_lossless(self) -> bool:
        if self.format in ("jp2", "htj2k"):
            return self.lossless
        return self.compression != "jpeg"

    @property
    def extension(self) -> str:
        return ".jp2" if self.format in ("jp2", "htj2k") else ".tif"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    icc: str  # "keep" | "srgb"
    tile: int
    eight_bit: Encoding
    sixteen_bit: Encoding
    band: Encoding
    digest: str  # hash of the file's bytes: a changed profile means a changed derivative


def _encoding(name: str, kind: str, table: object) -> Encoding:
    if not isinstance(table, dict):
        raise ProfileError(f"profile {name!r}: [{kind}] is missing")
    fmt = str(table.get("format", "tiff"))
    if fmt not in ("tiff", "jp2", "htj2k"):
        raise ProfileError(f"profile {name!r}: [{kind}] format must be 'tiff', 'jp2' or 'htj2k'")
    compression = str(table.get("compression", "deflate"))
    if fmt == "tiff" and compression not in TIFF_COMPRESSIONS:
        raise ProfileError(
            f"profile {name!r}: [{kind}] compression must be one of {', '.join(TIFF_COMPRESSIONS)}"
        )
    quality = table.get("quality", 85)
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ProfileError(f"profile {name!r}: [{kind}] quality must be an integer 1-100")
    return Encoding(fmt, compression, quality, bool(table.get("lossless", False)))


def available(folder: Path = CODECS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def load(name: str, folder: Path = CODECS_DIR) -> Profile:
    """A profile by name (``codecs/<name>.toml``) or by the path of a TOML file."""
    path = Path(name)
    if path.suffix != ".toml":
        path = folder / f"{name}.toml"
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        known = ", ".join(available(folder)) or "none"
        raise ProfileError(f"unknown profile {name!r} (known: {known})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from None
    icc = str(data.get("icc", "keep"))
    if icc not in ("keep", "srgb"):
        raise ProfileError(f"profile {name!r}: icc must be 'keep' or 'srgb'")
    tile = data.get("tile", 256)
    if not isinstance(tile, int) or tile < 16 or tile % 16:
        raise ProfileError(f"profile {name!r}: tile must be a multiple of 16")
    return Profile(
        name=path.stem,
        description=str(data.get("description", "")),
        icc=icc,
        tile=tile,
        eight_bit=_encoding(name, "eight_bit", data.get("eight_bit")),
        sixteen_bit=_encoding(name, "sixteen_bit", data.get("sixteen_bit")),
        band=_encoding(name, "band", data.get("band")),
        digest=hashlib.sha256(raw).hexdigest()[:16],
    )
