"""Run an ingest: turn sources into jobs, run them (in worker processes), record the catalogue.

Blocking; imports the standard library, catalogue, ingest.{profiles,derive,bands},
sources.{composite,describe,resolve}, imaging (fitting computed images), similarity (the
perceptual hash of each ingested image) and pyvips (in the jobs). One job
per object; a job that fails reports one line and leaves every other output untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import pyvips

from iiifsrv import imaging, similarity
from iiifsrv.catalogue import (
    Band,
    CatalogueObject,
    CatalogueStore,
    SqliteCatalogue,
    Transform,
    now_iso,
)
from iiifsrv.errors import IIIFError
from iiifsrv.ingest import bands as bandsets
from iiifsrv.ingest import derive
from iiifsrv.ingest.profiles import Profile
from iiifsrv.ingest.publish import S3Target
from iiifsrv.sources import composite
from iiifsrv.sources.describe import describe
from iiifsrv.sources.resolve import Resolver

CATALOGUE_NAME = "catalogue.sqlite3"


@dataclass(frozen=True)
class Job:
    object_id: str
    source: str  # as given on the command line (or found in a given folder)
    bands: bandsets.BandSet | None = None  # multispectral objects
    error: str = ""  # a problem found while planning: the job fails with it


@dataclass(frozen=True)
class Options:
    images: Path
    profile: Profile
    label: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    rights: str = ""
    target: S3Target | None = None  # an S3 image root: images is the staging folder


@dataclass(frozen=True)
class Outcome:
    object_id: str
    source: str
    status: str  # "ingested" | "skipped" | "failed"
    message: str
    obj: CatalogueObject | None = None
    seconds: float = 0.0
    transforms: tuple[tuple[str, Transform], ...] = ()  # computed images fitted at ingest


# -- planning ------------------------------------------------------------------------------


def check_object_id(object_id: str) -> str:
    bad = not object_id or object_id.startswith(".") or object_id.startswith("composite:")
    if bad or any(c in object_id for c in '/\\:,?#%"<>|*') or not object_id.isprintable():
        raise derive.IngestError(
            f"invalid identifier {object_id!r}: no '/', ':', ',', '%', '?', '#' and no "
            "leading '.'; use --id to choose another"
        )
    return object_id


def _job_for_file(path: Path, object_id: str) -> Job:
    if path.suffix.lower() in (".tif", ".tiff"):
        stack = bandsets.tiff_bands(path)
        if stack is not None:
            return Job(object_id, str(path), stack)
    return Job(object_id, str(path))


def plan(sources: list[str], object_id: str | None = None) -> list[Job]:
    """One job per object: a file, a band folder, or each image of a collection folder."""
    if object_id and len(sources) != 1:
        return [Job(object_id, " ".join(sources), error="--id needs exactly one SRC")]
    jobs: list[Job] = []

    def add(path: Path, given_id: str | None, top: bool) -> None:
        oid = given_id or (path.name if path.is_dir() else path.stem)
        try:
            check_object_id(oid)
            if path.is_dir():
                if bandsets.is_band_folder(path):
                    jobs.append(Job(oid, str(path), bandsets.folder_bands(path)))
                    return
                if given_id and top:
                    raise derive.IngestError("--id applies to one file or one band folder")
                entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
                for entry in entries:
                    if entry.is_dir() or entry.suffix.lower() in bandsets.IMAGE_SUFFIXES:
                        add(entry, None, False)
                return
            if not path.exists():
                raise derive.IngestError("no such file or folder")
            jobs.append(_job_for_file(path, oid))
        except derive.IngestError as exc:
            jobs.append(Job(oid, str(path), error=str(exc)))

    for src in sources:
        add(Path(src), object_id, True)
    first: dict[str, str] = {}
    out = []
    for job in jobs:
        if job.object_id in first and not job.error:
            job = replace(
                job, error=f"identifier {job.object_id!r} also comes from {first[job.object_id]}"
            )
        first.setdefault(job.object_id, job.source)
        out.append(job)
    return out


# -- one job (runs in a worker process) ----------------------------------------------------


def _hash_files(paths: list[str], profile: Profile, kind: str) -> str:
    digest = hashlib.sha256(f"{kind}\n{profile.name}:{profile.digest}\n".encode())
    for path in paths:
        digest.update(f"{os.path.basename(path)}\n".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _outputs_exist(obj: CatalogueObject, images: Path) -> bool:
    ids = [b.image for b in obj.bands] or [obj.image]
    return all(
        any((images / f"{ident}{ext}").is_file() for ext in (".tif", ".jp2")) for ident in ids
    )


def content_hash(job: Job, profile: Profile) -> str:
    if job.bands is not None:
        return _hash_files(list(job.bands.files), profile, "multispectral")
    return _hash_files([job.source], profile, "image")


def _check_not_source(target_stem: Path, sources: list[str]) -> None:
    for ext in (".tif", ".jp2"):
        target = target_stem.with_name(target_stem.name + ext)
        for src in sources:
            with contextlib.suppress(OSError):
                if target.exists() and os.path.samefile(target, src):
                    raise derive.IngestError(
                        f"the derivative {target} would overwrite its own master; "
                        "ingest into another --images folder"
                    )


def _ingest_image(job: Job, opts: Options, digest: str) -> CatalogueObject:
    stem = opts.images / job.object_id
    _check_not_source(stem, [job.source])
    derive.remove_stale_parts(stem.parent)
    image, encoding = derive.prepare(derive.load_master(job.source), opts.profile, band=False)
    derive.write(image, stem, encoding, opts.profile.tile)
    return CatalogueObject(
        id=job.object_id,
        label=opts.label or job.object_id,
        kind="image",
        metadata=dict(opts.metadata),
        rights=opts.rights,
        source=job.source,
        image=job.object_id,
        width=image.width,
        height=image.height,
        content_hash=digest,
    )


def fit_computed(obj: CatalogueObject, paths: dict[str, Path]) -> tuple[tuple[str, Transform], ...]:
    """The PCA basis and the featured ratio's range, fitted on the written derivatives exactly as
    the server would fit them on first use (same level, same code). Best effort: what cannot be
    fitted now is fitted by the server on first request."""
    try:
        sources = {name: describe(str(path), os.stat(path)) for name, path in paths.items()}
        names = tuple(b.name for b in obj.bands)
        out = [("pca", imaging.fit_transform("pca", names, [sources[n] for n in names]))]
        ratio = obj.featured_ratio()
        if ratio is not None:
            parts = [sources[n] for n in ratio]
            out.append((f"ratio:{','.join(ratio)}", imaging.fit_transform("ratio", ratio, parts)))
    except (pyvips.Error, IIIFError, ValueError, OSError):  # LinAlgError is a ValueError
        return ()
    return tuple(out)


def _ingest_bands(
    job: Job, opts: Options, digest: str
) -> tuple[CatalogueObject, tuple[tuple[str, Transform], ...]]:
    assert job.bands is not None
    folder = opts.images / job.object_id
    prepared = []
    first: tuple[str, int, int] | None = None
    for band in job.bands.bands:
        where = f"band {band.name} ({os.path.basename(band.path)})"
        try:
            master = derive.load_master(band.path, band.page)
        except derive.IngestError as exc:
            raise derive.IngestError(f"{where}: {exc}") from None
        image, encoding = derive.prepare(master, opts.profile, band=True)
        if first is None:
            first = (band.name, image.width, image.height)
        elif (image.width, image.height) != first[1:]:
            raise derive.IngestError(
                f"{where} is {image.width}x{image.height} but band {first[0]} is "
                f"{first[1]}x{first[2]}: all bands must share the same dimensions"
            )
        prepared.append((band, image, encoding))
    assert first is not None
    for band, _, _ in prepared:
        _check_not_source(folder / band.name, [band.path])
    derive.remove_stale_parts(folder)
    written: dict[str, Path] = {}
    for band, image, encoding in prepared:
        try:
            written[band.name] = derive.write(
                image, folder / band.name, encoding, opts.profile.tile
            )
        except derive.IngestError as exc:
            raise derive.IngestError(f"band {band.name}: {exc}") from None
    catalogued = tuple(
        Band(b.name, b.wavelength_nm, f"{job.object_id}/{b.name}", b.label) for b, _, _ in prepared
    )
    composites = bandsets.default_composites(
        catalogued, lambda names: composite.identifier(job.object_id, names)
    )
    set_ = job.bands
    obj = CatalogueObject(
        id=job.object_id,
        label=opts.label or set_.label or job.object_id,
        kind="multispectral",
        metadata={**set_.metadata, **opts.metadata},
        rights=opts.rights or set_.rights,
        source=job.source,
        image=composites[0].image if composites else catalogued[0].image,
        width=first[1],
        height=first[2],
        bands=catalogued,
        composites=composites,
        content_hash=digest,
    )
    return obj, fit_computed(obj, written)


def execute(job: Job, opts: Options, previous: CatalogueObject | None) -> Outcome:
    """Ingest one object; never raises for a bad input (the outcome says what went wrong)."""
    t0 = time.perf_counter()

    fitted: tuple[tuple[str, Transform], ...] = ()

    def done(status: str, message: str, obj: CatalogueObject | None = None) -> Outcome:
        seconds = time.perf_counter() - t0
        return Outcome(job.object_id, job.source, status, message, obj, seconds, fitted)

    if job.error:
        return done("failed", job.error)
    try:
        digest = content_hash(job, opts.profile)
        if (
            previous is not None
            and previous.content_hash == digest
            and (
                opts.target.outputs_exist(previous)
                if opts.target
                else _outputs_exist(previous, opts.images)
            )
        ):
            return done("skipped", "unchanged", previous)
        if job.bands is not None:
            obj, fitted = _ingest_bands(job, opts, digest)
            what = f"multispectral, {len(obj.bands)} bands, {obj.width}x{obj.height}"
        else:
            obj = _ingest_image(job, opts, digest)
            what = f"image, {obj.width}x{obj.height}"
        return done("ingested", f"{what}, profile {opts.profile.name}", obj)
    except derive.IngestError as exc:
        return done("failed", str(exc))
    except pyvips.Error as exc:
        return done("failed", f"corrupt or unreadable image: {derive._first_line(exc)}")
    except OSError as exc:
        return done("failed", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))


def _worker_init() -> None:
    """Worker processes die with the ingest that started them (Linux), never orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


