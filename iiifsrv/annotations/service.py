"""Annotation operations shared by every dialect: who may write, validate, create/replace/delete.

Imports the store interface, model, urls, conditional (ETags) and errors; no HTTP framework.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from iiifsrv.annotations import model
from iiifsrv.annotations.model import Checked, Record
from iiifsrv.annotations.store import KeyTaken, Store, VersionConflict, new_key
from iiifsrv.annotations.urls import PREFIX, decode_uri
from iiifsrv.conditional import if_match_fails, strong_etag
from iiifsrv.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IIIFError,
    NotFound,
    PreconditionFailed,
)
from iiifsrv.tokens import User, parse_tokens

CanvasKnown = Callable[[str], Awaitable[bool]]

_SLUG = re.compile(r"[^A-Za-z0-9._~-]+")
RESERVED_KEYS = frozenset({"page", "", ".", ".."})


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
    def __init__(self, store: Store, canvas_known: CanvasKnown | None = None) -> None:
        self.store = store
        self.canvas_known = canvas_known

    async def check(self, doc: object) -> Checked:
        checked = model.check(doc)
        if self.canvas_known is not None and not await self.canvas_known(checked.canvas):
            raise BadRequest(f"the target canvas {checked.canvas} is not known to this server")
        return checked

    async def create(
        self,
        doc: object,
        user: User,
        *,
        slug: str | None = None,
        canvas: str | None = None,
        manifest: str | None = None,
        via: str | None = None,
    ) -> Record:
        """Store a new annotation; a client-supplied id becomes ``via``."""
        checked = await self.check(doc)
        if canvas is not None and checked.canvas != canvas:
            raise BadRequest(f"the target canvas is {checked.canvas}, not {canvas}")
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
            if holder is not None and not holder.deleted and holder.creator != user.name:
                raise Conflict("that annotation id is already used by another user")
            # A bare key names one annotation exactly: an id equal to a key would shadow it.
            if "/" not in via and await self.store.get(via) is not None:
                raise Conflict("that annotation id is an existing annotation's key")
        key = slug_key(slug)
        for attempt in range(20):
            try:
                if slug and await self.store.find_via(key) is not None:
                    raise KeyTaken(key)  # a Slug may not take a key another client id uses
                return await self.store.create(key, checked, via, user.name)
            except KeyTaken:
                key = f"{slug_key(slug)}-{attempt + 2}" if slug and attempt < 10 else new_key()
        raise BadRequest("could not find a free key for this Slug")

    @staticmethod
    def may_change(rec: Record, user: User) -> None:
        if not user.editor and rec.creator != user.name:
            raise Forbidden(f"annotation belongs to {rec.creator}; only its creator or an editor")

    async def live(self, key: str) -> Record:
        rec = await self.store.get(key)
        if rec is None:
            raise NotFound("no such annotation")
        if rec.deleted:
            raise Gone("annotation deleted")
        return rec

    async def replace(
        self, rec: Record, doc: object, user: User, if_match: str | None = None
    ) -> Record:
        """Replace the document; If-Match is checked, and the store refuses a lost update."""
        self.may_change(rec, user)
        if if_match_fails(etag(rec), if_match):
            raise PreconditionFailed("If-Match does not match the current ETag")
        checked = await self.check(doc)
        if checked.canvas != rec.canvas:
            raise BadRequest("an annotation cannot move to another canvas; delete and create it")
        if not checked.manifest and rec.manifest:
            checked = dataclasses.replace(checked, manifest=rec.manifest)
        try:
            return await self.store.update(rec.key, checked, rec.version)
        except VersionConflict:
            raise PreconditionFailed("annotation changed meanwhile; fetch it again") from None

    async def remove(self, rec: Record, user: User, if_match: str | None = None) -> None:
        self.may_change(rec, user)
        if if_match_fails(etag(rec), if_match):
            raise PreconditionFailed("If-Match does not match the current ETag")
        try:
            await self.store.delete(rec.key, rec.version)
        except VersionConflict:
            raise PreconditionFailed("annotation changed meanwhile; fetch it again") from None

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


__all__ = ["AnnotationService", "CanvasKnown", "Gone", "User", "etag", "parse_tokens", "slug_key"]
