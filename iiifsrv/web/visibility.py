"""Which annotations a reader may see in listings and search results: those whose canvas is not
on a manifest one of whose catalogue objects the reader is denied. Content Search (1.0 and 2.0,
autocomplete too), semantic search with or without a manifest, and a manifest's W3C container
and viewer page leave out annotations on restricted canvases, whatever scope or ``partOf`` they
came through — from their items and from their totals and paging alike (``narrow`` puts the
hidden canvases into the store's selection, so counts, offsets and ``next`` are computed over
visible annotations only).

HTTP layer (the decision depends on the request's session and address): imports anyio,
Starlette types, access.rules, annotations (model, store) and web.auth (``Access``,
``manifest_of``, ``PRIVATE_KEY``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import anyio
from starlette.types import Scope

from iiifsrv.access.rules import DENY, Resource
from iiifsrv.annotations.model import Record
from iiifsrv.annotations.store import Scope as Selection
from iiifsrv.annotations.store import Store, Writers
from iiifsrv.web.auth import PRIVATE_KEY, Access, ObjectsOf, manifest_of

T = TypeVar("T")


class Visibility:
    def __init__(self, access: Access, objects_of: ObjectsOf) -> None:
        self.access = access
        self.objects_of = objects_of

    async def hidden(self, scope: Scope, canvases: Iterable[str]) -> set[str]:
        """Of ``canvases``, those the reader may not see. When some of the others are governed
        by a rule (the reader sees protected material), the response is marked private
        (``PRIVATE_KEY`` in the ASGI scope, which web.auth.AnnotationGuard applies)."""
        if not self.access.active:
            return set()
        denied: dict[str, bool] = {}
        out = set()
        for canvas in canvases:
            manifest = manifest_of(canvas)
            if manifest is None:
                continue
            if manifest not in denied:
                objects = await anyio.to_thread.run_sync(self.objects_of, manifest)
                decisions = self.access.visible(scope, [Resource(o, o) for o in objects])
                denied[manifest] = any(d.kind == DENY for d in decisions)
                if not denied[manifest] and any(d.protected for d in decisions):
                    scope[PRIVATE_KEY] = True
            if denied[manifest]:
                out.add(canvas)
        return out

    async def narrow(
        self,
        scope: Scope,
        selection: Selection,
        store: Store,
        words: Sequence[str] = (),
        writers: Writers = (),
    ) -> Selection:
        """``selection`` without the canvases the reader may not see among those the search
        (``words`` by ``writers``; no words: every annotation in it) finds."""
        if not self.access.active:
            return selection
        found = await store.search_canvases(selection, list(words), writers)
        hidden = await self.hidden(scope, found)
        if not hidden:
            return selection
        return dataclasses.replace(selection, hidden=tuple(sorted(hidden | set(selection.hidden))))

    async def keep(self, scope: Scope, items: Sequence[T], canvas: Callable[[T], str]) -> list[T]:
        """``items`` without those whose canvas (``canvas(item)``) the reader may not see."""
        if not self.access.active or not items:
            return list(items)
        hidden = await self.hidden(scope, {canvas(item) for item in items})
        return [item for item in items if canvas(item) not in hidden]

    async def records(self, scope: Scope, records: list[Record]) -> list[Record]:
        return await self.keep(scope, records, lambda r: r.canvas)
