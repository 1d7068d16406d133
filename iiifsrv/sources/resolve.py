"""Resolve an identifier to a file under the image root; nothing outside the root is readable.

Blocking I/O (stat, listdir); imports only the standard library and iiifsrv.errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from iiifsrv.errors import BadRequest, NotFound

# Preference when an identifier has no extension: pyramidal derivatives first, masters last.
EXTENSIONS = (
    ".ptif",
    ".tif",
    ".tiff",
    ".btf",
    ".jp2",
    ".j2k",
    ".jpx",
    ".jpf",
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".gif",
)
_RANK = {ext: i for i, ext in enumerate(EXTENSIONS)}


def no_image(identifier: str) -> NotFound:
    """The one answer for an identifier that names no image, whatever the reason (missing, not
    an image, outside the root, hidden): a client learns nothing about what exists."""
    return NotFound(f"no image with identifier {identifier!r}")


def check_identifier(identifier: str) -> list[str]:
    """Reject identifiers that could name anything outside the root or hidden in it (a segment
    starting with "."); return its segments."""
    if not identifier:
        raise BadRequest("empty identifier")
    if "\x00" in identifier or any(ord(c) < 32 for c in identifier):
        raise BadRequest("identifier contains control characters")
    if identifier.startswith(("/", "\\")) or "\\" in identifier:
        raise no_image(identifier)
    if len(identifier) > 1024:
        raise BadRequest("identifier too long")
    segments = identifier.split("/")
    if any(not s or s.startswith(".") for s in segments):
        raise no_image(identifier)
    return segments


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


class Resolver:
    """Maps identifiers to real files under ``root``; caches extensionless look-ups per folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root_real = os.path.realpath(self.root)
        self._listing: dict[str, tuple[int, dict[str, str]]] = {}

    def resolve(self, identifier: str) -> str:
        """Return the real path of the file for ``identifier`` or raise NotFound/BadRequest."""
        return self.locate(identifier)[0]

    def locate(self, identifier: str) -> tuple[str, str]:
        """(real path, the name under the root it was found by — maybe a symlink)."""
        segments = check_identifier(identifier)
        candidate = os.path.join(self.root_real, *segments)
        if os.path.isfile(candidate):
            if not _inside(self.root_real, candidate):
                raise no_image(identifier)
            return os.path.realpath(candidate), candidate
        folder, stem = os.path.split(candidate)
        found = self._by_stem(folder).get(stem)
        if found is None:
            raise no_image(identifier)
        path = os.path.join(folder, found)
        if not _inside(self.root_real, path):
            raise no_image(identifier)
        return os.path.realpath(path), path

    def _by_stem(self, folder: str) -> dict[str, str]:
        if not _inside(self.root_real, folder):
            return {}
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return {}
        cached = self._listing.get(folder)
        if cached and cached[0] == mtime:
            return cached[1]
        best: dict[str, str] = {}
        try:
            names = os.listdir(folder)
        except OSError:
            names = []
        for name in names:
            stem, ext = os.path.splitext(name)
            rank = _RANK.get(ext.lower())
            if rank is None:
                continue
            current = best.get(stem)
            if current is None or rank < _RANK[os.path.splitext(current)[1].lower()]:
                best[stem] = name
        if len(self._listing) > 4096:
            self._listing.clear()
        self._listing[folder] = (mtime, best)
        return best

    def list_images(self, limit: int = 10000) -> list[str]:
        """Identifiers (without extension) of the images under the root, sorted."""
        out: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root_real, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                stem, ext = os.path.splitext(name)
                if ext.lower() in _RANK and not name.startswith("."):
                    rel = os.path.relpath(os.path.join(dirpath, stem), self.root_real)
                    out.add(rel.replace(os.sep, "/"))
            if len(out) >= limit:
                break
        return sorted(out)[:limit]
