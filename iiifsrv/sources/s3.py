"""Storage in an S3-compatible bucket (AWS S3, MinIO, Swift's s3api, ...), through boto3.

Blocking I/O, called from worker threads (boto3 clients are thread-safe; one client per
storage keeps its connections alive), and one coroutine: ``read_async``, the hot path (the one
GET per stored tile), sent on the event loop through keepalive.Connections with no thread hop.
Ranged GETs skip boto3's per-call machinery: each goes to a presigned URL of its key, signed
once and reused for minutes (a SigV4 query signature does not cover Range or If-Match), through
urllib3 (the pool boto3 itself sends through) in threads or keepalive on the loop, instead of
boto3 (2.2 ms of client CPU per GET) or a SigV4 header signature per GET (1.1 ms), measured
against Swift (docs/benchmarks.md). Every GET carries an explicit Range (and If-Match with the
ETag the caller described, so a replaced object is never mixed with the old one); failed
requests are retried with jittered exponential back-off while the timeout allows; at most
``concurrency`` requests are in flight from threads, and as many from the event loop. Failures
become StorageUnavailable (503) with a one-line message that never contains credentials; a
missing key is NotFound (404).

Credentials come from boto3's standard chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, a shared credentials file, or an instance role. They are never logged.

Imports boto3/botocore, urllib3, anyio, iiifsrv.errors, sources.storage and sources.keepalive.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from iiifsrv.errors import IIIFError, NotFound
from iiifsrv.sources.keepalive import Connections, Target
from iiifsrv.sources.storage import StorageUnavailable, Version

log = logging.getLogger("iiifsrv.s3")

T = TypeVar("T")


class ObjectChanged(StorageUnavailable):
    """The object was replaced while it was being read (If-Match failed): retry shortly."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            "the stored image changed while it was read; retry",
            headers={"Retry-After": "1"},
        )


@dataclass
class Counters:
    """What this process asked the store for (tests and the benchmark read these)."""

    gets: int = 0
    get_bytes: int = 0
    lists: int = 0
    heads: int = 0
    failures: int = 0
    retries: int = 0
    # The last ranged GETs: (key, offset, length asked, bytes received).
    recent: deque[tuple[str, int, int, int]] = field(default_factory=lambda: deque(maxlen=4096))

    def snapshot(self) -> dict[str, int]:
        return {
            "gets": self.gets,
            "get_bytes": self.get_bytes,
            "lists": self.lists,
            "heads": self.heads,
            "failures": self.failures,
            "retries": self.retries,
        }


def _status(exc: Exception) -> tuple[int, str]:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(response.get("Error", {}).get("Code") or "")
    return status, code


_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


def _client_error(status: int, body: bytes) -> Exception:
    """The botocore ClientError boto3 would raise for this error response (``_call`` maps it)."""
    from botocore.exceptions import ClientError

    found = _CODE.search(body[:4096])
    code = found.group(1).decode("ascii", "replace") if found else str(status)
    error = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    made: Exception = ClientError(error, "GetObject")
    return made


