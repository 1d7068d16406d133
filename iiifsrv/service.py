"""The image service: cache → resolve → plan → passthrough or render → cache.

Async orchestration. Imports settings, errors, iiif (pure), sources, imaging, caches; never
Starlette. CPU-bound work runs in threads under its own capacity limiter.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import os
import sqlite3
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import anyio
from cachetools import LRUCache

from iiifsrv import dct_crop, imaging, telemetry
from iiifsrv.caches import described
from iiifsrv.caches.memory import ByteLRU
from iiifsrv.caches.shared import KEY_VERSION, SharedCache, open_shared
from iiifsrv.catalogue import CatalogueObject, CatalogueStore, SqliteCatalogue, Transform
from iiifsrv.conditional import strong_etag
from iiifsrv.encoders import media_type
from iiifsrv.errors import NotFound, NotImplementedFeature, Unavailable
from iiifsrv.iiif.model import ImageRequest, Limits
from iiifsrv.iiif.plan import EdgeTile, Plan, RawTile, plan
from iiifsrv.settings import Settings
from iiifsrv.sources import composite, computed
from iiifsrv.sources import remote as remote_blocks
from iiifsrv.sources.describe import NotAnImage, Source, describe
from iiifsrv.sources.objects import RemoteImages, open_s3
from iiifsrv.sources.resolve import Resolver, check_identifier, no_image
from iiifsrv.sources.s3 import ObjectChanged, S3Storage
from iiifsrv.sources.storage import StorageUnavailable

log = logging.getLogger("iiifsrv.service")

# Label children bound once (the service counts what only it knows: see telemetry.py); the
# per-request ones as integer tallies, flushed once per event-loop iteration.
_SOURCE_HIT = telemetry.Tally(telemetry.CACHE.labels("source", "hit"))
_SOURCE_MISS = telemetry.CACHE.labels("source", "miss")
_READ_DESCRIBE = telemetry.SOURCE_READS.labels("describe")
_READ_RAW = telemetry.Tally(telemetry.SOURCE_READS.labels("raw_tile"))
_READ_RENDER = telemetry.SOURCE_READS.labels("render")
_PASSTHROUGH = telemetry.Tally(telemetry.PASSTHROUGH)
_EDGE_CROPS = telemetry.Tally(telemetry.EDGE_CROPS)

# Edge tiles whose stored tile is at most this size are cut on the event loop (the lossless crop
# entropy-decodes the whole stored tile: ~10 us per KB here, so at most ~250 us of loop time);
# larger ones in a worker thread.
INLINE_CROP_BYTES = 24 * 1024


@dataclass(frozen=True)
class Located:
    """Where an identifier was found, and how to tell, with one or two lstat calls, that it
    still names the same file: the real file, the name under the root (a symlink may be
    retargeted), and for an extensionless identifier its folder (a better file may appear)."""

    real: str
    name: str
    name_id: tuple[int, int]  # (inode, mtime) of lstat(name)
    folder: str
    folder_mtime: int

    def check(self) -> os.stat_result | None:
        """The real file's stat when everything still holds, else None."""
        try:
            st = os.lstat(self.real)
            if not stat.S_ISREG(st.st_mode):
                return None
            if self.name != self.real:
                named = os.lstat(self.name)
                if (named.st_ino, named.st_mtime_ns) != self.name_id:
                    return None
            if self.folder and os.stat(self.folder).st_mtime_ns != self.folder_mtime:
                return None
        except OSError:
            return None
        return st


