"""Request accounting and ``GET /metrics``: what Front records for every response (route class,
status, latency, bytes), the per-worker sampler (cache tiers, pools, memory) and the endpoint.

HTTP layer; imports Starlette, telemetry, edge, access_log and lifecycle. Per request: one
monotonic clock pair, a small ``Exchange`` wrapping ``send``, three integer tallies looked up
once per (route, status), flushed into the Prometheus values once per event-loop iteration and
before each scrape (telemetry.Tally); cache hits and misses are the caches' own integer
counters, turned into Prometheus counters by the sampler (every few seconds and at each scrape),
so the hot replay path writes no metric file itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Send

from iiifsrv import telemetry
from iiifsrv.lifecycle import DRAIN
from iiifsrv.web.edge import correct

log = logging.getLogger("iiifsrv.metrics")

SAMPLE_SECONDS = 5.0

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/iiif/manifests", "presentation"),
    ("/iiif/collection", "presentation"),
    ("/iiif/activity", "presentation"),
    ("/annotations", "annotations"),
    ("/annotot", "annotations"),
    ("/sas", "annotations"),
    ("/media", "media"),
    ("/objects", "objects"),
    ("/spectra", "objects"),
    ("/viewer", "viewer"),
    ("/static", "viewer"),
    ("/session", "session"),
    ("/health", "health"),
    ("/metrics", "metrics"),
)


def route_class(path: str) -> str:
    """A small fixed set of labels (never the path itself, whose values are unbounded)."""
    if path.startswith("/iiif/3/") or path.startswith("/iiif/2/"):
        return "image_info" if path.endswith("/info.json") else "image"
    for prefix, name in _PREFIXES:
        if path.startswith(prefix):
            return name
    return "viewer" if path == "/" else "other"


class Exchange:
    """Wraps ``send`` for one request: remembers status and body bytes, and corrects the
    Cache-Control of errors and credentialed responses (web/edge.py)."""

    __slots__ = ("send", "status", "sent", "credentials", "check")

    def __init__(self, send: Send, credentials: bool, check: bool) -> None:
        self.send = send
        self.status = 0
        self.sent = 0
        self.credentials = credentials
        self.check = check  # routes that may set cookies: look at every response

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        elif kind == "http.response.start":
            status = self.status = message["status"]
            if status >= 400 or self.credentials or self.check:
                message = correct(message, self.credentials)
        await self.send(message)


class Recorder:
    """The per-process tallies of each (route, status), made once: requests, latency, bytes."""

    def __init__(self) -> None:
        self._children: dict[
            tuple[str, int], tuple[telemetry.Tally, telemetry.Tallied, telemetry.Tally]
        ] = {}
        self._latency: dict[str, telemetry.Tallied] = {}
        self._bytes: dict[str, telemetry.Tally] = {}

    def record(self, route: str, status: int, seconds: float, sent: int) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = self._children[(route, status)] = self._make(route, status)
        requests, latency, sent_bytes = children
        requests.count += 1
        sent_bytes.count += sent
        latency.observe(seconds)  # schedules the flush

    def _make(
        self, route: str, status: int
    ) -> tuple[telemetry.Tally, telemetry.Tallied, telemetry.Tally]:
        latency = self._latency.get(route)
        if latency is None:
            child = telemetry.LATENCY.labels(route)
            latency = self._latency[route] = telemetry.Tallied(child, telemetry.LATENCY_BUCKETS)
        sent = self._bytes.get(route)
        if sent is None:
            sent = self._bytes[route] = telemetry.Tally(telemetry.BYTES_SENT.labels(route))
        return telemetry.Tally(telemetry.REQUESTS.labels(route, str(status))), latency, sent


class Counted(Protocol):
    """A cache's own integer hit/miss counters (caches/memory.ByteLRU, and the shared cache's
    SharedStats); a ``currsize`` in bytes, where it has one, becomes iiifsrv_cache_bytes."""

    hits: int
    misses: int


class Sampler:
    """Turns the caches' own counters into Prometheus counters (by difference), and reads the
    gauges: cache bytes, connection pools, this worker's resident memory."""

    def __init__(
        self,
        tiers: dict[str, Counted],
        pools: Iterable[tuple[str, Callable[[], dict[str, int] | None]]] = (),
        s3: Callable[[], dict[str, int]] | None = None,
        shared: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.tiers = tiers
        self.pools = list(pools)
        self._seen: dict[str, tuple[int, int]] = {name: (0, 0) for name in tiers}
        # Other components' own counters, exported by difference: (read them, metric per name)
        self._deltas: list[tuple[Callable[[], dict[str, int]], dict[str, Any]]] = []
        if s3 is not None:
            s3_targets = {
                "gets": telemetry.S3_REQUESTS.labels("get"),
                "heads": telemetry.S3_REQUESTS.labels("head"),
                "lists": telemetry.S3_REQUESTS.labels("list"),
                "get_bytes": telemetry.S3_GET_BYTES,
                "failures": telemetry.S3_FAILURES.labels("failure"),
                "retries": telemetry.S3_FAILURES.labels("retry"),
            }
            self._deltas.append((s3, s3_targets))
        if shared is not None:
            events = ("puts", "too_large", "errors", "skipped", "leases", "waits")
            shared_targets = {
                name: telemetry.SHARED_EVENTS.labels(name.removesuffix("s")) for name in events
            }
            self._deltas.append((shared, shared_targets))
        self._delta_seen: dict[tuple[int, str], int] = {}

    def sample(self) -> None:
        telemetry.flush()
        for name, cache in self.tiers.items():
            hits, misses = cache.hits, cache.misses
            seen_hits, seen_misses = self._seen[name]
            if hits > seen_hits:
                telemetry.CACHE.labels(name, "hit").inc(hits - seen_hits)
            if misses > seen_misses:
                telemetry.CACHE.labels(name, "miss").inc(misses - seen_misses)
            self._seen[name] = (hits, misses)
            size = getattr(cache, "currsize", None)
            if size is not None:
                telemetry.CACHE_BYTES.labels(name).set(size)
        for store, stats in self.pools:
            values = stats()
            if values:
                for state, value in values.items():
                    telemetry.DB_POOL.labels(store, state).set(value)
        for index, (read, targets) in enumerate(self._deltas):
            now = read()
            for name, target in targets.items():
                current, seen = now.get(name, 0), self._delta_seen.get((index, name), 0)
                if current > seen:
                    target.inc(current - seen)
                self._delta_seen[(index, name)] = current
        telemetry.RSS.set(telemetry.resident_bytes())
        telemetry.DRAINING.set(1 if DRAIN.draining else 0)

    async def run(self) -> None:
        """Sample every few seconds until cancelled (the app's lifespan)."""
        while True:
            try:
                self.sample()
            except Exception:  # a metric must never stop a worker
                log.exception("metrics sampling failed")
            await anyio.sleep(SAMPLE_SECONDS)


def routes(sampler: Sampler) -> list[Route]:
    async def metrics(request: Request) -> Response:
        sampler.sample()
        body = generate_latest(telemetry.registry())
        return Response(
            body,
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
        )

    return [Route("/metrics", metrics, methods=["GET", "HEAD"])]
