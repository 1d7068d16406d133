"""Visual similarity: perceptual hashes computed at ingest (and lazily for older objects), and
GET /objects/{id}/similar found from the landing page, tested with generated variants of a
photograph (downscaled, re-compressed at Q=50, cropped by 5 %) and unrelated images."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from importlib.util import find_spec
from pathlib import Path

import httpx
import numpy as np
import pytest
import pyvips

from iiifsrv import similarity
from iiifsrv.catalogue.hashes import MASK64
from iiifsrv.migrate import migrate
from iiifsrv.settings import Settings
from iiifsrv.web.app import create_app
from tests.ingest_support import run_cli, smooth
from tests.test_client_journey import database_url

__all__ = ["database_url"]  # the fixture: SQLite and a fresh PostgreSQL schema

SAMPLE_DATA = Path(find_spec("matplotlib").origin).parent / "mpl-data" / "sample_data"  # type: ignore[arg-type, union-attr]
VARIANTS = ("hopper-downscaled", "hopper-q50", "hopper-crop5-centre", "hopper-crop5-corner")
UNRELATED = ("minduka", "terrain", "smooth-1", "smooth-2", "hopper-mirrored-text")


def _array(image: np.ndarray) -> pyvips.Image:
    image = np.ascontiguousarray(image.astype(np.uint8))
    height, width = image.shape[:2]
    bands = 1 if image.ndim == 2 else image.shape[2]
    return pyvips.Image.new_from_memory(image.tobytes(), width, height, bands, "uchar")


def make_sources(folder: Path) -> None:
    """The photograph, its variants and unrelated images, as the files a user would ingest."""
    folder.mkdir(parents=True)
    hopper = pyvips.Image.new_from_file(str(SAMPLE_DATA / "grace_hopper.jpg")).copy_memory()
    w, h = hopper.width, hopper.height
    hopper.write_to_file(str(folder / "hopper.png"))
    hopper.resize(0.3).write_to_file(str(folder / "hopper-downscaled.png"))
    hopper.write_to_file(str(folder / "hopper-q50.jpg"), Q=50)
    dx, dy = round(w * 0.025), round(h * 0.025)
    hopper.crop(dx, dy, w - 2 * dx, h - 2 * dy).write_to_file(
        str(folder / "hopper-crop5-centre.png")
    )
    hopper.crop(0, 0, round(w * 0.95), round(h * 0.95)).write_to_file(
        str(folder / "hopper-crop5-corner.png")
    )
    # Unrelated: other pictures, smooth synthetic photographs, and the same photograph flipped
    # upside down with a caption (same colours and content, a different image).
    minduka = pyvips.Image.new_from_file(str(SAMPLE_DATA / "Minduka_Present_Blue_Pack.png"))
    minduka.flatten(background=[255]).write_to_file(str(folder / "minduka.png"))
    dem = np.load(SAMPLE_DATA / "jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    dem = (dem - dem.min()) / np.ptp(dem) * 255
    _array(dem).resize(4).write_to_file(str(folder / "terrain.png"))
    for seed in (1, 2):
        _array(smooth(400, 600, seed=seed)).write_to_file(str(folder / f"smooth-{seed}.png"))
    caption = pyvips.Image.text("COBOL 1959", dpi=300).gravity("centre", w, 80, background=[0])
    flipped = hopper.flipver().insert(caption.bandjoin([caption, caption]), 0, h - 80)
    flipped.write_to_file(str(folder / "hopper-mirrored-text.png"))


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("similar")
    make_sources(base / "src")
    images, data = base / "images", base / "data"
    status, out = run_cli("ingest", str(base / "src"), "--images", str(images), "--data", str(data))
    assert status == 0, out
    return images, data


def _hash_rows(data: Path) -> dict[str, tuple[int, int]]:
    with sqlite3.connect(data / "catalogue.sqlite3") as db:
        rows = db.execute("SELECT object_id, phash, dhash FROM image_hashes").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _get(images: Path, data: Path, *paths: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        app = create_app(Settings(images=str(images), data=str(data)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(go())


def _similar_link(images: Path, data: Path, object_id: str) -> str:
    (landing,) = _get(images, data, "/")
    assert landing.status_code == 200
    item = re.search(rf'<li class=object data-id="{re.escape(object_id)}">.*?</li>', landing.text)
    assert item is not None, landing.text[:500]
    link = re.search(r'<a class=similar href="([^"]+)">similar images</a>', item.group(0))
    assert link is not None
    return link.group(1).replace("http://test", "")


def test_every_ingested_image_is_hashed_at_ingest(collection: tuple[Path, Path]) -> None:
    _, data = collection
    rows = _hash_rows(data)
    assert set(rows) == {"hopper", *VARIANTS, *UNRELATED}
    assert len({rows["hopper"], rows["smooth-1"], rows["terrain"]}) == 3


def test_the_landing_page_links_to_the_near_duplicates(collection: tuple[Path, Path]) -> None:
    images, data = collection
    link = _similar_link(images, data, "hopper")
    (res,) = _get(images, data, link)
    assert res.status_code == 200
    body = res.json()
    assert body["id"] == "hopper"
    assert body["threshold"] == similarity.DEFAULT_THRESHOLD
    assert re.fullmatch(r"[0-9a-f]{16}", body["phash"])
    found = {item["id"]: item["distance"] for item in body["similar"]}
    # Every variant and nothing unrelated, nearest first.
    assert set(found) == set(VARIANTS)
    distances = [item["distance"] for item in body["similar"]]
    assert distances == sorted(distances)
    assert found["hopper-q50"] <= 6 and found["hopper-downscaled"] <= 6
    assert all(item["info"].endswith("/info.json") for item in body["similar"])
    # Each variant finds the original too (the relation is symmetric).
    (back,) = _get(images, data, _similar_link(images, data, "hopper-crop5-corner"))
    assert "hopper" in {item["id"] for item in back.json()["similar"]}


def test_unrelated_images_are_far_from_everything(collection: tuple[Path, Path]) -> None:
    _, data = collection
    rows = _hash_rows(data)
    prints = {k: similarity.Fingerprint(p & MASK64, d & MASK64) for k, (p, d) in rows.items()}
    for name in UNRELATED:
        for other, fp in prints.items():
            if other != name:
                assert prints[name].distance(fp) > similarity.DEFAULT_THRESHOLD, (name, other)


def test_objects_ingested_before_hashes_are_hashed_on_first_request(
    collection: tuple[Path, Path],
) -> None:
    images, data = collection
    before = _hash_rows(data)
    with sqlite3.connect(data / "catalogue.sqlite3") as db:
        db.execute("DELETE FROM image_hashes WHERE object_id IN ('hopper-q50', 'terrain')")
    (res,) = _get(images, data, "/objects/hopper/similar")
    assert "hopper-q50" in {item["id"] for item in res.json()["similar"]}
    assert _hash_rows(data) == before


def test_threshold_and_bad_requests(collection: tuple[Path, Path]) -> None:
    images, data = collection
    tight, loose, bad, big, unknown = _get(
        images, data,
        "/objects/hopper/similar?threshold=6",
        "/objects/hopper/similar?threshold=128",
        "/objects/hopper/similar?threshold=near",
        "/objects/hopper/similar?threshold=129",
        "/objects/nothing-here/similar",
    )  # fmt: skip
    assert tight.status_code == 200
    assert {i["id"] for i in tight.json()["similar"]} <= {"hopper-q50", "hopper-downscaled"}
    assert {"hopper-q50", "hopper-downscaled"} <= {i["id"] for i in tight.json()["similar"]}
    assert len(loose.json()["similar"]) == len(VARIANTS) + len(UNRELATED)
    assert bad.status_code == 400 and "threshold" in bad.text
    assert big.status_code == 400
    assert unknown.status_code == 404 and "nothing-here" in unknown.text


def test_the_catalogue_in_postgresql_gets_its_hashes_too(
    collection: tuple[Path, Path], database_url: str, tmp_path: Path
) -> None:
    """With the catalogue moved to PostgreSQL (iiifsrv migrate), hashes are computed on the
    first request and kept there."""
    images, data = collection
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    if database_url:
        assert all(o.problems == [] for o in migrate(copy, database_url))

    async def go() -> list[httpx.Response]:
        settings = Settings(images=str(images), data=str(copy), database_url=database_url)
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            out = [await client.get("/objects/hopper/similar") for _ in range(2)]
        await app.state.annotation_store.close()
        return out

    first, again = asyncio.run(go())
    assert first.status_code == 200
    assert {i["id"] for i in first.json()["similar"]} == set(VARIANTS)
    assert again.json() == first.json()
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            (count,) = conn.execute("SELECT count(*) FROM iiifsrv_image_hashes").fetchone()
        assert count == 1 + len(VARIANTS) + len(UNRELATED)