@dataclass(frozen=True)
class Planned:
    source: Source
    plan: Plan
    etag: str
    access: str = ""  # the access decision class ("" = public): part of every cache key

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
    def __init__(self, settings: Settings, catalogue: CatalogueStore | None = None) -> None:
        self.settings = settings
        # The app's one catalogue (iiifsrv.state); by default the embedded one in the data
        # directory, opened on first use.
        self._catalogue: CatalogueStore = catalogue or SqliteCatalogue(
            settings.data_path / "catalogue.sqlite3"
        )
        self.resolver = Resolver(settings.images_path)
        self.limits = Limits(settings.max_width, settings.max_height, settings.max_area)
        self.limiter = anyio.CapacityLimiter(settings.effective_render_threads)
        # Image renders: the limiter bounds them with the other CPU work, and they run on these
        # threads (a plain executor hop costs a fraction of anyio.to_thread's per call).
        self._render_pool = self._new_render_pool()
        # Lossless edge-tile crops (fractions of a millisecond) never queue behind renders.
        self.crop_limiter = anyio.CapacityLimiter(settings.effective_render_threads)
        self.render_options = imaging.RenderOptions(
            settings.jpeg_quality, settings.resize_kernel, settings.fast_decode
        )
        self.levels = imaging.DecodedLevels(settings.decoded_cache_mb * 1024 * 1024)
        # The web layer's per-URL cache holds most hits; this one serves equivalent URL forms
        # and coalesces concurrent renders. Together they hold at most 1.125 × cache_bytes.
        self.responses: ByteLRU[bytes] = ByteLRU(settings.cache_bytes // 8, settings.cache_max_item)
        self._paths: LRUCache[str, Located] = LRUCache(maxsize=8192)
        self._sources: LRUCache[str, Source] = LRUCache(maxsize=512)
        self._describing: dict[str, asyncio.Future[Source]] = {}
        self._rendering: dict[tuple[str, str], asyncio.Future[bytes]] = {}
        self._transforms: LRUCache[tuple[str, str, str], Transform] = LRUCache(maxsize=512)
        self._fitting: dict[tuple[str, str, str], asyncio.Future[Transform]] = {}
        root = settings.image_root
        # An S3 root (sources/objects.py): identifiers map to keys, read by ranged GETs.
        self.remote: RemoteImages | None = open_s3(root, settings) if root.kind == "s3" else None
        # Behind the in-process caches: one cache shared by every replica (None = not set).
        self.shared: SharedCache | None = open_shared(
            settings.cache_url,
            namespace=shared_namespace(settings),
            ttl_s=settings.cache_ttl,
            max_item=settings.cache_shared_max_item,
            timeout_ms=settings.cache_timeout_ms,
            lease_ms=settings.cache_lease_ms,
            backoff_s=settings.cache_backoff,
        )
        self.renders = 0  # images rendered by this process (not passthrough, not cache hits)
        self.inline_crops = 0  # edge tiles cut on the event loop (not in a worker thread)

    def _new_render_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            self.settings.effective_render_threads, thread_name_prefix="iiifsrv-render"
        )

    async def close(self) -> None:
        # Idle render threads end; an app started again gets new ones (created on first use).
        pool, self._render_pool = self._render_pool, self._new_render_pool()
        pool.shutdown(wait=False)
        if self.shared is not None:
            await self.shared.close()
        if self.remote is not None:
            self.remote.storage.close_connections()

    def shared_version(self, path: str, identity: str) -> str:
        """The source version in shared-cache keys: where the file is (under the image root,
        or its s3:// URL) and its identity (a file's inode, mtime and size; an object's key and
        ETag; for composites and computed images every part's)."""
        where = path if "://" in path else os.path.relpath(path, self.settings.images_path)
        return f"{where}|{identity}"

    # -- catalogue (multispectral objects) -------------------------------------------------

    def catalogue(self) -> CatalogueStore:
        """The app's catalogue (its reads find nothing when nothing was ingested; blocking)."""
        return self._catalogue

    def _lookup(self, object_id: str) -> CatalogueObject | None:
        return self._catalogue.get(object_id)

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

    async def _computed(self, name: computed.ComputedName, identifier: str) -> Source | None:
        """A computed image (pca, ratio, ...) of a multispectral object; None when the object is
        not one (then a bare ``<id>/pca`` may still be a file)."""
        obj = await self.catalogue_object(name.object_id)
        if obj is None or obj.kind != "multispectral":
            if name.op == "pca" and name.component is None:
                return None
            raise NotFound(f"no multispectral object {name.object_id!r} in the catalogue")
        by_name = {band.name: band for band in obj.bands}
        if name.op == "pca":
            bands = tuple(by_name)
            needed = computed.PCA_RGB if name.component is None else name.component
            if needed > len(bands):
                raise NotFound(
                    f"object {obj.id!r} has {len(bands)} bands, hence {len(bands)} principal "
                    f"components: no {name.op}" + ("" if name.component is None else f":{needed}")
                )
            channels = tuple(range(3)) if name.component is None else (name.component - 1,)
        else:
            bands = name.bands
            for band in bands:
                if band not in by_name:
                    raise NotFound(f"object {obj.id!r} has no band {band!r}")
            channels = (0,)
        parts = [await self.source(by_name[band].image) for band in bands]
        transform = await self._transform(obj, name.fit_key, name.op, bands, parts)
        return computed.make(identifier, parts, transform, channels)

    async def _transform(
        self, obj: CatalogueObject, key: str, op: str, bands: tuple[str, ...], parts: list[Source]
    ) -> Transform:
        """The fitted transform: from memory, else the catalogue, else fitted now and kept in the
        catalogue, so every tile (and every server process) uses the same one."""
        cache_key = (obj.id, key, obj.version)
        known = self._transforms.get(cache_key)
        if known is not None:
            return known
        pending = self._fitting.get(cache_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Transform] = asyncio.get_running_loop().create_future()
        self._fitting[cache_key] = future
        try:
            transform = await anyio.to_thread.run_sync(self._stored_transform, obj, key)
            if transform is None or transform.bands != bands:
                transform = await anyio.to_thread.run_sync(
                    imaging.fit_transform, op, bands, parts, limiter=self.limiter
                )
                await anyio.to_thread.run_sync(self._store_transform, obj, key, transform)
            self._transforms[cache_key] = transform
            future.set_result(transform)
            return transform
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._fitting[cache_key]

    def _stored_transform(self, obj: CatalogueObject, key: str) -> Transform | None:
        return self._catalogue.get_transform(obj.id, key, obj.version)

    def _store_transform(self, obj: CatalogueObject, key: str, transform: Transform) -> None:
        try:
            self._catalogue.put_transform(obj.id, key, obj.version, transform)
        except (sqlite3.Error, Unavailable) as exc:
            # A read-only or unreachable catalogue: the transform lives in memory.
            log.warning("cannot keep the %s transform of %s in the catalogue: %s", key, obj.id, exc)

    # -- sources ---------------------------------------------------------------------------

    def located(self, identifier: str) -> Located | None:
        """Where ``identifier`` was last found (for the web layer's per-URL cache)."""
        return self._paths.get(identifier)

    def _stat_cached(self, identifier: str) -> tuple[str, os.stat_result] | None:
        known = self._paths.get(identifier)
        if known is None:
            return None
        st = known.check()
        if st is None:
            self._paths.pop(identifier, None)
            return None
        return known.real, st

    def _remember_path(self, identifier: str, real: str, name: str) -> None:
        try:
            named = os.lstat(name)
            folder, folder_mtime = "", 0
            if os.path.basename(name) != identifier.rsplit("/", 1)[-1]:
                folder = os.path.dirname(name)
                folder_mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return
        self._paths[identifier] = Located(
            real, name, (named.st_ino, named.st_mtime_ns), folder, folder_mtime
        )

    def _check_source_size(self, source: Source) -> None:
        """An untiled source is decoded whole: refuse decompression bombs and giants."""
        limit = self.settings.max_source_pixels
        info = source.info
        if limit and not info.levels[0].tile_width and info.width * info.height > limit:
            raise NotImplementedFeature(
                f"this untiled image has {info.width}x{info.height} pixels, more than "
                f"max_source_pixels ({limit}): make a pyramidal derivative with iiifsrv ingest"
            )

    async def source(self, identifier: str) -> Source:
        """The current description of ``identifier``'s file; re-read when the file changed.

        A file that is not an image gets the same 404 as a missing one."""
        try:
            return await self._source(identifier)
        except NotAnImage:
            raise no_image(identifier) from None

    async def _source(self, identifier: str) -> Source:
        virtual = composite.parse(identifier)
        if virtual is not None:
            return await self._composite(virtual, identifier)
        derived = computed.parse(identifier)
        if derived is not None:
            made = await self._computed(derived, identifier)
            if made is not None:
                return made
        if self.remote is not None:
            return await self._remote_source(self.remote, identifier)
        hit = self._stat_cached(identifier)
        if hit is None:
            check_identifier(identifier)
            path, name = await anyio.to_thread.run_sync(self.resolver.locate, identifier)
            try:
                st = os.stat(path)
            except OSError:
                raise no_image(identifier) from None
            self._remember_path(identifier, path, name)
        else:
            path, st = hit
        known = self._sources.get(path)
        if (
            known
            and known.mtime_ns == st.st_mtime_ns
            and known.size == st.st_size
            and known.inode == st.st_ino
        ):
            _SOURCE_HIT.inc()
            return known
        _SOURCE_MISS.inc()
        pending = self._describing.get(path)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Source] = asyncio.get_running_loop().create_future()
        self._describing[path] = future
        try:
            found = await self._describe(path, st)
            self._check_source_size(found)
            self._sources[path] = found
            future.set_result(found)
            return found
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._describing[path]

    async def _describe(self, path: str, st: os.stat_result) -> Source:
        """The file's description: from the shared cache when another replica (or an earlier
        life of this one) read it, else read here and shared."""
        if self.shared is None:
            _READ_DESCRIBE.inc()
            return await anyio.to_thread.run_sync(describe, path, st)
        identity = f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        key = self.shared.key("desc", self.shared_version(path, identity))
        data = await self.shared.get(key)
        if data is not None:
            found = described.decode(data, path, st.st_mtime_ns, st.st_size, st.st_ino)
            if found is not None:
                return found
        _READ_DESCRIBE.inc()
        made = await anyio.to_thread.run_sync(describe, path, st)
        await self.shared.put(key, described.encode(made))
        return made

    async def _remote_source(self, remote: RemoteImages, identifier: str) -> Source:
        """From the S3 root: trusted for s3_revalidate seconds, then listed (and described)
        again; concurrent look-ups of one identifier share one."""
        known: Source | None = remote.fresh(identifier)
        if known is None:
            check_identifier(identifier)
            pending = self._describing.get("s3:" + identifier)
            if pending is not None:
                known = await asyncio.shield(pending)
            else:
                future: asyncio.Future[Source] = asyncio.get_running_loop().create_future()
                self._describing["s3:" + identifier] = future
                try:
                    known = await self._remote_describe(remote, identifier)
                    future.set_result(known)
                except BaseException as exc:
                    future.set_exception(exc)
                    future.exception()
                    raise
                finally:
                    del self._describing["s3:" + identifier]
        assert known is not None
        self._check_source_size(known)
        return known

    async def _remote_describe(self, remote: RemoteImages, identifier: str) -> Source:
        """Locate ``identifier`` in the bucket; describe its version unless this process
        knows it. With a shared cache, the header blocks a description reads (a TIFF's IFDs
        and tile index, a JPEG2000's header) are kept there by object version, so another
        replica describes the same version without a GET."""
        key, version, known = await anyio.to_thread.run_sync(remote.locate_known, identifier)
        if known is not None:
            return known
        if self.shared is None:
            return await anyio.to_thread.run_sync(remote.describe, key, version)
        shared_key = self.shared.key("s3head", remote.storage.where, key, version.tag)
        data = await self.shared.get(shared_key)
        given = remote_blocks.decode_blocks(data) if data is not None else None
        blocks: dict[int, bytes] = given if given is not None else {}
        found = await anyio.to_thread.run_sync(remote.describe, key, version, blocks)
        if given is None and blocks and (found.tiles or found.loader == "jp2kload"):
            await self.shared.put(shared_key, remote_blocks.encode_blocks(blocks))
        return found

    def list_images(self, limit: int = 10000) -> list[str]:
        """Identifiers of the images under the root, sorted (blocking; the landing page).
        An unreachable object store lists nothing (its requests say why)."""
        if self.remote is None:
            return self.resolver.list_images(limit)
        try:
            return self.remote.list_images(limit)
        except StorageUnavailable:
            return []

    async def root_problem(self) -> str:
        """Empty when the image root can be read, else why not (one line)."""
        if self.remote is not None:
            return await anyio.to_thread.run_sync(self.remote.health)
        path = self.settings.images_path
        if os.path.isdir(path) and os.access(path, os.R_OK):
            return ""
        return "the image folder cannot be read"

    # -- images ----------------------------------------------------------------------------

    async def plan(
        self,
        identifier: str,
        request: ImageRequest,
        *,
        limits: Limits | None = None,
        access: str = "",
    ) -> Planned:
        """The plan of a request; ``limits`` narrower than the server's for a degraded tier,
        ``access`` the access decision class (web/auth.py), kept in the ETag and cache key so no
        cache can answer one class with another's response."""
        source = await self.source(identifier)
        p = plan(request, source.info, limits or self.limits, passthrough=self.settings.passthrough)
        etag = (
            strong_etag(source.identity, p.key, access)
            if access
            else strong_etag(source.identity, p.key)
        )
        return Planned(source, p, etag, access)

    async def render(self, planned: Planned) -> ImageResult:
        source, p = planned.source, planned.plan
        key = (source.identity, p.key + ("|" + planned.access if planned.access else ""))
        t0 = time.perf_counter()
        cached = self.responses.get(key)
        if cached is not None:
            return ImageResult(cached, media_type(p.format), cached=True)
        if p.raw_tile is not None:
            if source.storage is None:  # a local file: one pread
                body = imaging.read_raw_tile(source, p.raw_tile)
            else:  # one ranged GET
                body = await self._remote_raw_tile(source, p.raw_tile)
            _READ_RAW.inc()
            _PASSTHROUGH.inc()
            self.responses.put(key, body, len(body))
            return ImageResult(
                body, "image/jpeg", passthrough=True, timings={"raw": time.perf_counter() - t0}
            )
        # From object storage, an edge tile of a level kept decoded is rendered from it (no GET);
        # of any other level it is cut from its stored tile (one GET, as an inner tile).
        if (
            p.edge_tile is not None
            and dct_crop.available()
            and (source.storage is None or not self.levels.keeps(source, p.edge_tile.level))
        ):
            cropped = await self._crop(source, p)
            if cropped is not None:
                self.responses.put(key, cropped, len(cropped))
                return ImageResult(
                    cropped, "image/jpeg", timings={"crop": time.perf_counter() - t0}
                )
        pending = self._rendering.get(key)
        if pending is not None:
            body = await asyncio.shield(pending)
            return ImageResult(body, media_type(p.format), cached=True)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering[key] = future
        timings: dict[str, float] = {}

        async def make() -> bytes:
            self.renders += 1
            _READ_RENDER.inc()
            t1 = time.perf_counter()
            async with self.limiter:
                made: bytes = await asyncio.get_running_loop().run_in_executor(
                    self._render_pool,
                    contextvars.copy_context().run,
                    imaging.render,
                    source,
                    p,
                    self.render_options,
                    self.levels,
                )
            timings["render"] = elapsed = time.perf_counter() - t1
            telemetry.RENDERS.labels(p.format).inc()
            telemetry.RENDER_SECONDS.observe(elapsed)
            return made

        try:
            if self.shared is None:
                body = await make()
            else:  # one render across replicas; a shared-cache outage means rendering here
                shared_key = self.shared.key(  # the access class too, as in ``key``
                    "img", self.shared_version(source.path, source.identity), key[1]
                )
                body, how = await self.shared.get_or_make(shared_key, make)
                if how != "made":
                    timings["shared"] = time.perf_counter() - t0
            future.set_result(body)
        except BaseException as exc:
            self._note_changed(exc)
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._rendering[key]
        self.responses.put(key, body, len(body))
        return ImageResult(
            body, media_type(p.format), cached="render" not in timings, timings=timings
        )

    async def _crop(self, source: Source, p: Plan) -> bytes | None:
        """A clipped edge tile cut from its stored tile (read and lossless crop, no decode): on
        the event loop when the stored tile is small, else in a worker thread (from object
        storage the GET is sent from the event loop first); None when libturbojpeg refuses the
        stream (then it is rendered)."""
        tile = p.edge_tile
        assert tile is not None
        _, size = imaging.raw_tile_range(source, tile)
        stored = None
        if source.storage is not None:
            stored = await self._remote_raw_tile(source, tile)
        try:
            if size <= INLINE_CROP_BYTES:
                # On the event loop: ~60-100 us for a 10 KB tile, less than the hop to a
                # worker thread and back costs (and the hop's GIL hand-offs made the p99).
                body = imaging.crop_edge_tile(source, tile, stored)
                self.inline_crops += 1
            else:
                body = await anyio.to_thread.run_sync(
                    imaging.crop_edge_tile, source, tile, stored, limiter=self.crop_limiter
                )
        except ObjectChanged as exc:
            self._note_changed(exc)
            raise
        except dct_crop.CropError as exc:
            log.warning("edge tile of %s rendered instead of cropped: %s", source.path, exc)
            return None
        _READ_RAW.inc()
        _EDGE_CROPS.inc()
        return body

    async def _remote_raw_tile(self, source: Source, tile: RawTile | EdgeTile) -> bytes:
        """A stored JPEG tile from object storage (JPEGTables spliced in): one ranged GET, on
        the event loop where the storage can (S3: no thread hop, ~0.4 ms of CPU less per
        tile), else in a worker thread."""
        offset, count = imaging.raw_tile_range(source, tile)
        storage = source.storage
        try:
            if isinstance(storage, S3Storage):
                data = await storage.read_async(source.key, offset, count, etag=source.version)
            else:
                data = await anyio.to_thread.run_sync(source.read, offset, count)
        except ObjectChanged as exc:
            self._note_changed(exc)
            raise
        return imaging.raw_tile_stream(source, tile, data)

    def _note_changed(self, exc: BaseException) -> None:
        """An object replaced in the store while it was read is listed again next time."""
        if isinstance(exc, ObjectChanged) and self.remote is not None:
            self.remote.changed(exc.key)


def shared_namespace(settings: Settings) -> str:
    """The prefix of every shared key: the key format's version and the settings the stored
    bytes depend on, so replicas configured differently never exchange images."""
    depends = (
        f"{settings.jpeg_quality}|{settings.resize_kernel}|{settings.max_width}|"
        f"{settings.max_height}|{settings.max_area}"
    )
    return "iiifsrv:" + KEY_VERSION + ":" + hashlib.sha256(depends.encode()).hexdigest()[:8]
