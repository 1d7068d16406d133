"""The presentation service: keeps stored manifests in step with the catalogue, registers and
removes manifests, and hands the web layer stored bytes, collections and the change stream.

Blocking (call from a thread). Imports the catalogue, media (probe), the builder, store,
collections, activity and validation modules, settings and errors; never Starlette.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from iiifsrv import media
from iiifsrv.catalogue import CatalogueObject, CatalogueStore, SqliteCatalogue
from iiifsrv.conditional import strong_etag
from iiifsrv.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IIIFError,
    NotFound,
    PreconditionFailed,
)
from iiifsrv.presentation import activity, collections, validate
from iiifsrv.presentation.auth import User
from iiifsrv.presentation.builder import Hooks, build_manifest, manifest_url
from iiifsrv.presentation.files import FileManifestStore
from iiifsrv.presentation.store import (
    NEW,
    STORED_BASE,
    ManifestStore,
    Record,
    canvas_key,
    changed_meanwhile,
    check_id,
    neutral,
    publish_json,
)
from iiifsrv.settings import Settings
from iiifsrv.tokens import parse_tokens

log = logging.getLogger("iiifsrv.presentation")

MANIFESTS_PATH = "/iiif/manifests/"
# Earlier versions referenced annotation containers whose segment encoded the whole canvas URI
# under STORED_BASE; every such segment starts with this (base64url of 24 bytes: no padding).
_LEGACY_SEGMENT = base64.urlsafe_b64encode(f"{STORED_BASE}/".encode()).decode()


class Presentation:
    def __init__(
        self,
        settings: Settings,
        hooks: Hooks | None = None,
        *,
        catalogue: CatalogueStore | None = None,
        store: ManifestStore | None = None,
        collection_page_size: int = collections.PAGE_SIZE,
        activity_page_size: int = activity.PAGE_SIZE,
        probe: Callable[[str], media.MediaInfo] | None = None,
    ) -> None:
        self.settings = settings
        # Duration and frame size of an A/V file named relative to the image root (a folder
        # by default; the app passes one that reads an S3 root too).
        self.probe = probe or (lambda path: media.probe(self.images / path))
        self.hooks = hooks or Hooks()
        self.data = settings.data_path
        self.images = settings.images_path
        # Both open on first use, so creating the app has no side effects on the data
        # directory; iiifsrv.state chooses their backends (the embedded ones by default).
        self.catalogue: CatalogueStore = catalogue or SqliteCatalogue(
            self.data / "catalogue.sqlite3"
        )
        self.store: ManifestStore = store or FileManifestStore(self.data)
        self.collection_page_size = collection_page_size
        self.activity_page_size = activity_page_size
        self._sync_lock = threading.Lock()
        self._seen: tuple[Any, ...] | None = None
        self._upgrade_lock = threading.Lock()

    # -- keeping catalogue manifests current -------------------------------------------------

    def _catalogue_signature(self) -> tuple[Any, ...]:
        return (self.hooks.signature, self.catalogue.changes())

    def _versions(self, objects: list[CatalogueObject]) -> str:
        return json.dumps(
            {"objects": {o.id: o.updated for o in objects}, "hooks": self.hooks.signature},
            sort_keys=True,
        )

    def _complete(self, obj: CatalogueObject) -> CatalogueObject:
        """Fill in an A/V object's duration (and video size) from the file when missing."""
        if obj.kind not in ("audio", "video") or not obj.media:
            return obj
        if obj.duration and (obj.kind == "audio" or (obj.width and obj.height)):
            return obj
        info = self.probe(obj.media)
        return dataclasses.replace(
            obj,
            duration=obj.duration or info.duration,
            width=obj.width or info.width,
            height=obj.height or info.height,
        )

    def _build(
        self, manifest_id: str, objects: list[CatalogueObject], label: str | None
    ) -> dict[str, Any]:
        complete = [self._complete(o) for o in objects]
        doc = build_manifest(STORED_BASE, manifest_id, complete, label=label, hooks=self.hooks)
        problems = validate.errors(doc, "Manifest")
        if problems:
            raise BadRequest(f"built manifest is invalid: {problems[0]}")
        return doc

    def sync(self, force: bool = False) -> None:
        """Build manifests of new or changed catalogue objects; delete those of removed ones.

        Cheap when nothing changed (one read of the catalogue's change counter). Processes
        take the store's sync lock (a file lock, or a PostgreSQL advisory lock shared by every
        replica) so one change is built, and logged, once.
        """
        signature = self._catalogue_signature()
        if not force and signature == self._seen:
            return
        with self._sync_lock, self.store.sync_lock():
            signature = self._catalogue_signature()
            if not force and signature == self._seen:
                return
            objects = {o.id: o for o in self.catalogue.list()}
            records = {r.id: r for r in self.store.list()}
            for obj in objects.values():
                record = records.get(obj.id)
                if record is not None and record.origin != "catalogue":
                    if not self._displace(record, obj):
                        continue
                    del records[obj.id]  # gone: not rebuilt as a build below
                    record = None
                versions = self._versions([obj])
                if record is not None and record.versions == versions:
                    continue
                self._store_built(obj.id, [obj], None, "catalogue", "", versions)
            for record in records.values():
                if record.origin == "catalogue" and record.id not in objects:
                    self.store.delete(record.id)
                elif record.origin == "build":
                    members = [objects[o] for o in record.objects if o in objects]
                    if len(members) == len(record.objects):
                        versions = self._versions(members)
                        if versions != record.versions:
                            self._store_built(
                                record.id, members, record.label, "build", record.owner, versions
                            )
            self._seen = signature

    def _displace(self, record: Record, obj: CatalogueObject) -> bool:
        """A catalogue object whose id an upload or build holds: the catalogue wins over a
        non-editor's manifest, which is moved to <data>/displaced/ and logged; an editor's is
        kept (a deliberate override), with a warning. True when the id is now free."""
        if record.owner in self._editors():
            log.warning(
                "catalogue object %r: manifest %r stays as the editor %r uploaded it (not rebuilt)",
                obj.id, record.id, record.owner,
            )  # fmt: skip
            return False
        folder = self.data / "displaced"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{quote(record.id, safe='')}.{time.time_ns()}.json"
        body = self.store.read(record.id)
        if body is not None:
            target.write_bytes(body)
        self.store.delete(record.id)
        log.warning(
            "catalogue object %r now owns the manifest id %r: the %s by %r was moved to %s",
            obj.id, record.id, record.origin, record.owner, target,
        )  # fmt: skip
        return True

    def _editors(self) -> set[str]:
        return {u.name for u in parse_tokens(self.settings.tokens).values() if u.editor}

    def _check_free(self, user: User, manifest_id: str) -> None:
        """Ids a client may not register: a catalogue object's (non-editors), any id with "/"
        (non-editors), and an id one path segment inside or around another manifest's id,
        whose URLs would collide (``flat/canvas/1`` names a canvas of ``flat``)."""
        if not user.editor:
            if "/" in manifest_id:
                raise Forbidden('only editors may use "/" in a manifest id')
            if self.catalogue.get(manifest_id) is not None:
                raise Conflict(f"{manifest_id!r} is reserved: a catalogue object has this id")
        taken = [r.id for r in self.store.list()] + [o.id for o in self.catalogue.list()]
        for other in taken:
            if manifest_id.startswith(other + "/") or other.startswith(manifest_id + "/"):
                raise Conflict(f"manifest id {manifest_id!r} collides with the URLs of {other!r}")

    def _store_built(
        self,
        manifest_id: str,
        objects: list[CatalogueObject],
        label: str | None,
        origin: str,
        owner: str,
        versions: str,
    ) -> Record | None:
        try:
            check_id(manifest_id)
            doc = self._build(manifest_id, objects, label)
        except (ValueError, IIIFError) as exc:
            log.warning("cannot build manifest %r: %s", manifest_id, exc)
            return None
        old = self.store.get(manifest_id)
        new_body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        if old is not None and self.store.read(manifest_id) == new_body:
            self.store.touch_versions(manifest_id, versions)
            return old
        meta = objects[0].metadata
        record, _ = self.store.put(
            manifest_id,
            doc,
            origin=origin,
            owner=owner,
            objects=tuple(o.id for o in objects),
            versions=versions,
            label=label or objects[0].label or manifest_id,
            institution=meta.get("institution", ""),
            project=meta.get("project", ""),
        )
        return record

    # -- reads -------------------------------------------------------------------------------

    def local_key(self, uri: str) -> str | None:
        """The key of a URI naming one of this server's canvases or manifests under any host,
        port, public_url or root (matched from its ``/iiif/manifests/…`` path on), or under the
        internal stored base; None for any other URI."""
        uri = uri.split("#", 1)[0]
        if uri.startswith(f"{STORED_BASE}/"):
            return canvas_key(uri)
        path = urlsplit(uri).path
        at = path.find(MANIFESTS_PATH)
        if at < 0:
            return None
        self.sync()
        local = path[at:]
        if self.store.has_canvas(local):
            return local
        return local if self._stored_manifest(local) is not None else None

    def _stored_manifest(self, key: str) -> str | None:
        """The id of the stored manifest whose key is ``key`` ("/iiif/manifests/<id>")."""
        if not key.startswith(MANIFESTS_PATH) or "?" in key or "#" in key:
            return None
        manifest_id = unquote(key[len(MANIFESTS_PATH) :])
        try:
            check_id(manifest_id)
        except BadRequest:
            return None
        if manifest_url("", manifest_id) != key or self.store.get(manifest_id) is None:
            return None
        return manifest_id

    def canvas_known(self, key: str) -> bool:
        """Whether ``key`` (a canvas key, or a URI of one; fragment ignored) is a canvas of a
        manifest this server serves (the store's canvases, written with each manifest)."""
        key = key.split("#", 1)[0]
        self.sync()
        if self.store.has_canvas(key):
            return True
        local = self.local_key(key)
        return local is not None and self.store.has_canvas(local)

    def manifest(self, manifest_id: str) -> bytes:
        """The stored document (ids under STORED_BASE) or NotFound."""
        check_id(manifest_id)
        self.sync()
        body = self.store.read(manifest_id)
        if body is None:
            raise NotFound(f"no manifest {manifest_id!r}")
        if _LEGACY_SEGMENT.encode() in body:
            body = self._upgrade(manifest_id, body)
        return body

    def _upgrade(self, manifest_id: str, body: bytes) -> bytes:
        """An uploaded manifest stored by an earlier version: its annotation references and
        search services are made again (built ones are rebuilt by ``sync``: the hooks changed)."""
        with self._upgrade_lock:
            record = self.store.get(manifest_id)
            body = self.store.read(manifest_id) or body
            if record is None or record.origin != "upload" or _LEGACY_SEGMENT.encode() not in body:
                return body
            doc: dict[str, Any] = json.loads(body)
            for item in doc.get("items", []):
                if isinstance(item, dict) and _legacy(item.get("annotations")):
                    del item["annotations"]
            services = doc.get("service")
            if isinstance(services, list):
                doc["service"] = [s for s in services if not _legacy([s])]
                if not doc["service"]:
                    del doc["service"]
            self._plug_hooks(doc)
            self.store.put(
                manifest_id,
                doc,
                origin=record.origin,
                owner=record.owner,
                objects=record.objects,
                versions=record.versions,
                label=record.label,
                institution=record.institution,
                project=record.project,
                expect=record.version,
            )
            log.info("manifest %r: annotation references made host-independent", manifest_id)
            return self.store.read(manifest_id) or body

    def manifest_canvases(self, key: str) -> list[str] | None:
        """The canvas keys of the manifest whose key is ``key`` ("/iiif/manifests/<id>"), or
        None when this server has no such manifest. Annotation scopes match this list, never a
        URI prefix (a prefix such as "http:" would match every canvas)."""
        if not key.startswith(MANIFESTS_PATH) or "?" in key or "#" in key:
            return None
        manifest_id = unquote(key[len(MANIFESTS_PATH) :])
        try:
            check_id(manifest_id)
        except BadRequest:
            return None
        self.sync()
        return self.store.canvases(manifest_id)

    def collection(self, base: str, group: str, name: str, page: int) -> dict[str, Any]:
        self.sync()
        doc = collections.collection(
            base,
            self.store.list(),
            group=group,
            name=name,
            page=page,
            page_size=self.collection_page_size,
        )
        if doc is None:
            raise NotFound("no such collection or page")
        return doc

    def activity_stream(self, base: str) -> dict[str, Any]:
        self.sync()
        return activity.ordered_collection(
            base, self.store.activity_count(), self.activity_page_size
        )

    def activity_page(self, base: str, number: int) -> dict[str, Any]:
        self.sync()
        total = self.store.activity_count()
        if number < 0 or number >= activity.page_count(total, self.activity_page_size):
            raise NotFound("no such page of the change stream")
        size = self.activity_page_size
        items = self.store.activities(number * size, size)
        return activity.ordered_page(base, number, items, total, size)

    # -- registration ------------------------------------------------------------------------

    def register(
        self,
        base: str,
        user: User,
        doc: Any,
        manifest_id: str | None,
        *,
        replace: bool,
        if_match: str | None = None,
    ) -> tuple[Record, bool]:
        """Store a manifest from a client (a Manifest, or {"build": {...}}). ``replace`` is PUT;
        ``if_match`` (its If-Match header) makes it conditional on the ETag the client read.
        A concurrent write between this request's read and its write is a 409."""
        self.sync()
        if isinstance(doc, dict) and "build" in doc:
            return self._register_build(
                base, user, doc["build"], manifest_id, replace=replace, if_match=if_match
            )
        if not isinstance(doc, dict):
            raise BadRequest('the body must be a JSON object: a Manifest or {"build": ...}')
        # Too many canvases: refused before any further work on the document.
        too_many = validate.too_many_items(doc, self.settings.manifest_max_canvases)
        if too_many:
            raise Invalid(too_many)
        if manifest_id is None:
            manifest_id = _id_from(doc)
        check_id(manifest_id)
        self._check_free(user, manifest_id)
        old = self._current(base, manifest_id, if_match)
        self._may_write(user, old, replace)
        # Ids at this server's public base are stored base-neutral; others are kept as given.
        text = neutral(json.dumps(doc, ensure_ascii=False), base)
        stored: dict[str, Any] = json.loads(text)
        source_id = stored.get("id")
        stored["id"] = manifest_url(STORED_BASE, manifest_id)
        problems = validate.errors(stored, "Manifest", self.settings.manifest_max_canvases)
        if problems:
            raise Invalid(problems)
        self._plug_hooks(stored)
        if source_id != stored["id"]:
            log.info("manifest %r registered from %s", manifest_id, source_id)
        return self.store.put(
            manifest_id,
            stored,
            origin="upload",
            owner=old.owner if old and old.owner else user.name,
            label=_first(stored.get("label")) or manifest_id,
            institution=_provider(stored),
            project=_metadata_value(stored, "project"),
            expect=old.version if old else NEW,
        )

    def _plug_hooks(self, doc: dict[str, Any]) -> None:
        """Let the annotation store reference its pages and search services, as for built ones."""
        if self.hooks.annotation_page_ref is not None:
            for item in doc.get("items", []):
                if isinstance(item, dict) and "annotations" not in item and "id" in item:
                    ref = self.hooks.annotation_page_ref(STORED_BASE, item["id"])
                    if ref:
                        item["annotations"] = [ref]
        if self.hooks.search_services is not None:
            services = self.hooks.search_services(STORED_BASE, doc["id"])
            present = {s.get("id") or s.get("@id") for s in doc.get("service", [])}
            extra = [s for s in services if (s.get("id") or s.get("@id")) not in present]
            if extra:
                doc["service"] = [*doc.get("service", []), *extra]

    def _register_build(
        self,
        base: str,
        user: User,
        request: Any,
        manifest_id: str | None,
        *,
        replace: bool,
        if_match: str | None,
    ) -> tuple[Record, bool]:
        if not isinstance(request, dict):
            raise BadRequest('"build" must be an object: {"objects": [ids], "id", "label"}')
        ids = request.get("objects")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise BadRequest('"build.objects" must be a non-empty list of catalogue object ids')
        manifest_id = manifest_id or request.get("id") or ids[0]
        if not isinstance(manifest_id, str):
            raise BadRequest('"build.id" must be a string')
        check_id(manifest_id)
        label = request.get("label")
        if label is not None and not isinstance(label, str):
            raise BadRequest('"build.label" must be a string')
        objects = []
        for object_id in ids:
            obj = self.catalogue.get(object_id)
            if obj is None:
                raise BadRequest(f"no catalogue object {object_id!r}")
            objects.append(obj)
        self._check_free(user, manifest_id)
        old = self._current(base, manifest_id, if_match)
        self._may_write(user, old, replace)
        try:
            doc = self._build(manifest_id, objects, label)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        meta = objects[0].metadata
        return self.store.put(
            manifest_id,
            doc,
            origin="build",
            owner=old.owner if old and old.owner else user.name,
            objects=tuple(ids),
            versions=self._versions(objects),
            label=label or objects[0].label or manifest_id,
            institution=str(request.get("institution") or meta.get("institution", "")),
            project=str(request.get("project") or meta.get("project", "")),
            expect=old.version if old else NEW,
        )

    def _may_write(self, user: User, old: Record | None, replace: bool) -> None:
        if old is None:
            return
        if not replace:
            raise Conflict(f"manifest {old.id!r} exists: use PUT to replace it")
        if not user.editor and old.owner != user.name:
            raise Forbidden("only the owner of a manifest or an editor may change it")

    def _current(self, base: str, manifest_id: str, if_match: str | None) -> Record | None:
        """The stored record a write replaces. With If-Match, only when one of its tags is the
        ETag of the manifest as served under ``base`` ("*": any stored one), else 412."""
        old = self.store.get(manifest_id)
        if if_match is None:
            return old
        tags = {t.strip() for t in if_match.split(",") if t.strip()}
        if old is None:
            raise PreconditionFailed(f"no manifest {manifest_id!r}: If-Match cannot match")
        if "*" in tags:
            return old
        body = self.store.read(manifest_id)
        again = self.store.get(manifest_id)
        if body is None or again is None or again.version != old.version:
            raise changed_meanwhile(manifest_id)
        etag = strong_etag(publish_json(body, base))
        if etag not in tags and f'{etag[:-1]}-gzip"' not in tags:
            raise PreconditionFailed(
                f"manifest {manifest_id!r} changed since it was read: If-Match does not match"
            )
        return old

    def remove(
        self, user: User, manifest_id: str, base: str = "", if_match: str | None = None
    ) -> None:
        """Delete an uploaded or built manifest (conditional on If-Match when given)."""
        check_id(manifest_id)
        self.sync()
        old = self._current(base, manifest_id, if_match)
        if old is None:
            raise NotFound(f"no manifest {manifest_id!r}")
        if old.origin == "catalogue":
            raise Conflict("this manifest is built from the catalogue: remove the object instead")
        if not user.editor and old.owner != user.name:
            raise Forbidden("only the owner of a manifest or an editor may delete it")
        if not self.store.delete(manifest_id, expect=old.version):
            raise NotFound(f"no manifest {manifest_id!r}")


