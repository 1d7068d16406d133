"""Semantic search as a service: the hook the annotation service calls after each committed
write (it only queues), the background worker that embeds queued annotations in batches and
keeps their vectors, the start-up pass that embeds what is missing (also run once by commands
that write annotations: ``embed_missing``), and the query.

Async orchestration; imports the annotation model and store interface, semantic.{encoder,
index,vectors}, numpy and anyio. Encoding runs in a thread under a capacity limiter of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import numpy as np

from iiifsrv.annotations.model import Record, body_text
from iiifsrv.annotations.store import Scope, Store
from iiifsrv.semantic.encoder import Encoder
from iiifsrv.semantic.index import Hit, VectorIndex
from iiifsrv.semantic.vectors import Row, Vectors

log = logging.getLogger("iiifsrv.semantic")

BATCH = 64  # annotations embedded per model call
SCAN_PAGE = 500  # annotations read per step of the start-up pass
MAX_TEXT = 2000  # characters of an annotation's text embedded (the model reads 256 tokens)
QUEUE_LIMIT = 100_000  # queued writes beyond this are left to the next start-up pass
# Cosine similarity under which an annotation is not a result (unrelated texts score ~0-0.15).
MIN_SCORE = 0.2


def digest(model: str, rec: Record, text: str) -> str:
    """Names what a vector was computed from: a change of any part re-embeds the annotation."""
    raw = "\x1f".join((model, rec.canvas, rec.manifest, text))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


# The canvases (of those given) whose annotations a query leaves out.
Hide = Callable[[set[str]], Awaitable[set[str]]]


@dataclass(frozen=True)
class Result:
    hits: list[Hit]
    total: int


class Semantic:
    def __init__(
        self, store: Store, vectors: Vectors, encoder: Callable[[], Encoder], dimension: int
    ) -> None:
        self.store = store
        self.vectors = vectors
        self._make_encoder = encoder
        self._encoder: Encoder | None = None
        self.index = VectorIndex(dimension)
        self._queue: asyncio.Queue[Record] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._starting: asyncio.Lock | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._refresh_lock: asyncio.Lock | None = None
        self._kickoff: asyncio.Task[None] | None = None
        self._catching: asyncio.Task[None] | None = None
        self.embedded = 0  # annotations this engine has embedded (a command reports it)

    # -- the hook ------------------------------------------------------------------------

    def notify(self, rec: Record) -> None:
        """Called after a committed write (create, replace, delete): queue it, never block."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a script): the next start-up pass catches it up
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() < QUEUE_LIMIT:
            self._queue.put_nowait(rec)
        if not self._started and self._kickoff is None:
            self._kickoff = asyncio.create_task(self._start_logged())

    async def _start_logged(self) -> None:
        try:
            await self.start()
        except Exception:
            log.exception("semantic: could not start")

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Once: read the stored vectors, start the worker and the catch-up pass."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._started:
                return
            if self._queue is None:
                self._queue = asyncio.Queue()
            self._refresh_lock = asyncio.Lock()
            await self.vectors.open()
            await self.refresh()
            self._tasks.append(asyncio.create_task(self._work()))
            self._catching = asyncio.create_task(self._catch_up())
            self._tasks.append(self._catching)
            self._started = True

    async def close(self) -> None:
        if self._kickoff is not None:
            self._tasks.append(self._kickoff)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.vectors.close()

    async def idle(self) -> None:
        """Wait until every queued write is embedded (tests, the benchmark, shutdown)."""
        await self.start()
        assert self._queue is not None and self._catching is not None
        await asyncio.shield(self._catching)
        await self._queue.join()

    async def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = await anyio.to_thread.run_sync(
                self._make_encoder, limiter=self._limiter
            )
        return self._encoder

    async def refresh(self) -> None:
        """Apply what any process wrote since this one last looked."""
        assert self._refresh_lock is not None
        async with self._refresh_lock:
            while True:
                rows = await self.vectors.since(self.index.stamp)
                if not rows:
                    return
                self.index.apply(rows)

    # -- the worker ----------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._embed(batch)
            except Exception:
                log.exception("semantic: could not embed %d annotation(s)", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _embed(self, batch: list[Record]) -> None:
        latest = {rec.key: rec for rec in batch}  # the last write of each annotation wins
        encoder = await self.encoder()
        removed: list[Row] = []
        todo: list[tuple[Record, str, str]] = []
        for rec in latest.values():
            text = "" if rec.deleted else body_text(rec.doc)[:MAX_TEXT].strip()
            if not text:
                if self.index.digest(rec.key):
                    removed.append(Row(rec.key, rec.canvas, rec.manifest, encoder.name, "", None))
                continue
            mark = digest(encoder.name, rec, text)
            if self.index.digest(rec.key) != mark:
                todo.append((rec, text, mark))
        rows = removed
        if todo:
            matrix = await anyio.to_thread.run_sync(
                encoder.encode, [t for _, t, _ in todo], limiter=self._limiter
            )
            rows += [
                Row(rec.key, rec.canvas, rec.manifest, encoder.name, mark, matrix[i])
                for i, (rec, _, mark) in enumerate(todo)
            ]
        if rows:
            await self.vectors.put(rows)
            self.embedded += len(todo)
            await self.refresh()

    async def _catch_up(self) -> None:
        """Queue every live annotation whose vector is missing or stale, and tombstone vectors
        of annotations gone meanwhile (written while no worker ran: a crash, a script)."""
        assert self._queue is not None
        try:
            encoder = await self.encoder()
            seen: set[str] = set()
            offset = 0
            while True:
                page = await self.store.select(Scope("all"), offset, SCAN_PAGE)
                for rec in page:
                    seen.add(rec.key)
                    text = body_text(rec.doc)[:MAX_TEXT].strip()
                    want = digest(encoder.name, rec, text) if text else ""
                    if self.index.digest(rec.key) != want:
                        self._queue.put_nowait(rec)
                if len(page) < SCAN_PAGE:
                    break
                offset += SCAN_PAGE
            gone = [Row(key, "", "", encoder.name, "", None) for key in self.index.keys() - seen]
            if gone:
                await self.vectors.put(gone)
                await self.refresh()
        except Exception:
            log.exception("semantic: the catch-up pass failed")

    # -- the query -----------------------------------------------------------------------

    async def search(
        self, q: str, scope: Scope, offset: int, limit: int, hide: Hide | None = None
    ) -> Result:
        """The annotations in ``scope`` nearest in meaning to ``q``, best first (``limit`` of
        them from ``offset``), and how many reach MIN_SCORE in all. ``hide(canvases)`` names
        those of the hits' canvases whose annotations are left out before counting and paging
        (the ones the reader may not see)."""
        await self.start()
        await self.refresh()
        encoder = await self.encoder()
        matrix = await anyio.to_thread.run_sync(encoder.encode, [q], limiter=self._limiter)
        query: np.ndarray = matrix[0]

        def run() -> list[Hit]:
            return self.index.search(
                query, scope.kind, scope.uri, scope.canvases, scope.hidden,
                limit=len(self.index) or 1, min_score=MIN_SCORE,
            )  # fmt: skip

        everything = await anyio.to_thread.run_sync(run)
        if hide is not None:
            hidden = await hide({hit.canvas for hit in everything})
            if hidden:
                everything = [hit for hit in everything if hit.canvas not in hidden]
        return Result(everything[offset : offset + limit], len(everything))


async def embed_missing(
    store: Store, vectors: Vectors, encoder: Callable[[], Encoder], dimension: int
) -> int:
    """For a command that wrote annotations beside running servers (``enrich ocr``): once, what
    a server's start-up pass does: embed every annotation whose vector is missing or stale and
    drop the vectors of annotations gone. Servers apply the new rows at their next query.
    Returns how many annotations were embedded. The store stays open (the caller's)."""
    semantic = Semantic(store, vectors, encoder, dimension)
    try:
        await semantic.idle()
        return semantic.embedded
    finally:
        await semantic.close()
