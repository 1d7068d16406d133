"""Which annotations a reader may see in search results: those whose canvas is not on a manifest
one of whose catalogue objects the reader is denied. Content Search (1.0 and 2.0, autocomplete
too) and semantic search, with or without a manifest, keep only these; hits on restricted
canvases are left out, whatever scope or ``partOf`` the search came through.

HTTP layer (the decision depends on the request's session and address): imports anyio,
Starlette types, access.rules, annotations.model and web.auth (``Access``, ``manifest_of``).
Totals and paging still count the hits left out (their number, never their content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
from starlette.types import Scope

from iiifsrv.access.rules import DENY, Resource
from iiifsrv.annotations.model import Record
from iiifsrv.web.auth import Access, ObjectsOf, manifest_of

T = TypeVar("T")


class Visibility:
    def __init__(self, access: Access, objects_of: ObjectsOf) -> None:
        self.access = access
        self.objects_of = objects_of

    async def keep(self, scope: Scope, items: Sequence[T], canvas: Callable[[T], str]) -> list[T]:
        """``items`` without those whose canvas (``canvas(item)``) the reader may not see."""
        if not self.access.active or not items:
            return list(items)
        denied: dict[str, bool] = {}
        out = []
        for item in items:
            manifest = manifest_of(canvas(item))
            if manifest is not None and manifest not in denied:
                objects = await anyio.to_thread.run_sync(self.objects_of, manifest)
                decisions = self.access.visible(scope, [Resource(o, o) for o in objects])
                denied[manifest] = any(d.kind == DENY for d in decisions)
            if manifest is None or not denied[manifest]:
                out.append(item)
        return out

    async def records(self, scope: Scope, records: list[Record]) -> list[Record]:
        return await self.keep(scope, records, lambda r: r.canvas)
