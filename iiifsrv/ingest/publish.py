"""Ingest into object storage: derivatives are written to a local staging folder as usual, then
uploaded (multipart beyond 16 MiB), verified by size and ETag, and only then recorded in the
catalogue (ingest.run calls ``publish`` before the catalogue upsert).

A killed ingest leaves no half-written object: an S3 PUT or a multipart upload becomes visible
only when complete, and replaces the previous version atomically. Re-running skips objects whose
source is unchanged and whose derivatives are in the bucket (``outputs_exist``), and redoes the
others.

Blocking; imports hashlib, iiifsrv.catalogue, ingest.derive (IngestError), sources.s3 and
sources.storage. An S3Target is a small picklable value: worker processes open their own client.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from iiifsrv.catalogue import CatalogueObject
from iiifsrv.errors import IIIFError
from iiifsrv.ingest.derive import IngestError
from iiifsrv.sources.s3 import S3Storage
from iiifsrv.sources.storage import ImageRoot

EXTENSIONS = (".tif", ".jp2")  # what ingest writes
PART = 16 * 1024 * 1024  # multipart threshold and part size

_storages: dict[tuple[str, ...], S3Storage] = {}


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str
    endpoint: str = ""
    region: str = ""
    timeout: int = 60

    @classmethod
    def of(cls, root: ImageRoot, endpoint: str, region: str, timeout: int) -> S3Target:
        return cls(root.bucket, root.prefix, endpoint, region, max(timeout, 60))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def storage(self) -> S3Storage:
        key = (self.bucket, self.prefix, self.endpoint, self.region, str(self.timeout))
        storage = _storages.get(key)
        if storage is None:
            storage = _storages[key] = S3Storage(
                self.bucket,
                self.prefix,
                endpoint=self.endpoint,
                region=self.region,
                timeout=self.timeout,
            )
        return storage

    def outputs_exist(self, obj: CatalogueObject) -> bool:
        """Every derivative the catalogue entry names is in the bucket."""
        try:
            storage = self.storage()
            return all(
                any(storage.exists(f"{ident}{ext}") for ext in EXTENSIONS)
                for ident in _identifiers(obj)
            )
        except IIIFError:
            return False

    def publish(self, obj: CatalogueObject, staging: Path) -> None:
        """Upload the staged derivatives of ``obj``, verify them, drop the staged copies.
        Raises IngestError (the object is then not recorded)."""
        storage = self.storage()
        for ident in _identifiers(obj):
            staged = [staging / f"{ident}{ext}" for ext in EXTENSIONS]
            found = [p for p in staged if p.is_file()]
            if not found:
                raise IngestError(f"the derivative of {ident!r} is missing from {staging}")
            path = found[0]
            key = f"{ident}{path.suffix}"
            try:
                _upload(storage, path, key)
                for other in EXTENSIONS:  # a derivative of the other format is now stale
                    if other != path.suffix:
                        _delete(storage, f"{ident}{other}")
            except IIIFError as exc:
                raise IngestError(f"upload of {key} to {self}: {exc.message}") from None
            with contextlib.suppress(OSError):
                path.unlink()

    def remove(self, identifiers: list[str]) -> list[str]:
        """Delete the derivatives ingest wrote for ``identifiers`` (``<id>.tif``, ``<id>.jp2``
        under the prefix, nothing else); the keys deleted."""
        storage = self.storage()
        removed = []
        for ident in identifiers:
            for ext in EXTENSIONS:
                key = f"{ident}{ext}"
                try:
                    if storage.exists(key):
                        _delete(storage, key)
                        removed.append(key)
                except IIIFError as exc:
                    raise IngestError(f"cannot delete {key} from {self}: {exc.message}") from None
        return removed


def _identifiers(obj: CatalogueObject) -> list[str]:
    return [b.image for b in obj.bands] or [obj.image]


def expected_etag(path: Path) -> str:
    """The ETag S3 gives ``path`` uploaded as we upload it: MD5, or MD5 of the part MD5s."""
    size = path.stat().st_size
    digests = []
    with path.open("rb") as fh:
        while chunk := fh.read(PART):
            digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if size < PART or len(digests) <= 1:
        return '"' + (digests[0].hex() if digests else hashlib.md5(b"").hexdigest()) + '"'
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f'"{joined}-{len(digests)}"'


def _upload(storage: S3Storage, path: Path, key: str) -> None:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4, use_threads=True
    )
    size = path.stat().st_size

    def put() -> None:
        storage.client().upload_file(str(path), storage.bucket, storage.prefix + key, Config=config)

    storage._call("PUT", key, put)
    version = storage.stat(key)
    if version.size != size:
        raise IngestError(f"{key}: uploaded {version.size} bytes, expected {size}")
    etag = expected_etag(path)
    if version.tag.strip('"') != etag.strip('"'):
        raise IngestError(f"{key}: the store's ETag {version.tag} is not {etag}")


def _delete(storage: S3Storage, key: str) -> None:
    def delete() -> None:
        storage.client().delete_object(Bucket=storage.bucket, Key=storage.prefix + key)

    storage._call("DELETE", key, delete)
