"""One pyramidal derivative from one master: load, orient, colour-manage, encode, write atomically.

Blocking, CPU-bound; imports pyvips, iiifsrv.sources.describe (sniffing), sources.jp2 (TLM)
and ingest.profiles.
Outputs are written to a hidden temporary name in the target folder, fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import pyvips

from iiifsrv.atomic import fsync_dir
from iiifsrv.ingest.profiles import Encoding, Profile
from iiifsrv.sources import jp2
from iiifsrv.sources.describe import sniff

KNOWN_FORMATS = "TIFF, JPEG, PNG, JPEG2000, GIF or WebP"
BIGTIFF_BYTES = 3_500_000_000
PART_SUFFIX = ".part"
LOADERS = {
    "tiff": "tiffload",
    "jpeg": "jpegload",
    "png": "pngload",
    "jp2": "jp2kload",
    "gif": "gifload",
    "webp": "webpload",
}


class IngestError(Exception):
    """One input that cannot be ingested; the message is one line for a person."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libvips puts the loader's real complaint after its own "unable to call" line.
    useful = [line for line in lines if not line.startswith(("unable to call", "VipsForeign"))]
    return (useful or lines or ["libvips error"])[0]


def load_master(path: str, page: int | None = None) -> pyvips.Image:
    """Open a master for reading; errors about its content are raised when pixels are read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise IngestError(f"cannot open: {exc.strerror or exc}") from None
    if not head:
        raise IngestError("empty file")
    kind = sniff(head)
    if kind is None:
        raise IngestError(f"unsupported format: not a {KNOWN_FORMATS} file")
    options: dict[str, object] = {"fail_on": "error"}
    if page is not None:
        options["page"] = page
    try:
        # The loader the magic bytes name: never a fallback loader guessing at a broken file.
        return getattr(pyvips.Image, LOADERS[kind])(path, **options)
    except pyvips.Error as exc:
        raise IngestError(f"corrupt or unreadable image: {_first_line(exc)}") from None


def prepare(image: pyvips.Image, profile: Profile, *, band: bool) -> tuple[pyvips.Image, Encoding]:
    """Apply EXIF orientation and the ICC policy; choose the encoding for this kind of image."""
    image = image.autorot()
    if image.get_typeof("image-description"):
        # A master's description (e.g. tifffile's "shape" JSON) is false for a pyramid.
        image = image.copy()
        image.remove("image-description")
    if image.interpretation == "cmyk" or (
        profile.icc == "srgb" and image.get_typeof("icc-profile-data") and not band
    ):
        depth = 16 if image.format == "ushort" else 8
        image = image.icc_transform("srgb", embedded=True, depth=depth)
    if image.format not in ("uchar", "ushort"):
        raise IngestError(
            f"unsupported sample format {image.format!r}: only 8- and 16-bit integer images"
        )
    if band:
        if image.bands in (2, 4):
            image = image.extract_band(0, n=image.bands - 1)
        if image.bands >= 3:
            target = "grey16" if image.format == "ushort" else "b-w"
            image = image.colourspace(target)
        return image, profile.band
    alpha = image.bands in (2, 4)
    if image.format == "ushort":
        return image, profile.sixteen_bit
    if alpha and profile.eight_bit.format == "tiff" and profile.eight_bit.compression == "jpeg":
        return image, profile.sixteen_bit  # JPEG cannot hold an alpha band: keep it losslessly
    return image, profile.eight_bit


HTJ2K_MAX_PIXELS = 300_000_000  # encoded from memory (OpenJPH): 900 MB of 8-bit RGB at most


def htj2k_step(quality: int) -> float:
    """OpenJPH's quantisation step for a profile quality 1-100 (45 gives about the size of
    libvips' jp2ksave Q45 on photographs; 90 is visually lossless)."""
    return float(2 ** (-(quality / 10) - 2.3))


def write_htj2k(image: pyvips.Image, path: Path, encoding: Encoding, tile: int) -> None:
    """A tiled, multi-resolution High-Throughput JPEG2000 codestream (Part 15): the server
    decodes its tiles with about a third of the CPU of JPEG2000 Part 1 (docs/benchmarks.md)."""
    import imagecodecs

    if image.format != "uchar" or image.bands not in (1, 3):
        raise IngestError("the htj2k format takes 8-bit grey or RGB images: check the profile")
    if image.width * image.height > HTJ2K_MAX_PIXELS:
        raise IngestError(
            f"image too large for the htj2k format ({image.width}x{image.height}, at most "
            f"{HTJ2K_MAX_PIXELS} pixels): use the jp2 or default profile"
        )
    pixels = image.numpy()
    resolutions = 1
    while max(image.width, image.height) > tile << (resolutions - 1) and resolutions < 33:
        resolutions += 1
    data = imagecodecs.htj2k_encode(
        pixels,
        level=None if encoding.lossless else htj2k_step(encoding.quality),
        tile=(tile, tile),
        resolutions=resolutions,
        reversible=encoding.lossless,
    )
    with open(path, "wb") as fh:
        fh.write(data)


def part_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}{PART_SUFFIX}")


def remove_stale_parts(folder: Path) -> None:
    """Delete temporary files left by ingests that died.

    A writer holds an exclusive flock on its temporary file until it is renamed; the kernel
    drops the lock when the process dies, so a file we can lock belongs to nobody.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
            continue
        try:
            fd = os.open(folder / name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # being written right now
        else:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
        finally:
            os.close(fd)


def write(image: pyvips.Image, stem: Path, encoding: Encoding, tile: int) -> Path:
    """Write ``image`` as ``stem`` + the encoding's extension; return the final path.

    Nothing appears under the final name until the file is complete and on disk; a sibling
    derivative of another format (``stem.jp2`` when writing ``stem.tif``) is removed after.
    """
    target = stem.with_name(stem.name + encoding.extension)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_name(target)
    lock = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released only when complete, or when we die
        if encoding.format == "htj2k":
            write_htj2k(image, tmp, encoding, tile)
            jp2.add_tlm(str(tmp))
        elif encoding.format == "jp2":
            if encoding.lossless:
                image.jp2ksave(str(tmp), tile_width=tile, tile_height=tile, lossless=True)
            else:
                image.jp2ksave(str(tmp), tile_width=tile, tile_height=tile, Q=encoding.quality)
            jp2.add_tlm(str(tmp))  # tile-part lengths: object storage reads one tile's bytes
        else:
            if encoding.compression == "jpeg" and image.format != "uchar":
                raise IngestError("JPEG compression needs 8-bit pixels: check the profile")
            size = image.width * image.height * image.bands * (2 if image.format == "ushort" else 1)
            options: dict[str, object] = {
                "tile": True,
                "pyramid": True,
                "tile_width": tile,
                "tile_height": tile,
                "compression": encoding.compression,
                "bigtiff": size > BIGTIFF_BYTES,
            }
            if encoding.compression == "jpeg":
                options["Q"] = encoding.quality
            elif encoding.compression in ("deflate", "zstd", "lzw"):
                options["predictor"] = "horizontal"
            image.tiffsave(str(tmp), **options)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except pyvips.Error as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise IngestError(f"corrupt or truncated image: {_first_line(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(lock)
    for other in (".tif", ".jp2"):
        if other != encoding.extension:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem.with_name(stem.name + other))
    return target
