"""The Prometheus metrics of a worker: defined once per process, incremented by the layers that
know (the service counts renders and source reads, the web layer requests and bytes).

Imports prometheus_client only. With several workers ``iiifsrv serve`` sets
PROMETHEUS_MULTIPROC_DIR before they start, so every value lives in a file there and one scrape
of any worker reports them all (see ``registry``).
"""

from __future__ import annotations

import os

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
