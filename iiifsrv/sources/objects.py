"""Identifiers → objects in a remote Storage (an S3 bucket), as they map to files in a folder:
``a/b`` names the key ``a/b`` or, failing that, ``a/b.<ext>`` for the best-ranked image
extension (resolve.EXTENSIONS); nothing outside the root prefix (check_identifier refuses empty,
"." and ".." segments; keys are always prefix + identifier).

One listing per identifier finds the key and its version (ETag) together. What was found is
trusted for ``revalidate`` seconds (no request at all); then listed again, and described again
only if the version changed. Descriptions are kept per (key, version).

Blocking I/O, called from worker threads; imports sources.resolve, sources.remote, sources.s3
(and the Settings type).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachetools import LRUCache

from iiifsrv.sources.remote import RemoteSource, describe_object
from iiifsrv.sources.resolve import _RANK, EXTENSIONS, check_identifier, no_image
from iiifsrv.sources.s3 import S3Storage
from iiifsrv.sources.storage import ImageRoot, StorageUnavailable, Version

if TYPE_CHECKING:
    from iiifsrv.settings import Settings


@dataclass(frozen=True)
class Found:
    key: str
    version: Version
    at: float  # time.monotonic() when listed


class RemoteImages:
    def __init__(self, storage: S3Storage, revalidate: float, max_whole: int) -> None:
        self.storage = storage
        self.revalidate = revalidate
        self.max_whole = max_whole
        self.where = f"s3://{storage.bucket}/{storage.prefix}"
        self._found: LRUCache[str, Found] = LRUCache(maxsize=65536)
        self._described: LRUCache[tuple[str, str], RemoteSource] = LRUCache(maxsize=2048)
        self._lock = threading.Lock()
        # One description per version at a time: concurrent first requests wait for it (a
        # JPEG2000 without TLM markers takes one small GET per tile-part to index).
        self._describing: dict[tuple[str, str], threading.Lock] = {}
        self._health: tuple[float, str] = (-1e9, "")
        self._probing = threading.Lock()  # one health probe at a time; the others wait for it
        self._stale: set[str] = set()

    def fresh(self, identifier: str) -> RemoteSource | None:
        """The description of ``identifier`` if it was looked up less than ``revalidate`` ago."""
        with self._lock:  # cachetools' LRU reorders on get: never unguarded across threads
            found = self._found.get(identifier)
            if found is None or time.monotonic() - found.at >= self.revalidate:
                return None
            if found.key in self._stale:
                return None
            return self._described.get((found.key, found.version.tag))

    def locate(self, identifier: str) -> tuple[str, Version]:
        """The key and version ``identifier`` names (one listing)."""
        segments = check_identifier(identifier)
        base = "/".join(segments)
        stem = segments[-1]
        best: tuple[int, str, Version] | None = None
        for key, version in self.storage.list(base):
            name = key.rsplit("/", 1)[-1]
            if key == base:
                return key, version
            if not name.startswith(stem + "."):
                continue
            ext = name[len(stem) :]
            rank = _RANK.get(ext.lower())
            if ext[1:].find(".") >= 0 or rank is None:
                continue
            if best is None or rank < best[0]:
                best = (rank, key, version)
        if best is None:
            raise no_image(identifier)
        return best[1], best[2]

    def source(self, identifier: str) -> RemoteSource:
        """Locate (listing again after ``revalidate`` s) and describe once per version."""
        key, version, known = self.locate_known(identifier)
        return known if known is not None else self.describe(key, version)

    def locate_known(self, identifier: str) -> tuple[str, Version, RemoteSource | None]:
        """Locate ``identifier`` (one listing): its key, version and the description of that
        version if this process has it."""
        key, version = self.locate(identifier)
        with self._lock:
            self._found[identifier] = Found(key, version, time.monotonic())
            self._stale.discard(key)
            known = self._described.get((key, version.tag))
        return key, version, known

    def describe(
        self, key: str, version: Version, blocks: dict[int, bytes] | None = None
    ) -> RemoteSource:
        """Describe ``key`` at ``version`` (from ``blocks`` where given, see
        remote.describe_object) and keep the description."""
        k = (key, version.tag)
        with self._lock:
            gate = self._describing.setdefault(k, threading.Lock())
        with gate:
            with self._lock:
                known = self._described.get(k)
            if known is not None:
                return known
            try:
                described = describe_object(
                    self.storage, key, version, self.where, self.max_whole, blocks
                )
                with self._lock:
                    self._described[k] = described
            finally:
                with self._lock:
                    if self._describing.get(k) is gate:
                        del self._describing[k]
        return described

    def forget(self, identifier: str) -> None:
        with self._lock:
            self._found.pop(identifier, None)

    def health(self, every: float = 2.0) -> str:
        """Empty when the store answers, else the one-line reason (probed at most every 2 s)."""
        at, reason = self._health
        if time.monotonic() - at < every:
            return reason
        # Probes that a slow store (or a load balancer's short time-out) would pile up in the
        # worker's threads wait for the one under way and share its answer.
        with self._probing:
            at, reason = self._health
            if time.monotonic() - at < every:
                return reason
            try:
                self.storage.check()
                reason = ""
            except StorageUnavailable as exc:
                reason = exc.message
            self._health = (time.monotonic(), reason)
        return reason

    def list_images(self, limit: int = 10000) -> list[str]:
        """Identifiers (without extension) of the images under the root, sorted."""
        out: set[str] = set()
        for key in self.storage.list_all(limit * 2):
            if any(part.startswith(".") for part in key.split("/")):
                continue  # hidden, as in a folder: never served
            folder, _, name = key.rpartition("/")
            stem, dot, ext = name.rpartition(".")
            if dot and "." + ext.lower() in EXTENSIONS:
                out.add(f"{folder}/{stem}" if folder else stem)
        return sorted(out)[:limit]

    def changed(self, key: str) -> None:
        """``key`` was replaced while being read: list it again at the next request."""
        with self._lock:
            self._stale.add(key)


def open_s3(root: ImageRoot, settings: Settings) -> RemoteImages:
    """The S3 image root the settings describe (no request is sent yet)."""
    storage = S3Storage(
        root.bucket,
        root.prefix,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        timeout=settings.s3_timeout,
        retries=settings.s3_retries,
        concurrency=settings.s3_concurrency,
    )
    return RemoteImages(storage, settings.s3_revalidate, settings.s3_max_whole_object)
