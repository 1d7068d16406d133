"""The catalogue as this replica last saw it, in front of a backend that can go away (PostgreSQL):
reads keep answering from that view while the backend is unreachable; writes are refused (503).

Imports catalogue.base, catalogue.model and errors (``on_fallback`` counts, see state.py).
Blocking, thread-safe. Reads ask the backend
first, as before (its change counter, one small query); the whole view is re-read only when the
counter moved, so a replica sees another's writes at once and keeps a complete view to fall back on.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable

from iiifsrv.catalogue.base import CatalogueStore
from iiifsrv.catalogue.model import CatalogueObject, Transform
from iiifsrv.errors import Unavailable

log = logging.getLogger("iiifsrv.catalogue")


class RememberedCatalogue:
    def __init__(
        self, inner: CatalogueStore, on_fallback: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self._on_fallback = on_fallback
        self._reload = threading.Lock()
        self._changes: int | None = None  # the counter the view was read at (None: never read)
        self._objects: dict[str, CatalogueObject] = {}
        self._transforms: dict[tuple[str, str, str], Transform] = {}
        self.fallbacks = 0  # reads answered from the view because the backend was unreachable

    @property
    def where(self) -> str:
        return self.inner.where

    def _view(self) -> dict[str, CatalogueObject]:
        """Every object by id: current when the backend answers, else as last seen (Unavailable
        when this process has never seen the catalogue)."""
        try:
            counter = self.inner.changes()
            if counter != self._changes:
                with self._reload:  # one reload at a time; the others find it done
                    if counter != self._changes:
                        objects = {o.id: o for o in self.inner.list()}
                        self._objects, self._changes = objects, counter
        except Unavailable:
            if self._changes is None:
                raise
            self._fell_back()
        return self._objects

    def _fell_back(self) -> None:
        self.fallbacks += 1
        if self._on_fallback is not None:
            self._on_fallback()

    def get(self, object_id: str) -> CatalogueObject | None:
        return self._view().get(object_id)

    def list(self) -> builtins.list[CatalogueObject]:
        view = self._view()
        return [view[key] for key in sorted(view)]

    def changes(self) -> int:
        self._view()
        return self._changes or 0

    def upsert(self, obj: CatalogueObject) -> None:
        self.inner.upsert(obj)

    def remove(self, object_id: str) -> bool:
        return self.inner.remove(object_id)

    def get_transform(self, object_id: str, spec: str, version: str) -> Transform | None:
        key = (object_id, spec, version)
        try:
            found = self.inner.get_transform(object_id, spec, version)
        except Unavailable:
            self._fell_back()
            return self._transforms.get(key)  # None: fitted again (and not kept) meanwhile
        if found is not None:
            self._transforms[key] = found
        return found

    def put_transform(self, object_id: str, spec: str, version: str, transform: Transform) -> None:
        self._transforms[(object_id, spec, version)] = transform
        self.inner.put_transform(object_id, spec, version, transform)