class Invalid(BadRequest):
    """A document that fails the schema: the web layer renders ``problems`` as JSON."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__(f"invalid Presentation 3 manifest: {len(problems)} error(s)")
        self.problems = problems


def _legacy(refs: Any) -> bool:
    """Whether references name an annotation resource by the whole STORED_BASE canvas URI."""
    return isinstance(refs, list) and any(
        isinstance(r, dict) and _LEGACY_SEGMENT in str(r.get("id", r.get("@id", ""))) for r in refs
    )


def _first(value: Any) -> str:
    if isinstance(value, dict):
        for texts in value.values():
            if isinstance(texts, list) and texts:
                return str(texts[0])
    return ""


def _provider(doc: dict[str, Any]) -> str:
    providers = doc.get("provider")
    if isinstance(providers, list) and providers and isinstance(providers[0], dict):
        return _first(providers[0].get("label"))
    return ""


def _metadata_value(doc: dict[str, Any], name: str) -> str:
    for entry in doc.get("metadata") or []:
        if isinstance(entry, dict) and _first(entry.get("label")).lower() == name:
            return _first(entry.get("value"))
    return ""


def _id_from(doc: dict[str, Any]) -> str:
    """A new manifest's id from its own id: the last path segment that is not "manifest"."""
    source = doc.get("id")
    if not isinstance(source, str) or not source:
        raise Invalid([{"path": "/id", "message": "a manifest needs an id"}])
    parts = [p for p in source.split("?")[0].split("#")[0].split("/") if p]
    parts = [p for p in parts if p not in ("manifest", "manifest.json")] or ["manifest"]
    name = parts[-1].removesuffix(".json")
    return name or "manifest"
