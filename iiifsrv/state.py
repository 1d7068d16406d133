"""The service's state, chosen once from the settings: the catalogue and the manifest store
(with its activity log), in SQLite and files under ``data`` or in PostgreSQL (``database_url``).

Imports settings, telemetry, catalogue, presentation.store and its backends, and database; a
factory one floor above the backends, so the interfaces never import their implementations.
"""

from __future__ import annotations

from dataclasses import dataclass

from iiifsrv import telemetry
from iiifsrv.catalogue import CatalogueStore, SqliteCatalogue
from iiifsrv.database import Database
from iiifsrv.presentation.files import FileManifestStore
from iiifsrv.presentation.store import ManifestStore
from iiifsrv.settings import Settings


@dataclass
class State:
    catalogue: CatalogueStore
    manifests: ManifestStore
    database: Database | None = None

    def close(self) -> None:
        if self.database is not None:
            self.database.close()


def open_state(settings: Settings) -> State:
    """The state backends for ``settings``; nothing is opened until first used."""
    if settings.database_url:
        from iiifsrv.catalogue.postgres import PostgresCatalogue
        from iiifsrv.catalogue.remembered import RememberedCatalogue
        from iiifsrv.presentation.pgstore import PostgresManifestStore

        database = Database(settings.database_url)
        # The last-known catalogue keeps images (bands, composites, computed) served while
        # PostgreSQL is unreachable; writes answer 503 meanwhile.
        catalogue = RememberedCatalogue(
            PostgresCatalogue(database), telemetry.CATALOGUE_FALLBACKS.inc
        )
        return State(catalogue, PostgresManifestStore(database), database)
    data = settings.data_path
    return State(SqliteCatalogue(data / "catalogue.sqlite3"), FileManifestStore(data))


def open_catalogue(settings: Settings) -> CatalogueStore:
    """Just the catalogue (``iiifsrv ingest`` and the tools)."""
    return open_state(settings).catalogue
