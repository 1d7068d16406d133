"""Visual similarity: 64-bit perceptual hashes (pHash, dHash) of an image's normalised grey
thumbnail, their Hamming distance, and the ranking of near-duplicates across the catalogue.

Blocking (pyvips decodes a thumbnail); imports pyvips, numpy, catalogue (objects and the hash
table) and sources.resolve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips

from iiifsrv.catalogue import CatalogueObject, CatalogueStore
from iiifsrv.catalogue.hashes import Hashes, ImageHash, PostgresHashes, SqliteHashes
from iiifsrv.catalogue.postgres import PostgresCatalogue
from iiifsrv.catalogue.remembered import RememberedCatalogue
from iiifsrv.catalogue.sqlite import SqliteCatalogue
from iiifsrv.errors import IIIFError
from iiifsrv.sources.resolve import Resolver

# pHash: the 8x8 lowest frequencies of the DCT of a 32x32 grey thumbnail, each bit set when the
# coefficient is above their median. dHash: 8 rows of 9 grey values, a bit per horizontal step.
PHASH_SIDE = 32
PHASH_LOW = 8
BITS = 64
# Hamming distance (pHash + dHash, 0..128) up to which two images are near-duplicates. Measured
# on generated variants (tests/enrich/test_similarity.py): downscaled or re-compressed at Q=50
# 0-4, cropped by 5 % (centred or from one corner) 7-35, unrelated images 53 and more.
DEFAULT_THRESHOLD = 40


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


_DCT = _dct_matrix(PHASH_SIDE)


def _grey(image: pyvips.Image, width: int, height: int) -> np.ndarray:
    """The image as a width x height float grey array (aspect ratio ignored, alpha dropped)."""
    if image.hasalpha():
        image = image.flatten(background=[0])  # as a JPEG encoder does
    if image.interpretation in ("rgb16", "grey16"):
        image = image.colourspace("srgb" if image.bands >= 3 else "b-w")
    grey = image.colourspace("b-w") if image.bands >= 3 else image
    grey = grey.extract_band(0).cast("float")
    small = grey.resize(width / grey.width, vscale=height / grey.height, kernel="linear")
    small = small.crop(0, 0, min(width, small.width), min(height, small.height))
    if small.width != width or small.height != height:
        small = small.embed(0, 0, width, height, extend="copy")
    return np.ndarray(
        buffer=small.write_to_memory(), dtype=np.float32, shape=(height, width)
    ).astype(np.float64)


def _bits(flags: np.ndarray) -> int:
    value = 0
    for flag in flags.ravel():
        value = (value << 1) | int(bool(flag))
    return value


def phash(image: pyvips.Image) -> int:
    pixels = _grey(image, PHASH_SIDE, PHASH_SIDE)
    low = (_DCT @ pixels @ _DCT.T)[:PHASH_LOW, :PHASH_LOW]
    return _bits(low > np.median(low))


def dhash(image: pyvips.Image) -> int:
    pixels = _grey(image, 9, 8)
    return _bits(pixels[:, 1:] > pixels[:, :-1])


@dataclass(frozen=True)
class Fingerprint:
    phash: int
    dhash: int

    def distance(self, other: Fingerprint | ImageHash) -> int:
        return hamming(self.phash, other.phash) + hamming(self.dhash, other.dhash)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def fingerprint(image: pyvips.Image) -> Fingerprint:
    return Fingerprint(phash(image), dhash(image))


def fingerprint_file(path: str | Path) -> Fingerprint:
    """Decode only a thumbnail of the file (shrink-on-load for JPEG and pyramids)."""
    thumb = pyvips.Image.thumbnail(str(path), 256, height=256, size="force").copy_memory()
    return fingerprint(thumb)


def hashes_for(catalogue: CatalogueStore) -> Hashes | None:
    """The hash table beside ``catalogue`` (None for a backend without one)."""
    if isinstance(catalogue, RememberedCatalogue):
        catalogue = catalogue.inner
    if isinstance(catalogue, SqliteCatalogue):
        return SqliteHashes(catalogue.path)
    if isinstance(catalogue, PostgresCatalogue):
        return PostgresHashes(catalogue.database)
    return None


def object_image(obj: CatalogueObject, resolver: Resolver) -> str | None:
    """The file that stands for an object: its image, else its first band; None for A/V."""
    for identifier in (obj.image, *(band.image for band in obj.bands)):
        if not identifier:
            continue
        try:
            return resolver.resolve(identifier)
        except IIIFError:
            continue
    return None


def fingerprint_object(obj: CatalogueObject, resolver: Resolver) -> Fingerprint | None:
    """The hashes of the object's image file, None when it has none (A/V, not on disk)."""
    path = object_image(obj, resolver)
    if path is None:
        return None
    try:
        return fingerprint_file(path)
    except pyvips.Error:
        return None


def keep(hashes: Hashes, obj: CatalogueObject, found: Fingerprint) -> ImageHash:
    stored = ImageHash(obj.id, obj.version, found.phash, found.dhash)
    hashes.put(stored)
    return stored


def hash_object(hashes: Hashes, obj: CatalogueObject, resolver: Resolver) -> ImageHash | None:
    """The object's stored hash for its current version, computed and stored when missing."""
    known = hashes.get(obj.id)
    if known is not None and known.version == obj.version:
        return known
    found = fingerprint_object(obj, resolver)
    return keep(hashes, obj, found) if found is not None else None


@dataclass(frozen=True)
class Match:
    object_id: str
    distance: int


def similar(
    catalogue: CatalogueStore,
    stored: Hashes,
    object_id: str,
    resolver: Resolver,
    threshold: int = DEFAULT_THRESHOLD,
) -> tuple[ImageHash | None, list[Match]]:
    """Every other object within ``threshold`` of ``object_id``, nearest first (objects ingested
    before hashes existed are hashed now, once)."""
    objects = {o.id: o for o in catalogue.list()}
    target = objects.get(object_id)
    if target is None:
        return None, []
    hashes = {h.object_id: h for h in stored.all()}
    for obj in objects.values():
        known = hashes.get(obj.id)
        if known is None or known.version != obj.version:
            fresh = hash_object(stored, obj, resolver)
            if fresh is not None:
                hashes[obj.id] = fresh
            else:
                hashes.pop(obj.id, None)
    mine = hashes.get(object_id)
    if mine is None:
        return None, []
    me = Fingerprint(mine.phash, mine.dhash)
    matches = [
        Match(h.object_id, me.distance(h))
        for h in hashes.values()
        if h.object_id != object_id and h.object_id in objects
    ]
    matches = [m for m in matches if m.distance <= threshold]
    matches.sort(key=lambda m: (m.distance, m.object_id))
    return mine, matches