# -- progress ------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal's stderr (silent when stderr is not a terminal)."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = total > 0 and stream.isatty()

    def _draw(self, note: str = "") -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {note[:40]:<40}")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()

    def step(self, note: str) -> None:
        self.done += 1
        self._draw(note)


# -- the run -------------------------------------------------------------------------------


def _outcomes(
    jobs: list[Job], opts: Options, previous: dict[str, CatalogueObject | None], workers: int
) -> Iterator[Outcome]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield execute(job, opts, previous.get(job.object_id))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        futures: dict[Future[Outcome], Job] = {
            pool.submit(execute, job, opts, previous.get(job.object_id)): job for job in jobs
        }
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # a worker that died (e.g. killed by the OOM killer)
                yield Outcome(job.object_id, job.source, "failed", f"worker failed: {exc}")


def _remove_dropped_bands(
    old: CatalogueObject | None,
    new: CatalogueObject,
    images: Path,
    target: S3Target | None,
    err: IO[str],
) -> None:
    """Delete the derivatives of bands the new version of an object no longer has (in the
    image folder, or in the bucket of an S3 root)."""
    if old is None or not old.bands:
        return
    keep = {b.image for b in new.bands}
    dropped = [band.image for band in old.bands if band.image not in keep]
    for image in dropped:
        for ext in (".tif", ".jp2"):
            with contextlib.suppress(OSError):
                os.unlink(images / f"{image}{ext}")
    if target is not None and dropped:
        try:
            target.remove(dropped)
        except derive.IngestError as exc:  # the catalogue no longer names them: only a leftover
            print(f"warning: {exc}", file=err, flush=True)


