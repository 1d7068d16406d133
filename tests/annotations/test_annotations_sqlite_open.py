"""The SQLite annotation store opens once, whatever number of first requests arrive together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from iiifsrv.annotations.sqlite import SqliteStore
from iiifsrv.annotations.store import Scope


async def test_concurrent_first_searches_all_answer(tmp_path: Path) -> None:
    """CI once saw a 500 ("vtable constructor failed: annotations_fts"): two first requests
    each ran the schema script while a search read the full-text table on the other's reader."""
    for n in range(20):
        store = SqliteStore(tmp_path / f"store-{n}" / "annotations.sqlite")
        try:
            totals = await asyncio.gather(
                *(store.search_total(Scope("all"), ["map"]) for _ in range(8))
            )
            assert totals == [0] * 8
        finally:
            await store.close()
