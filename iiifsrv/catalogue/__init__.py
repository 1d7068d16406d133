"""The catalogue: its values (model), the interface (base) and its backends (sqlite, postgres).

Re-exports the values and the interface; ``Catalogue`` is the embedded SQLite backend (what
``iiifsrv ingest`` and the tools open on a data directory). The PostgreSQL backend is chosen by
iiifsrv.state, one floor up.
"""

from iiifsrv.catalogue.base import CatalogueStore
from iiifsrv.catalogue.model import Band, CatalogueObject, Composite, Transform, now_iso
from iiifsrv.catalogue.sqlite import SqliteCatalogue

Catalogue = SqliteCatalogue

__all__ = [
    "Band",
    "Catalogue",
    "CatalogueObject",
    "CatalogueStore",
    "Composite",
    "SqliteCatalogue",
    "Transform",
    "now_iso",
]
