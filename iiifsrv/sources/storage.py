"""Where images are stored: the image root (a local folder or an S3 bucket and prefix), parsed
once from the ``images`` setting, and the small interface both kinds of storage implement.

Pure: dataclasses, a Protocol and a parser; no I/O. Imports only iiifsrv.errors.
Keys are "/"-separated names relative to the root (``folder/name.tif``); a storage never
answers for anything outside its root.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from iiifsrv.errors import Unavailable


class StorageUnavailable(Unavailable):
    """The storage did not answer (down, timed out, refused the credentials): 503."""


@dataclass(frozen=True)
class Version:
    """What identifies one version of a stored object: the S3 ETag, or mtime+size locally."""

    tag: str  # ETag (S3) or "<mtime_ns>:<size>" (local)
    size: int
    mtime: float  # seconds since the epoch (Last-Modified)


class Storage(Protocol):
    """Blocking I/O; called from worker threads."""

    def stat(self, key: str) -> Version:
        """The object's current version; raises NotFound if there is none."""
        ...

    def read(self, key: str, offset: int, length: int, *, etag: str = "") -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the object); with
        ``etag``, of that version only (a replaced object is an error, never mixed)."""
        ...

    def list(self, prefix: str) -> Iterator[tuple[str, Version]]:
        """Keys that start with ``prefix`` (no further "/" after it), with their versions."""
        ...

    def exists(self, key: str) -> bool: ...


@dataclass(frozen=True)
class ImageRoot:
    """The parsed ``images`` setting: a local folder, or ``s3://bucket/prefix``."""

    kind: str  # "local" or "s3"
    path: Path | None = None  # local: the folder (absolute)
    bucket: str = ""
    prefix: str = ""  # s3: "" or ending in "/"

    def __str__(self) -> str:
        if self.kind == "s3":
            return f"s3://{self.bucket}/{self.prefix}"
        return str(self.path)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def parse_root(text: str) -> ImageRoot:
    """An ImageRoot from the ``images`` setting; ValueError for anything not understood."""
    if not text:
        raise ValueError("the image root is empty")
    if text.lower().startswith("s3://"):
        rest = text[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"{text!r}: {bucket!r} is not an S3 bucket name")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts) or any(ord(c) < 32 for c in prefix):
            raise ValueError(
                f"{text!r}: the prefix may not contain '.', '..' or control characters"
            )
        return ImageRoot("s3", bucket=bucket, prefix="".join(p + "/" for p in parts))
    if _SCHEME.match(text):
        raise ValueError(f"{text!r}: only local folders and s3://bucket/prefix are image roots")
    return ImageRoot("local", path=Path(text).resolve())
