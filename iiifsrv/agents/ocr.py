"""``iiifsrv enrich ocr``: OCR of catalogue objects as ``supplementing`` line annotations written
through the AnnotationService by the OCR agent (recorded as Software, with tesseract's version
as generator), plus the page's ALTO and hOCR kept in <data>/ocr/<object>/ for the manifest.

Pages are read through the server's source layer, from a local image folder or an S3 root
(sources/objects.py: the same listing, ranged reads and decoding as the Image API).
One tesseract process per job (--jobs, default one per core), each single-threaded. Resumable
and idempotent: an object whose image (file or object version), languages and engine are
unchanged since its last run is skipped; a rerun replaces the agent's previous lines on that
canvas (kept as deleted versions).
Blocking entry ``run``; imports agents.{tesseract,outputs}, annotations.*, catalogue, imaging,
sources, state (the catalogue), ingest.run (progress bar), settings, and semantic (to embed the
new lines when semantic search is on).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from iiifsrv.agents import outputs, tesseract
from iiifsrv.annotations.model import Doc
from iiifsrv.annotations.service import AnnotationService
from iiifsrv.annotations.store import open_store
from iiifsrv.annotations.urls import Urls
from iiifsrv.catalogue import CatalogueObject
from iiifsrv.settings import Settings
from iiifsrv.sources.describe import Source, describe
from iiifsrv.sources.objects import RemoteImages, open_s3
from iiifsrv.sources.resolve import Resolver
from iiifsrv.tokens import User

STATE = "state.json"
# Larger pages are reduced to this many pixels before OCR (boxes are scaled back).
MAX_PIXELS = 60_000_000
LOCAL_BASE = "http://localhost"


@dataclass(frozen=True)
class Job:
    object_id: str
    image: str  # the page's identifier under the image root
    path: str  # its local file, or "" when the root is in object storage
    identity: str  # file: path, size, mtime; object: s3 URL and ETag (unchanged = same)
    lang: str
    remote: Settings | None = None  # object storage: the settings that open it, in the worker


@dataclass(frozen=True)
class Result:
    object_id: str
    status: str  # "done" | "unchanged" | "skipped" | "failed"
    message: str = ""
    lines: int = 0


class Pages:
    """Where the objects' pages are: the image root, local or in object storage, located as
    the server locates an identifier."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.remote: RemoteImages | None = None
        if settings.image_root.kind == "s3":
            self.remote = open_s3(settings.image_root, settings)

    def job(self, obj: CatalogueObject, lang: str) -> Job | None:
        """The OCR job of an image object's page, or None (A/V and multispectral: no text
        page). Raises when the page cannot be found (NotFound) or the store is down."""
        if obj.kind != "image" or not obj.image:
            return None
        if self.remote is not None:
            key, version = self.remote.locate(obj.image)
            identity = f"{self.remote.where}{key}:{version.tag}"
            return Job(obj.id, obj.image, "", identity, lang, self.settings)
        path = Resolver(self.settings.images_path).resolve(obj.image)
        st = os.stat(path)
        return Job(obj.id, obj.image, path, f"{path}:{st.st_size}:{st.st_mtime_ns}", lang)


_opened: dict[str, RemoteImages] = {}  # per process: one S3 client for all its pages


def page_source(job: Job) -> Source:
    """The page's description, read as the server reads it (a file, or ranged reads)."""
    if job.remote is None:
        return describe(job.path, os.stat(job.path))
    root = job.remote.image_root
    remote = _opened.get(str(root))
    if remote is None:
        remote = _opened[str(root)] = open_s3(root, job.remote)
    return remote.source(job.image)


