"""Annotation operations shared by every dialect: who may write, validate, create/replace/delete,
and the one place a canvas or manifest URI from a client becomes the key it is stored under.

Imports the store interface, model, urls, conditional (ETags) and errors; no HTTP framework.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from iiifsrv.annotations import model
from iiifsrv.annotations.model import Checked, Record
from iiifsrv.annotations.store import KeyTaken, Store, VersionConflict, new_key
from iiifsrv.annotations.urls import PREFIX, Urls, decode_uri
from iiifsrv.conditional import if_match_fails, strong_etag
from iiifsrv.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IIIFError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from iiifsrv.tokens import User, parse_tokens

CanvasKnown = Callable[[str], Awaitable[bool]]
# Told of every committed write (the record as stored; ``deleted`` set for a removal). It must
# not block: it queues work (semantic embeddings) for later.
WriteHook = Callable[[Record], None]
# The key of a URI naming a canvas or manifest of this server's, under any host, port,
# public_url or the stored-document base earlier versions leaked ("/iiif/manifests/…"), else None.
Localise = Callable[[str], Awaitable[str | None]]

log = logging.getLogger("iiifsrv.annotations")

_SLUG = re.compile(r"[^A-Za-z0-9._~-]+")
RESERVED_KEYS = frozenset({"page", "", ".", ".."})
# A claimed creator's class: W3C (and ActivityStreams) and Open Annotation names.
_KINDS = {
    "Person": "Person",
    "foaf:Person": "Person",
    "Software": "Software",
    "as:Application": "Software",
    "prov:SoftwareAgent": "Software",
}


class Gone(IIIFError):
    status = 410


def etag(rec: Record) -> str:
    return strong_etag("annotation", rec.key, rec.version, rec.modified)


def slug_key(slug: str | None) -> str:
    """A key from a Slug header: safe characters only, else a random key."""
    if not slug:
        return new_key()
    key = _SLUG.sub("-", slug.strip()).strip("-.")[:80]
    return key if key not in RESERVED_KEYS else new_key()


class AnnotationService:
    def __init__(
        self,
        store: Store,
        canvas_known: CanvasKnown | None = None,
        localise: Localise | None = None,
        on_write: WriteHook | None = None,
    ) -> None:
        self.store = store
        self.canvas_known = canvas_known
        self.localise = localise
        self.on_write = on_write
        self._migrated = False
        self._migrating = asyncio.Lock()

    def written(self, rec: Record) -> None:
        """After a committed write: tell the hook (a failing hook never fails the write)."""
        if self.on_write is not None:
            try:
                self.on_write(rec)
            except Exception:
                log.exception("the after-write hook failed for annotation %s", rec.key)

    async def key(self, uri: str, urls: Urls) -> str:
        """The stored key of a canvas or manifest URI as a client gave it (W3C, Annotot, SAS and
        search all come through here): the path of one of ours, else the absolute URI."""
        key = urls.key(uri.split("#", 1)[0])
        if key.startswith(("http://", "https://")) and self.localise is not None:
            key = await self.localise(key) or key
        return key

    async def ready(self) -> None:
        """Once per process: re-key annotations stored under absolute URIs of our own canvases
        (as earlier versions stored them: the client's host, or the internal stored base)."""
        if self._migrated or self.localise is None:
            return
        async with self._migrating:
            if self._migrated:
                return
            renames: dict[str, str] = {}
            for uri in await self.store.absolute_uris():
                key = await self.localise(uri)
                if key and key != uri:
                    renames[uri] = key
            if renames:
                count = await self.store.rename(renames)
                log.info("re-keyed %d annotation(s) to host-independent canvas ids", count)
            self._migrated = True

    async def check(self, doc: object, urls: Urls) -> Checked:
        checked = model.check(doc)
        canvas = await self.key(checked.canvas, urls)
        manifest = await self.key(checked.manifest, urls) if checked.manifest else ""
        checked = dataclasses.replace(checked, canvas=canvas, manifest=manifest)
        if self.canvas_known is not None and not await self.canvas_known(urls.public(canvas)):
            raise BadRequest(f"the target canvas {urls.public(canvas)} is not known to this server")
        return checked

    @staticmethod
    def no_posing(doc: object, user: User, served: str = "") -> None:
        """403 when a document claims a writer class its token does not have: a person's token
        cannot write as software, nor an agent's as a person (the creator is the server's).
        ``served``: the class of the annotation being replaced, which a client may echo back
        (an editor correcting a machine line sends its creator as it was served)."""
        claimed = doc.get("creator") if isinstance(doc, dict) else None
        names: set[object] = set()
        for agent in claimed if isinstance(claimed, list) else [claimed]:
            if isinstance(agent, dict):
                kind = agent.get("type", agent.get("@type"))
                names.update(kind if isinstance(kind, list) else [kind])
        kinds = {_KINDS[n] for n in names if isinstance(n, str) and n in _KINDS} - {served}
        if user.agent and "Person" in kinds:
            raise Forbidden("an agent's token cannot write as a person")
        if not user.agent and "Software" in kinds:
            raise Forbidden("a person's token cannot write as software; use an agent token")

    async def create(
        self,
        doc: object,
        user: User,
        urls: Urls,
        *,
        slug: str | None = None,
        canvas: str | None = None,
        manifest: str | None = None,
        via: str | None = None,
    ) -> Record:
        """Store a new annotation; a client-supplied id becomes ``via``."""
        self.no_posing(doc, user)
        checked = await self.check(doc, urls)
        if canvas is not None and checked.canvas != await self.key(canvas, urls):
            raise BadRequest(
                f"the target canvas is {urls.public(checked.canvas)}, not {urls.public(canvas)}"
            )
        if manifest and not checked.manifest:
            checked = dataclasses.replace(checked, manifest=manifest)
        assert isinstance(doc, dict)
        if via is None:
            given = doc.get("id", doc.get("@id", ""))
            via = given if isinstance(given, str) else ""
        if via:
            # A client id names one annotation: another user may not take it over (the
            # Annotot and SAS dialects address annotations by it).
            holder = await self.store.find_via(via)
            if holder is not None and not holder.deleted and not _same_writer(holder, user):
                raise Conflict("that annotation id is already used by another user")
            # A bare key names one annotation exactly: an id equal to a key would shadow it.
            if "/" not in via and await self.store.get(via) is not None:
                raise Conflict("that annotation id is an existing annotation's key")
        key = slug_key(slug)
        for attempt in range(20):
            try:
                if slug and await self.store.find_via(key) is not None:
                    raise KeyTaken(key)  # a Slug may not take a key another client id uses
                rec = await self.store.create(key, checked, via, user.name, user.kind)
                self.written(rec)
                return rec
            except KeyTaken:
                key = f"{slug_key(slug)}-{attempt + 2}" if slug and attempt < 10 else new_key()
        raise BadRequest("could not find a free key for this Slug")

    async def create_batch(
        self,
        canvas: str,
        docs: object,
        user: User,
        urls: Urls,
        *,
        generator: object,
        replace: bool = True,
        max_items: int = 10000,
    ) -> tuple[list[Record], int]:
        """Store many annotations of one software agent on one canvas in one transaction (all
        or nothing). With ``replace``, the agent's earlier annotations on that canvas are marked
        deleted in the same transaction (kept as tombstone versions); nobody else's change."""
        if not user.agent:
            raise Forbidden("batches are written by software agents (a token with role agent)")
        if not isinstance(docs, list) or (not docs and not replace):
            # An empty list with replace: the agent found nothing this time (its earlier
            # output on the canvas is withdrawn).
            raise BadRequest("items must be a non-empty list of annotations")
        if len(docs) > max_items:
            raise PayloadTooLarge(f"a batch may hold at most {max_items} annotations")
        engine = model.check_generator(generator)
        key = await self.key(canvas, urls)
        if self.canvas_known is not None and not await self.canvas_known(urls.public(key)):
            raise BadRequest(f"the target canvas {urls.public(key)} is not known to this server")

        def validate() -> list[Checked]:
            out = []
            for number, doc in enumerate(docs):
                self.no_posing(doc, user)
                try:
                    out.append(model.check(doc))
                except BadRequest as exc:
                    raise BadRequest(f"item {number}: {exc}") from None
            return out

        # Thousands of documents are CPU work: validated off the event loop.
        items: list[tuple[str, Checked]] = []
        for number, checked in enumerate(await asyncio.to_thread(validate)):
            checked = dataclasses.replace(
                checked,
                canvas=await self.key(checked.canvas, urls),
                manifest=await self.key(checked.manifest, urls) if checked.manifest else "",
            )
            if checked.canvas != key:
                raise BadRequest(f"item {number} targets another canvas than this batch's")
            items.append((new_key(), checked))
        try:
            created = await self.store.create_many(
                key, items, user.name, user.kind, engine, replace
            )
        except KeyTaken:
            raise Conflict("a key was taken meanwhile; send the batch again") from None
        for rec in created[0]:
            self.written(rec)
        return created

    @staticmethod
    def may_change(rec: Record, user: User) -> None:
        if not user.editor and not _same_writer(rec, user):
            raise Forbidden(f"annotation belongs to {rec.creator}; only its creator or an editor")

    async def live(self, key: str) -> Record:
        rec = await self.store.get(key)
        if rec is None:
            raise NotFound("no such annotation")
        if rec.deleted:
            raise Gone("annotation deleted")
        return rec

    async def replace(
        self, rec: Record, doc: object, user: User, urls: Urls, if_match: str | None = None
    ) -> Record:
        """Replace the document; If-Match is checked, and the store refuses a lost update."""
        self.may_change(rec, user)
        self.no_posing(doc, user, served=rec.kind)
        if if_match_fails(etag(rec), if_match):
            raise PreconditionFailed("If-Match does not match the current ETag")
        checked = await self.check(doc, urls)
        if checked.canvas != rec.canvas:
            raise BadRequest("an annotation cannot move to another canvas; delete and create it")
        if not checked.manifest and rec.manifest:
            checked = dataclasses.replace(checked, manifest=rec.manifest)
        try:
            updated = await self.store.update(rec.key, checked, rec.version)
        except VersionConflict:
            raise PreconditionFailed("annotation changed meanwhile; fetch it again") from None
        self.written(updated)
        return updated

    async def remove(self, rec: Record, user: User, if_match: str | None = None) -> None:
        self.may_change(rec, user)
        if if_match_fails(etag(rec), if_match):
            raise PreconditionFailed("If-Match does not match the current ETag")
        try:
            await self.store.delete(rec.key, rec.version)
        except VersionConflict:
            raise PreconditionFailed("annotation changed meanwhile; fetch it again") from None
        self.written(dataclasses.replace(rec, deleted=True))

    async def resolve(self, ident: str) -> Record:
        """Find a live annotation by our IRI, its key, or the id its client gave it. An exact
        key wins over a client id, so no one's client id can shadow another user's key."""
        key = key_from_iri(ident) or ("" if "/" in ident else ident)
        if key:
            rec = await self.store.get(key)
            if rec is not None and not rec.deleted:
                return rec
        rec = await self.store.find_via(ident)
        if rec is None or rec.deleted:
            raise NotFound(f"no annotation {ident}")
        return rec


def _same_writer(rec: Record, user: User) -> bool:
    return rec.creator == user.name and rec.kind == user.kind


def key_from_iri(iri: str) -> str:
    """The key of one of our annotation IRIs (…/annotations/canvas/<b64>/<key>), else ""."""
    path = urlsplit(iri).path
    at = path.find(PREFIX + "/canvas/")
    if at < 0:
        return ""
    parts = path[at + len(PREFIX + "/canvas/") :].split("/")
    if len(parts) == 2 and decode_uri(parts[0]) is not None and parts[1]:
        return parts[1]
    return ""


__all__ = [
    "AnnotationService",
    "CanvasKnown",
    "Gone",
    "Localise",
    "User",
    "WriteHook",
    "etag",
    "parse_tokens",
    "slug_key",
]