def run(
    sources: list[str],
    *,
    images: Path,
    data: Path,
    profile: Profile,
    jobs: int = 1,
    object_id: str | None = None,
    label: str = "",
    metadata: dict[str, str] | None = None,
    rights: str = "",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    target: S3Target | None = None,
    catalogue: CatalogueStore | None = None,
) -> list[Outcome]:
    """Ingest ``sources``; print one line per object and a summary; return the outcomes.
    Objects go to ``catalogue`` (by default the SQLite one in ``data``)."""
    t0 = time.perf_counter()
    out = out or sys.stdout
    err = err or sys.stderr
    images.mkdir(parents=True, exist_ok=True)
    catalogue = catalogue or SqliteCatalogue(data / CATALOGUE_NAME)
    planned = plan(sources, object_id)
    opts = Options(images.resolve(), profile, label, dict(metadata or {}), rights, target)
    previous = {job.object_id: catalogue.get(job.object_id) for job in planned}
    resolver = Resolver(opts.images)
    hashes = similarity.hashes_for(catalogue)
    progress = Progress(len(planned), err)
    results: list[Outcome] = []
    for outcome in _outcomes(planned, opts, previous, jobs):
        # The perceptual hash for "similar images", from the derivative's thumbnail (before an
        # S3 upload removes the staged file).
        found = None
        if outcome.status == "ingested" and outcome.obj is not None:
            found = similarity.fingerprint_object(outcome.obj, resolver)
        if target is not None and outcome.status == "ingested" and outcome.obj is not None:
            try:  # uploaded and verified before the catalogue records it
                target.publish(outcome.obj, opts.images)
            except derive.IngestError as exc:
                outcome = replace(outcome, status="failed", message=str(exc), obj=None)
        if outcome.status == "ingested" and outcome.obj is not None:
            obj = replace(outcome.obj, updated=now_iso())
            catalogue.upsert(obj)
            for key, transform in outcome.transforms:
                catalogue.put_transform(obj.id, key, obj.version, transform)
            _remove_dropped_bands(previous.get(obj.id), obj, opts.images, target, err)
            if found is not None and hashes is not None:
                similarity.keep(hashes, obj, found)
        progress.clear()
        mark = {"ingested": "ok", "skipped": "skipped", "failed": "FAILED"}[outcome.status]
        line = f"{mark:<8} {outcome.object_id}: {outcome.message}"
        if outcome.status == "ingested":
            line += f" ({outcome.seconds:.1f} s)"
        if outcome.status == "failed":
            line += f"  [{outcome.source}]"
        print(line, file=out, flush=True)
        progress.step(outcome.object_id)
        results.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    progress.clear()
    counts = {
        s: sum(1 for r in results if r.status == s) for s in ("ingested", "skipped", "failed")
    }
    print(
        f"ingest: {counts['ingested']} ingested, {counts['skipped']} skipped, "
        f"{counts['failed']} failed in {time.perf_counter() - t0:.1f} s "
        f"(profile {profile.name}, images in {target or images}, catalogue {catalogue.where})",
        file=out,
        flush=True,
    )
    return results