def recognise(job: Job) -> tesseract.Page:
    """In a worker process: the page as 8-bit grey PNG (reduced if huge), then tesseract."""
    import pyvips

    from iiifsrv import imaging

    image = imaging.load_level(page_source(job), 0)
    if image.hasalpha():
        image = image.flatten(background=255)
    image = image.colourspace("b-w") if image.bands >= 3 else image.extract_band(0)
    if image.format != "uchar":
        image = image.cast("uchar") if image.max() <= 255 else (image / 257).cast("uchar")
    scale = 1.0
    if image.width * image.height > MAX_PIXELS:
        scale = (MAX_PIXELS / (image.width * image.height)) ** 0.5
        image = image.resize(scale)
    assert isinstance(image, pyvips.Image)
    with tempfile.TemporaryDirectory(prefix="iiifsrv-ocr-") as tmp:
        png = Path(tmp) / "page.png"
        image.pngsave(str(png), compression=1)
        return tesseract.recognise(png, job.lang, scale)


def line_annotation(canvas: str, manifest: str, line: tesseract.Line) -> Doc:
    """One machine-read line: supplementing, textGranularity line, an integer xywh target, the
    line's confidence and its words' (0-1, in the project's context)."""
    x, y, w, h = line.box
    return {
        "type": "Annotation",
        "motivation": "supplementing",
        "textGranularity": "line",
        "body": {"type": "TextualBody", "value": line.text, "format": "text/plain"},
        "target": {
            "type": "SpecificResource",
            "source": {
                "id": canvas,
                "type": "Canvas",
                "partOf": [{"id": manifest, "type": "Manifest"}],
            },  # fmt: skip
            "selector": {"type": "FragmentSelector", "value": f"xywh={x},{y},{w},{h}"},
        },
        "confidence": line.confidence,
        "wordConfidence": [word.confidence for word in line.words],
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _state(folder: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((folder / STATE).read_text(encoding="utf-8"))
        return state
    except (OSError, ValueError):
        return {}


class OcrRun:
    """One ``enrich ocr`` invocation over a settings' catalogue and annotation store."""

    def __init__(self, settings: Settings, *, agent: str = "ocr") -> None:
        self.settings = settings
        self.agent = User(name=agent, agent=True)
        self.urls = Urls(settings.public_url or LOCAL_BASE)
        self.engine = tesseract.version()

    def _fingerprint(self, job: Job) -> dict[str, str]:
        return {"image": job.identity, "lang": job.lang, "engine": f"tesseract {self.engine}"}

    def plan(
        self, objects: Iterable[CatalogueObject], lang: str, force: bool
    ) -> list[Job | Result]:
        out: list[Job | Result] = []
        pages = Pages(self.settings)
        for obj in objects:
            try:
                job = pages.job(obj, lang)
            except Exception as exc:  # a catalogue entry whose file is gone, a store down
                out.append(Result(obj.id, "failed", f"page not read: {exc}"))
                continue
            if job is None or not outputs.safe_object(obj.id):
                out.append(Result(obj.id, "skipped", f"{obj.kind} object: no page image"))
                continue
            folder = outputs.ocr_folder(self.settings.data_path, obj.id)
            if not force and _state(folder) == self._fingerprint(job):
                out.append(Result(obj.id, "unchanged"))
                continue
            out.append(job)
        return out

    async def store(self, job: Job, page: tesseract.Page) -> Result:
        """Write the lines (one batch: replaces this agent's earlier lines), then the files,
        then the state that makes a rerun skip the object — in that order, so an interrupted
        object is simply done again."""
        manifest = self.urls.public(f"/iiif/manifests/{job.object_id}")
        canvas = f"{manifest}/canvas/1"
        docs = [line_annotation(canvas, manifest, line) for line in page.lines]
        generator = {"name": tesseract.ENGINE, "version": self.engine,
                     "homepage": tesseract.HOMEPAGE}  # fmt: skip
        service = AnnotationService(open_store(self.settings))
        try:
            await service.create_batch(canvas, docs, self.agent, self.urls, generator=generator,
                                       max_items=max(1, len(docs)))  # fmt: skip
        finally:
            await service.store.close()
        folder = outputs.ocr_folder(self.settings.data_path, job.object_id)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / outputs.ALTO, page.alto)
        _write_atomic(folder / outputs.HOCR, page.hocr)
        _write_atomic(folder / STATE, json.dumps(self._fingerprint(job)).encode())
        return Result(job.object_id, "done", lines=len(docs))


async def _embed_lines(settings: Settings) -> int:
    """Embed what this run wrote (and drop the vectors of the lines it replaced)."""
    from iiifsrv.semantic import encoder
    from iiifsrv.semantic.engine import embed_missing
    from iiifsrv.semantic.vectors import open_vectors

    store = open_store(settings)
    try:
        return await embed_missing(store, open_vectors(settings), encoder.shared,
                                   encoder.DIMENSION)  # fmt: skip
    finally:
        await store.close()


def _worker_init() -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"


def run(
    settings: Settings,
    object_ids: list[str],
    *,
    lang: str = "eng",
    jobs: int = 0,
    force: bool = False,
    agent: str = "ocr",
    embed: bool = False,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
) -> list[Result]:
    """OCR the objects named (all image objects when ``object_ids`` is empty). With ``embed``
    (semantic search on), the new lines are embedded before returning, so that running servers
    find them by meaning at their next query (not only after their next start)."""
    from iiifsrv.ingest.run import Progress
    from iiifsrv.state import open_catalogue

    tesseract.check_languages(lang)
    catalogue = open_catalogue(settings)  # SQLite in data, or PostgreSQL (database_url)
    if object_ids:
        objects = []
        results: list[Result] = []
        for object_id in object_ids:
            obj = catalogue.get(object_id)
            if obj is None:
                results.append(Result(object_id, "failed", "no such object in the catalogue"))
            else:
                objects.append(obj)
    else:
        objects, results = catalogue.list(), []
    ocr = OcrRun(settings, agent=agent)
    planned = ocr.plan(objects, lang, force)
    work = [p for p in planned if isinstance(p, Job)]
    results += [p for p in planned if isinstance(p, Result)]
    workers = max(1, min(jobs or (os.cpu_count() or 1), len(work) or 1))
    progress = Progress(len(work), err)
    changed: list[str] = []

    def finish(job: Job, page: tesseract.Page | None, failure: str) -> None:
        if page is None:
            result = Result(job.object_id, "failed", failure)
        else:
            try:
                result = asyncio.run(ocr.store(job, page))
                changed.append(job.object_id)
            except Exception as exc:
                result = Result(job.object_id, "failed", str(exc) or type(exc).__name__)
        results.append(result)
        progress.step(job.object_id)

    if workers <= 1 or len(work) <= 1:
        for job in work:
            try:
                finish(job, recognise(job), "")
            except Exception as exc:
                finish(job, None, str(exc))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            futures: dict[Future[tesseract.Page], Job] = {
                pool.submit(recognise, job): job for job in work
            }
            for future in as_completed(futures):
                try:
                    finish(futures[future], future.result(), "")
                except Exception as exc:
                    finish(futures[future], None, str(exc))
    progress.clear()
    # The manifests of changed objects are rebuilt with their ALTO/hOCR links.
    for object_id in changed:
        obj = catalogue.get(object_id)
        if obj is not None:
            catalogue.upsert(CatalogueObject.from_json({**obj.to_json(), "updated": ""}))
    if embed and changed:
        try:
            count = asyncio.run(_embed_lines(settings))
            print(f"semantic search: {count} annotation(s) embedded", file=out)
        except Exception as exc:  # the lines are stored: a server's next start embeds them
            print(f"semantic search: not embedded now ({exc}); servers embed the lines at "
                  "their next start", file=err)  # fmt: skip
    for result in sorted(results, key=lambda r: r.object_id):
        detail = f"{result.lines} lines" if result.status == "done" else result.message
        print(f"{result.object_id}: {result.status}" + (f" ({detail})" if detail else ""),
              file=out)  # fmt: skip
    return results
