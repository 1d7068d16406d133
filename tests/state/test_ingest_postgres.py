"""``iiifsrv ingest`` and ``iiifsrv objects`` with database_url set write and read the catalogue
in PostgreSQL (where every replica reads it), not a file in the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from iiifsrv.cli import main
from iiifsrv.settings import Settings
from iiifsrv.state import open_state
from tests.state.conftest import pg_url


def test_ingest_into_postgresql(
    tmp_path: Path,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = pg_url(pg_schema)
    monkeypatch.setenv("IIIFSRV_DATABASE_URL", url)
    source = tmp_path / "masters" / "grey.png"
    source.parent.mkdir()
    pyvips.Image.black(96, 64).add(90).cast("uchar").pngsave(str(source))
    images, data = tmp_path / "images", tmp_path / "data"
    paths = ("--images", str(images), "--data", str(data))
    assert main(["ingest", str(source), "--id", "grey", *paths]) == 0
    assert "catalogue PostgreSQL" in capsys.readouterr().out
    assert not (data / "catalogue.sqlite3").exists()
    state = open_state(Settings(images=str(images), data=str(tmp_path / "other"), database_url=url))
    try:
        obj = state.catalogue.get("grey")
        assert obj is not None and (obj.width, obj.height) == (96, 64)
    finally:
        state.close()
    assert main(["objects", "list", *paths]) == 0
    assert capsys.readouterr().out.startswith("grey\timage\t96x64")
    assert main(["objects", "remove", "grey", "--keep-files", *paths]) == 0
    assert main(["objects", "show", "grey", *paths]) == 1
