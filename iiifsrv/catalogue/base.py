"""The catalogue interface every backend implements (SQLite file, PostgreSQL tables).

Imports only the standard library and catalogue.model. Blocking: call from a thread.
"""

from __future__ import annotations

import builtins
from typing import Protocol

from iiifsrv.catalogue.model import CatalogueObject, Transform


class CatalogueStore(Protocol):
    """Objects by id and the transforms fitted for them; ``changes`` moves on every object write."""

    @property
    def where(self) -> str:
        """Where it lives, for messages (a path, or "PostgreSQL")."""
        ...

    def get(self, object_id: str) -> CatalogueObject | None: ...

    def list(self) -> builtins.list[CatalogueObject]: ...

    def upsert(self, obj: CatalogueObject) -> None: ...

    def remove(self, object_id: str) -> bool: ...

    def changes(self) -> int:
        """A counter that moves whenever an object is inserted, updated or removed (by anyone
        writing to the same database): what manifest sync compares."""
        ...

    def get_transform(self, object_id: str, spec: str, version: str) -> Transform | None:
        """The transform fitted for ``spec`` of this version of the object, None if not yet."""
        ...

    def put_transform(self, object_id: str, spec: str, version: str, transform: Transform) -> None:
        """Keep ``transform``; rows fitted on other versions of the object are dropped."""
        ...
