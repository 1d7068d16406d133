"""The Prometheus metrics of a worker: defined once per process, incremented by the layers that
know (the service counts renders and source reads, the web layer requests and bytes).

Imports prometheus_client only. With several workers ``iiifsrv serve`` sets
PROMETHEUS_MULTIPROC_DIR before they start, so every value lives in a file there and one scrape
of any worker reports them all (see ``registry``).

There, one increment costs a lock and an mmap write (a histogram observation two): per request
that was the largest Python cost of a replayed tile. Per-request figures are therefore kept as
plain integers (``Tally``, ``Tallied``) on the event loop and moved into the Prometheus values by
``flush``: at the end of the loop iteration that counted them (one write per figure for however
many requests that iteration served), and before every scrape.
"""

from __future__ import annotations

import asyncio
import bisect
import os
from typing import Any

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; tiles from memory take well under a millisecond, renders tens to hundreds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "iiifsrv_http_requests",
    "HTTP requests by route class and status code.",
    ["route", "status"],
)
LATENCY = Histogram(
    "iiifsrv_http_request_duration_seconds",
    "Time from the request to the last byte handed to the server, by route class.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
BYTES_SENT = Counter(
    "iiifsrv_http_response_bytes",
    "Response body bytes sent, by route class.",
    ["route"],
)
CACHE = Counter(
    "iiifsrv_cache_requests",
    "Cache look-ups per tier (hot = per-URL responses, response = encoded images, "
    "source = image descriptions, shared = the shared cache) and result (hit, miss).",
    ["tier", "result"],
)
CACHE_BYTES = Gauge(
    "iiifsrv_cache_bytes",
    "Bytes held per cache tier (summed over live workers).",
    ["tier"],
    multiprocess_mode="livesum",
)
RENDERS = Counter("iiifsrv_renders", "Images rendered with libvips, by output format.", ["format"])
RENDER_SECONDS = Histogram(
    "iiifsrv_render_duration_seconds",
    "Time of one render (decode, transform, encode) in its thread.",
    buckets=LATENCY_BUCKETS,
)
PASSTHROUGH = Counter("iiifsrv_passthrough", "Stored JPEG tiles served as they are (no render).")
EDGE_CROPS = Counter(
    "iiifsrv_edge_crops",
    "Clipped edge tiles cut from their stored JPEG tile without a decode (lossless DCT crop).",
)
SOURCE_READS = Counter(
    "iiifsrv_source_reads",
    "Reads of source files: describe (structure), raw_tile (passthrough), render.",
    ["op"],
)
S3_REQUESTS = Counter(
    "iiifsrv_s3_requests",
    "Requests to the S3 image store by operation (get = one ranged GET, head, list).",
    ["op"],
)
S3_GET_BYTES = Counter("iiifsrv_s3_get_bytes", "Bytes received by ranged GETs from S3.")
S3_FAILURES = Counter(
    "iiifsrv_s3_failures",
    "S3 requests that failed for good (after retries), and retries.",
    ["kind"],
)
SHARED_EVENTS = Counter(
    "iiifsrv_shared_cache_events",
    "Shared cache (Redis): put, too_large (not stored), error, skipped (breaker open), lease "
    "(rendered for all replicas), wait (waited for another replica's render).",
    ["event"],
)
DB_POOL = Gauge(
    "iiifsrv_db_pool_connections",
    "PostgreSQL connection pool: size, idle (available) and waiting requests, per store.",
    ["store", "state"],
    multiprocess_mode="livesum",
)
CATALOGUE_FALLBACKS = Counter(
    "iiifsrv_catalogue_fallbacks",
    "Catalogue reads answered from this replica's last-known view because PostgreSQL was "
    "unreachable (images go on being served meanwhile).",
)
RSS = Gauge(
    "iiifsrv_worker_resident_bytes",
    "Resident memory of each worker process (label pid with several workers).",
    multiprocess_mode="liveall",
)
DRAINING = Gauge(
    "iiifsrv_draining",
    "1 while a worker drains after SIGTERM (its /health answers 503).",
    multiprocess_mode="livemax",
)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def registry() -> CollectorRegistry:
    """What /metrics exposes: in multiprocess mode a fresh registry reading every worker's
    files (as prometheus_client documents), else this process's default registry."""
    if multiprocess_mode():
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return DEFAULT_REGISTRY


def worker_exit(pid: int) -> None:
    """Drop this worker's live gauges (multiprocess mode) when it stops."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# -- per-request figures, counted as integers and flushed in batches --------------------------

_tallies: list[Tally | Tallied] = []
_flush_scheduled = False


class Tally:
    """A counter (child) counted as a plain integer on the event loop; ``flush`` adds it."""

    __slots__ = ("child", "count", "flushed")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.count = 0
        self.flushed = 0
        _tallies.append(self)

    def inc(self, amount: int = 1) -> None:
        self.count += amount
        if not _flush_scheduled:
            schedule_flush()

    def flush(self) -> None:
        delta = self.count - self.flushed
        if delta:
            self.flushed += delta
            self.child.inc(delta)


class Tallied:
    """A histogram (child) whose observations are counted per bucket as plain numbers; ``flush``
    adds the new counts to the child's buckets and sum (prometheus_client keeps them as
    ``_buckets`` and ``_sum``; without them every observation goes straight to the child)."""

    __slots__ = ("child", "bounds", "counts", "sum", "flushed", "flushed_sum", "direct")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds  # upper bounds without +Inf, ascending
        self.counts = [0] * (len(bounds) + 1)
        self.flushed = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.flushed_sum = 0.0
        buckets = getattr(child, "_buckets", None)
        self.direct = buckets is None or len(buckets) != len(bounds) + 1
        if not self.direct:
            _tallies.append(self)

    def observe(self, value: float) -> None:
        if self.direct:
            self.child.observe(value)
            if not _flush_scheduled:
                schedule_flush()
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        if not _flush_scheduled:
            schedule_flush()

    def flush(self) -> None:
        buckets = self.child._buckets
        for index, count in enumerate(self.counts):
            delta = count - self.flushed[index]
            if delta:
                self.flushed[index] = count
                buckets[index].inc(delta)
        delta_sum = self.sum - self.flushed_sum
        if delta_sum:
            self.flushed_sum = self.sum
            self.child._sum.inc(delta_sum)


def flush() -> None:
    """Move every tally's new counts into its Prometheus values (the sampler calls this before a
    scrape; counting schedules it at the end of the current loop iteration)."""
    global _flush_scheduled
    _flush_scheduled = False
    for tally in _tallies:
        tally.flush()


def schedule_flush() -> None:
    """Flush at the end of this event-loop iteration (at once outside a loop)."""
    global _flush_scheduled
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # counted outside an event loop: at once
        flush()
        return
    _flush_scheduled = True
    loop.call_soon(flush)