class S3Storage:
    """Keys are relative to ``prefix`` inside ``bucket``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str = "",
        region: str = "",
        timeout: float = 10.0,
        retries: int = 2,
        concurrency: int = 16,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region or "us-east-1"
        self.timeout = float(timeout)
        self.retries = retries
        self.counters = Counters()
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._concurrency = max(1, concurrency)
        self._client: Any = None
        self._session: Any = None
        self._pool: Any = None  # urllib3 pool of the ranged GETs
        # Presigned GET URLs by key, reused for PRESIGN_REUSE s: a SigV4 query signature covers
        # the method, host and path, not the Range or If-Match headers, so one signature serves
        # every ranged read of an object (signing each GET cost ~1 ms of CPU per tile).
        self._urls: dict[str, tuple[float, str]] = {}
        self._targets: dict[str, tuple[float, Target]] = {}  # the same, parsed (read_async)
        self._async: tuple[asyncio.AbstractEventLoop, Connections] | None = None
        self._lock = threading.Lock()
        where = endpoint or "AWS S3"
        self.where = f"s3://{bucket}/{prefix} at {where}"

    # -- the client ------------------------------------------------------------------------

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    region_name=self.region,
                    s3={"addressing_style": "path"},
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    retries={"total_max_attempts": 1},  # retried here, within the timeout
                    max_pool_connections=self._concurrency,
                    # Ranged replies carry no checksum of the range: validate only on request.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    tcp_keepalive=True,
                )
                self._session = boto3.session.Session()
                self._client = self._session.client(
                    "s3", endpoint_url=self.endpoint or None, config=config
                )
            return self._client

    def _get_pool(self) -> Any:
        """The urllib3 pool of the ranged GETs (made with the client; as many connections as
        requests may be in flight)."""
        client = self.client()
        with self._lock:
            if self._pool is None:
                import urllib3
                from botocore.httpsession import DEFAULT_CA_BUNDLE

                self._pool = urllib3.PoolManager(
                    maxsize=self._concurrency,
                    block=True,
                    retries=False,  # retried in _call, within the timeout
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                    ca_certs=DEFAULT_CA_BUNDLE,
                )
                self._base = str(client.meta.endpoint_url).rstrip("/")
            return self._pool

    PRESIGN_SECONDS = 900  # validity of a presigned GET URL
    PRESIGN_REUSE = 300.0  # reused while younger than this (well inside its validity)

    def _presigned(self, key: str, fresh: bool = False) -> str:
        """A presigned GET URL of ``key`` (signed here, no request sent), reused for
        PRESIGN_REUSE s. Raises NoCredentialsError when there are no credentials."""
        now = time.monotonic()
        with self._lock:
            known = self._urls.get(key)
        if known is not None and not fresh and now - known[0] < self.PRESIGN_REUSE:
            return known[1]
        url: str = self.client().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.prefix + key},
            ExpiresIn=self.PRESIGN_SECONDS,
        )
        with self._lock:
            if len(self._urls) >= 4096:
                self._urls.clear()
            self._urls[key] = (now, url)
        return url

    def _signed_get(self, key: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """One GET of ``key`` with ``headers`` through its presigned URL: (status, body). A
        refusal (403: credentials rotated or revoked) is asked once more with a new signature.
        Raises NoCredentialsError when there are no credentials."""
        pool = self._get_pool()
        r = pool.request("GET", self._presigned(key), headers=headers)
        if r.status == 403:
            r = pool.request("GET", self._presigned(key, fresh=True), headers=headers)
        return int(r.status), bytes(r.data)

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one request with retries (5xx, throttling, connection errors, timeouts)."""
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        start = time.monotonic()
        attempt = 0
        while True:
            try:
                with self._slots:
                    return fn()
            except (BotoCoreError, ClientError, OSError, HTTPError) as exc:
                reason = self._judge(what, key, exc)
            attempt += 1
            time.sleep(self._backoff(what, reason, attempt, start))

    def _judge(self, what: str, key: str, exc: Exception) -> str:
        """Why ``exc`` is worth another attempt; raises what the caller gets when it is not."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            self.counters.failures += 1
            raise StorageUnavailable(
                "image storage: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            ) from None
        if not isinstance(exc, ClientError):
            return type(exc).__name__  # connection errors, timeouts
        status, code = _status(exc)
        if code == "NoSuchBucket":
            self.counters.failures += 1
            raise self._unavailable(what, code) from None
        if status == 404 or code in ("NoSuchKey", "NotFound"):
            raise NotFound("no such object") from None
        if status == 412:
            raise ObjectChanged(key) from None
        if status == 416 or code == "InvalidRange":
            raise NotFound("range outside the stored object") from None
        if status >= 500 or status in (408, 429) or code in ("SlowDown",):
            return f"{code or status}"
        self.counters.failures += 1
        raise self._unavailable(what, f"{code or status}") from None

    def _backoff(self, what: str, reason: str, attempt: int, start: float) -> float:
        """The jittered delay before attempt ``attempt + 1``; raises StorageUnavailable when
        the retries or the timeout are spent."""
        elapsed = time.monotonic() - start
        delay = random.uniform(0, min(2.0, 0.1 * 2**attempt))
        if attempt > self.retries or elapsed + delay >= self.timeout:
            self.counters.failures += 1
            raise self._unavailable(what, reason) from None
        self.counters.retries += 1
        return delay

    def _unavailable(self, what: str, reason: str) -> IIIFError:
        """A one-line 503 for the client; the detail (where, what, why) goes to the log."""
        if reason in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            message = "image storage refused the credentials"
        elif reason == "NoSuchBucket":
            message = "image storage: the bucket does not exist"
        else:
            message = "image storage unavailable"
        log.warning("%s: %s %s (%s)", message, what, self.where, reason)
        return StorageUnavailable(message, headers={"Retry-After": "5"})

    # -- the Storage interface -------------------------------------------------------------

    def stat(self, key: str) -> Version:
        def head() -> Version:
            r = self.client().head_object(Bucket=self.bucket, Key=self.prefix + key)
            self.counters.heads += 1
            return Version(str(r["ETag"]), int(r["ContentLength"]), r["LastModified"].timestamp())

        return self._call("HEAD", key, head)

    def read(self, key: str, offset: int, length: int, *, etag: str = "") -> bytes:
        """One GET with ``Range: bytes=offset-(offset+length-1)`` (and If-Match ``etag``)."""
        if length <= 0:
            return b""
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        if etag:
            headers["If-Match"] = etag

        def get() -> bytes:
            status, data = self._signed_get(key, headers)
            return self._received(key, offset, length, status, data)

        return self._call("GET", key, get)

    def _received(self, key: str, offset: int, length: int, status: int, data: bytes) -> bytes:
        if status not in (200, 206):
            raise _client_error(status, data)
        self.counters.gets += 1
        self.counters.get_bytes += len(data)
        self.counters.recent.append((key, offset, length, len(data)))
        return data

    async def read_async(self, key: str, offset: int, length: int, *, etag: str = "") -> bytes:
        """``read`` on the running event loop, without a thread (the stored-tile GET): the
        same request, retries, errors and counters, through keepalive.Connections."""
        from botocore.exceptions import BotoCoreError, ClientError

        if length <= 0:
            return b""
        headers = f"Range: bytes={offset}-{offset + length - 1}\r\n"
        if etag:
            headers += f"If-Match: {etag}\r\n"
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                connections = self._connections()
                target = await self._target(key)
                status, data = await connections.get(target, headers)
                if status == 403:  # credentials rotated: once more with a new signature
                    target = await self._target(key, fresh=True)
                    status, data = await connections.get(target, headers)
                return self._received(key, offset, length, status, data)
            except (BotoCoreError, ClientError, OSError) as exc:
                reason = self._judge("GET", key, exc)
            attempt += 1
            await asyncio.sleep(self._backoff("GET", reason, attempt, start))

    def _connections(self) -> Connections:
        """The keep-alive connections of the running event loop (one per worker process; a
        new loop, as in tests, gets its own)."""
        loop = asyncio.get_running_loop()
        held = self._async
        if held is None or held[0] is not loop:
            from botocore.httpsession import DEFAULT_CA_BUNDLE

            held = self._async = (
                loop,
                Connections(self._concurrency, self.timeout, DEFAULT_CA_BUNDLE),
            )
        return held[1]

    def close_connections(self) -> None:
        """Close the event loop's kept connections (when the service stops)."""
        held, self._async = self._async, None
        if held is not None and not held[0].is_closed():
            held[1].close()

    async def _target(self, key: str, fresh: bool = False) -> Target:
        """Where the presigned GET of ``key`` goes (signed in a thread when not known)."""
        now = time.monotonic()
        with self._lock:
            known = self._targets.get(key)
        if known is not None and not fresh and now - known[0] < self.PRESIGN_REUSE:
            return known[1]
        url = await anyio.to_thread.run_sync(self._presigned, key, fresh)
        target = Target.of(url)
        with self._lock:
            if len(self._targets) >= 4096:
                self._targets.clear()
            self._targets[key] = (now, target)
        return target

    def list(self, prefix: str) -> Iterator[tuple[str, Version]]:
        """Objects whose key starts with ``prefix`` and has no "/" after it (one page or more)."""
        token = ""
        while True:

            def page(token: str = token) -> dict[str, Any]:
                args: dict[str, Any] = {
                    "Bucket": self.bucket,
                    "Prefix": self.prefix + prefix,
                    "Delimiter": "/",
                    "MaxKeys": 1000,
                }
                if token:
                    args["ContinuationToken"] = token
                r: dict[str, Any] = self.client().list_objects_v2(**args)
                self.counters.lists += 1
                return r

            r = self._call("LIST", prefix, page)
            for item in r.get("Contents", ()):
                key = str(item["Key"])[len(self.prefix) :]
                yield (
                    key,
                    Version(str(item["ETag"]), int(item["Size"]), item["LastModified"].timestamp()),
                )
            token = str(r.get("NextContinuationToken") or "")
            if not r.get("IsTruncated") or not token:
                return

    def list_all(self, limit: int) -> builtins.list[str]:
        """Every key under the root (no delimiter), at most ``limit``."""
        out: builtins.list[str] = []
        token = ""
        while len(out) < limit:

            def page(token: str = token) -> dict[str, Any]:
                args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
                if token:
                    args["ContinuationToken"] = token
                r: dict[str, Any] = self.client().list_objects_v2(**args)
                self.counters.lists += 1
                return r

            r = self._call("LIST", "", page)
            out.extend(str(i["Key"])[len(self.prefix) :] for i in r.get("Contents", ()))
            token = str(r.get("NextContinuationToken") or "")
            if not r.get("IsTruncated") or not token:
                break
        return out[:limit]

    def presign(self, key: str, seconds: int) -> str:
        """A GET URL of ``key`` valid ``seconds`` (signed here, no request sent): what ffprobe
        and ffmpeg read an A/V object through, seeking by ranged GETs."""
        from botocore.exceptions import BotoCoreError

        try:
            url: str = self.client().generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.prefix + key},
                ExpiresIn=seconds,
            )
        except BotoCoreError as exc:  # no credentials
            raise self._unavailable("PRESIGN", type(exc).__name__) from None
        return url

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def check(self) -> None:
        """One cheap request (a one-key listing); raises StorageUnavailable when it fails."""

        def probe() -> None:
            self.client().list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            self.counters.lists += 1

        self._call("LIST", "", probe)
