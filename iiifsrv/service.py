"""The image service: cache → resolve → plan → passthrough or render → cache.

Async orchestration. Imports settings, errors, iiif (pure), sources, imaging, caches; never
Starlette. CPU-bound work runs in threads under its own capacity limiter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from dataclasses import dataclass, field

import anyio
from cachetools import LRUCache

from iiifsrv import imaging
from iiifsrv.caches.memory import ByteLRU
from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.conditional import strong_etag
from iiifsrv.encoders import media_type
from iiifsrv.errors import NotFound
from iiifsrv.iiif.model import ImageRequest, Limits
from iiifsrv.iiif.plan import Plan, plan
from iiifsrv.settings import Settings
from iiifsrv.sources import composite
from iiifsrv.sources.describe import Source, describe
from iiifsrv.sources.resolve import Resolver, check_identifier

log = logging.getLogger("iiifsrv.service")


@dataclass(frozen=True)
class Planned:
    source: Source
    plan: Plan
    etag: str

    @property
    def last_modified(self) -> float:
        return self.source.mtime


@dataclass
class ImageResult:
    body: bytes
    media_type: str
    passthrough: bool = False
    cached: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class ImageService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = Resolver(settings.images_path)
        self.limits = Limits(settings.max_width, settings.max_height, settings.max_area)
        self.limiter = anyio.CapacityLimiter(settings.effective_render_threads)
        # The web layer's per-URL cache holds most hits; this one serves equivalent URL forms
        # and coalesces concurrent renders. Together they hold at most 1.125 × cache_bytes.
        self.responses: ByteLRU[bytes] = ByteLRU(settings.cache_bytes // 8, settings.cache_max_item)
        # identifier -> (path, folder, folder mtime); the folder is set when the identifier had
        # no extension, so a better file appearing there (a new derivative) is picked up.
        self._paths: LRUCache[str, tuple[str, str, int]] = LRUCache(maxsize=8192)
        self._sources: LRUCache[str, Source] = LRUCache(maxsize=512)
        self._describing: dict[str, asyncio.Future[Source]] = {}
        self._rendering: dict[tuple[str, str], asyncio.Future[bytes]] = {}
        self._catalogue: Catalogue | None = None

    # -- catalogue (multispectral objects) -------------------------------------------------

    def catalogue(self) -> Catalogue | None:
        """The catalogue in the data directory, or None if nothing was ingested (blocking)."""
        if self._catalogue is None:
            path = self.settings.data_path / "catalogue.sqlite3"
            if not path.is_file():
                return None
            self._catalogue = Catalogue(path)
        return self._catalogue

    def _lookup(self, object_id: str) -> CatalogueObject | None:
        catalogue = self.catalogue()
        return catalogue.get(object_id) if catalogue is not None else None

    async def catalogue_object(self, object_id: str) -> CatalogueObject | None:
        """The catalogue's entry for ``object_id`` (None when absent or there is no catalogue)."""
        if not object_id:
            return None
        return await anyio.to_thread.run_sync(self._lookup, object_id)

    async def spectral_object(self, identifier: str) -> str:
        """The multispectral object a band or composite identifier belongs to, or ""."""
        object_id = identifier.rpartition("/")[0]
        obj = await self.catalogue_object(object_id)
        return obj.id if obj is not None and obj.kind == "multispectral" else ""

    async def _composite(self, name: composite.CompositeName, identifier: str) -> Source:
        bands = name.bands
        if bands is None:
            obj = await self.catalogue_object(name.object_id)
            known = {c.name: c.image for c in obj.composites} if obj else {}
            if name.spec not in known:
                raise NotFound(f"object {name.object_id!r} has no {name.spec} composite")
            target = composite.parse(known[name.spec])
            if target is None or target.bands is None:
                raise NotFound(f"object {name.object_id!r} has no {name.spec} composite")
            bands = target.bands
        parts = [await self.source(f"{name.object_id}/{band}") for band in bands]
        return composite.combine(identifier, parts)

    # -- sources ---------------------------------------------------------------------------

    def _stat_cached(self, identifier: str) -> tuple[str, os.stat_result] | None:
        known = self._paths.get(identifier)
        if known is None:
            return None
        path, folder, folder_mtime = known
        try:
            st = os.lstat(path)
            stale = folder and os.stat(folder).st_mtime_ns != folder_mtime
        except OSError:
            stale = True
        if stale or not stat.S_ISREG(st.st_mode):
            self._paths.pop(identifier, None)
            return None
        return path, st

    def _remember_path(self, identifier: str, path: str) -> None:
        folder, folder_mtime = "", 0
        if os.path.basename(path) != identifier.rsplit("/", 1)[-1]:
            folder = os.path.dirname(path)
            try:
                folder_mtime = os.stat(folder).st_mtime_ns
            except OSError:
                return
        self._paths[identifier] = (path, folder, folder_mtime)

    async def source(self, identifier: str) -> Source:
        """The current description of ``identifier``'s file; re-read when the file changed."""
        virtual = composite.parse(identifier)
        if virtual is not None:
            return await self._composite(virtual, identifier)
        hit = self._stat_cached(identifier)
        if hit is None:
            check_identifier(identifier)
            path = await anyio.to_thread.run_sync(self.resolver.resolve, identifier)
            try:
                st = os.stat(path)
            except OSError:
                raise NotFound(f"no image with identifier {identifier!r}") from None
            self._remember_path(identifier, path)
        else:
            path, st = hit
        known = self._sources.get(path)
        if known and known.mtime_ns == st.st_mtime_ns and known.size == st.st_size:
            return known
        pending = self._describing.get(path)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Source] = asyncio.get_running_loop().create_future()
        self._describing[path] = future
        try:
            described = await anyio.to_thread.run_sync(describe, path, st)
            self._sources[path] = described
            future.set_result(described)
            return described
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._describing[path]

    # -- images ----------------------------------------------------------------------------

    async def plan(self, identifier: str, request: ImageRequest) -> Planned:
        source = await self.source(identifier)
        p = plan(request, source.info, self.limits, passthrough=self.settings.passthrough)
        return Planned(source, p, strong_etag(source.identity, p.key))

    async def render(self, planned: Planned) -> ImageResult:
        source, p = planned.source, planned.plan
        key = (source.identity, p.key)
        t0 = time.perf_counter()
        cached = self.responses.get(key)
        if cached is not None:
            return ImageResult(cached, media_type(p.format), cached=True)
        if p.raw_tile is not None:
            body = imaging.read_raw_tile(source, p.raw_tile)
            self.responses.put(key, body, len(body))
            return ImageResult(
                body, "image/jpeg", passthrough=True, timings={"raw": time.perf_counter() - t0}
            )
        pending = self._rendering.get(key)
        if pending is not None:
            body = await asyncio.shield(pending)
            return ImageResult(body, media_type(p.format), cached=True)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering[key] = future
        try:
            body = await anyio.to_thread.run_sync(
                imaging.render, source, p, self.settings.jpeg_quality, limiter=self.limiter
            )
            future.set_result(body)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._rendering[key]
        self.responses.put(key, body, len(body))
        return ImageResult(body, media_type(p.format), timings={"render": time.perf_counter() - t0})
