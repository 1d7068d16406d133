"""A store written before the region column existed opens, gets the column, and fills it: the
SVG of old rows is parsed once at open, and search then reads the stored region. Both backends.
"""

from __future__ import annotations

import sqlite3

from iiifsrv.annotations import model
from iiifsrv.annotations.store import Scope, open_store
from iiifsrv.settings import Settings
from tests.annotations.annotation_samples import CANVAS, MANIFEST, anno

SVG_ONLY = (
    "<svg xmlns='http://www.w3.org/2000/svg'><rect x='5' y='6' width='70' height='80'/></svg>"
)


def _old_schema(settings: Settings) -> None:
    """Turn the store into what an older version wrote: the same table without region, without
    the provenance columns (kind, generator) and without a schema version."""
    if settings.database_url:
        import psycopg

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("DROP INDEX iiifsrv_annotations_writer")
            for column in ("region", "kind", "generator"):
                conn.execute(f"ALTER TABLE iiifsrv_annotations DROP COLUMN {column}")
            conn.execute("DROP TABLE iiifsrv_annotations_schema")
    else:
        with sqlite3.connect(settings.data_path / "annotations.sqlite3") as conn:
            conn.execute("DROP INDEX annotations_writer")
            for column in ("region", "kind", "generator"):
                conn.execute(f"ALTER TABLE annotations DROP COLUMN {column}")
            conn.execute("PRAGMA user_version = 0")


def _unfilled(settings: Settings) -> int:
    if settings.database_url:
        import psycopg

        with psycopg.connect(settings.database_url) as conn:
            sql = "SELECT count(*) FROM iiifsrv_annotations WHERE region IS NULL"
            row = conn.execute(sql).fetchone()
    else:
        with sqlite3.connect(settings.data_path / "annotations.sqlite3") as conn:
            row = conn.execute("SELECT count(*) FROM annotations WHERE region IS NULL").fetchone()
    assert row is not None
    return int(row[0])


async def test_old_store_gets_regions_at_open(backend_settings: Settings) -> None:
    store = open_store(backend_settings)
    svg_only = anno("drawn with a pen")
    svg_only["target"]["selector"] = {"type": "SvgSelector", "value": SVG_ONLY}
    fragment = anno("a boxed pen", region="1,2,3,4")
    whole = anno("no pen region")
    whole["target"] = CANVAS
    for n, doc in enumerate((svg_only, fragment, whole)):
        await store.create(f"k{n}", model.check(doc), "", "alice")
    await store.close()
    _old_schema(backend_settings)

    reopened = open_store(backend_settings)
    try:
        found = await reopened.search(Scope("manifest", MANIFEST, (CANVAS,)), ["pen"])
        assert [(r.key, r.region) for r in found] == [
            ("k0", "5,6,70,80"),
            ("k1", "1,2,3,4"),
            ("k2", ""),
        ]
        assert _unfilled(backend_settings) == 0
        # Every earlier annotation was a person's: migrated as such, with no generator.
        assert {(r.kind, r.generator) for r in found} == {("Person", None)}
        # New writes store their region too.
        rec = await reopened.create("k3", model.check(anno("pen", region="9,9,9,9")), "", "bob")
        assert rec.region == "9,9,9,9"
        assert (await reopened.get("k3")) == rec
    finally:
        await reopened.close()
