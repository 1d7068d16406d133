"""Computed images of multispectral objects (pca, pca:N, ratio:A,B, difference:A,B, stretch:A):
IIIF images whose pixels are checked against numpy on the band files, tile by tile."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pytest
import pyvips
import tifffile

from iiifsrv import bandmath
from iiifsrv.catalogue import Catalogue, Transform
from iiifsrv.presentation import validate
from iiifsrv.presentation.builder import build_manifest, computed_images, spectra_service
from iiifsrv.settings import Settings
from iiifsrv.sources import computed
from iiifsrv.web.app import create_app
from iiifsrv.web.spectra import spectra_service as info_spectra_service
from tests.ingest_support import run_cli, smooth

W, H = 600, 520  # pyramid levels 600x520, 300x260, 150x130; 256-pixel tiles
NAMES = ("UV365", "B450", "G550", "R650", "IR940")
WAVELENGTHS = (365, 450, 550, 650, 940)
FIT_PIXELS = 100_000  # so the transforms are fitted on the 300x260 level, not full resolution
SPECS = ("pca", "pca:1", "pca:2", "pca:3", "ratio:IR940,UV365", "difference:IR940,R650",
         "stretch:UV365")  # fmt: skip


def _bands() -> list[np.ndarray]:
    """Five correlated 8-bit bands: mixtures of three smooth scenes, plus noise."""
    latent = smooth(H, W, 3, seed=7).astype(np.float64)
    rng = np.random.default_rng(3)
    mix = rng.uniform(0.1, 0.9, (len(NAMES), 3))
    out = []
    for i in range(len(NAMES)):
        plane = latent @ mix[i] / mix[i].sum() + rng.normal(0, 4, (H, W))
        out.append(np.clip(np.rint(plane), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Object 'folio' (5 bands, 8-bit) and 'deep' (2 bands, 16-bit), ingested."""
    patch = pytest.MonkeyPatch()
    patch.setattr(bandmath, "FIT_MAX_PIXELS", FIT_PIXELS)
    base = tmp_path_factory.mktemp("computed")
    folder = base / "src" / "folio"
    folder.mkdir(parents=True)
    for band, nm in zip(_bands(), WAVELENGTHS, strict=True):
        tifffile.imwrite(folder / f"folio_{nm}nm.tif", band)
    deep = base / "src" / "deep"
    deep.mkdir()
    for i, nm in enumerate((500, 800)):
        tifffile.imwrite(deep / f"deep_{nm}nm.tif", smooth(90, 120, 1, dtype="uint16", seed=i))
    status, out = run_cli("ingest", str(folder), str(deep), "--images", str(base / "img"),
                          "--data", str(base / "data"))  # fmt: skip
    assert status == 0, out
    yield base
    patch.undo()


def fetch(base: Path, *paths: str) -> list[httpx.Response]:
    """GET each path in order from one in-process app (one server process)."""

    async def go() -> list[httpx.Response]:
        app = create_app(Settings(images=str(base / "img"), data=str(base / "data")))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(go())


def pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    array: np.ndarray = pyvips.Image.new_from_buffer(response.content, "").numpy()
    return array


def band_level(base: Path, obj: str, band: str, level: int = 0) -> np.ndarray:
    with tifffile.TiffFile(base / "img" / obj / f"{band}.tif") as tif:
        array: np.ndarray = tif.series[0].levels[level].asarray()
    return array


def transform(base: Path, obj: str, key: str) -> Transform:
    catalogue = Catalogue(base / "data" / "catalogue.sqlite3")
    record = catalogue.get(obj)
    assert record is not None
    found = catalogue.get_transform(obj, key, record.version)
    assert found is not None, f"no {key} transform of {obj} in the catalogue"
    return found


def expected(t: Transform, bands: list[np.ndarray], channel: int) -> np.ndarray:
    """The documented formula (README: "Computed images of ..."), written out with numpy."""
    x = [b.astype(np.float64) for b in bands]
    if t.op == "pca":
        v = t.vectors[channel][0] * (x[0] - t.means[0])
        for i in range(1, len(x)):
            v = v + t.vectors[channel][i] * (x[i] - t.means[i])
    elif t.op == "ratio":
        v = (x[0] + 1.0) / (x[1] + 1.0)
    elif t.op == "difference":
        v = x[0] - x[1]
    else:
        v = x[0]
    low, high = t.low[channel], t.high[channel]
    out: np.ndarray = np.clip(np.rint((v - low) * (255.0 / (high - low))), 0, 255)
    return out.astype(np.uint8)


def url(ident: str, rest: str, version: int = 3) -> str:
    return f"/iiif/{version}/{quote(ident, safe=':,')}/{rest}"


# -- info.json ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_info_json_has_the_bands_size_and_tiles_in_both_versions(root: Path, spec: str) -> None:
    band3, info3, band2, info2 = (r.json() for r in fetch(
        root, url("folio/IR940", "info.json"), url(f"folio/{spec}", "info.json"),
        url("folio/IR940", "info.json", 2), url(f"folio/{spec}", "info.json", 2),
    ))  # fmt: skip
    assert info3["id"] == f"http://test/iiif/3/folio%2F{spec}"
    for key in ("width", "height", "tiles", "sizes"):
        assert info3[key] == band3[key], key
        assert info2[key] == band2[key], key
    assert (info3["width"], info3["height"]) == (W, H)
    assert info3["tiles"] == [{"width": 256, "scaleFactors": [1, 2, 4]}]
    assert ("color" in info3["extraQualities"]) == (spec == "pca")  # pca is RGB, the rest grey
    assert info3["service"][0]["id"] == "http://test/spectra/folio"
    assert info2["service"][0]["@id"] == "http://test/spectra/folio"


# -- the numbers -------------------------------------------------------------------------------


def test_pca_basis_is_fitted_at_ingest_on_a_reduced_level_and_matches_full_resolution_pca(
    root: Path,
) -> None:
    t = transform(root, "folio", "pca")  # written by the ingest itself
    assert t.level == (300, 260) and t.bands == NAMES
    full = np.stack([band_level(root, "folio", n).ravel().astype(np.float64) for n in NAMES])
    values, vectors = np.linalg.eigh(np.cov(full))
    order = np.argsort(values)[::-1]
    centred = full - full.mean(axis=1, keepdims=True)
    served = [pixels(r) for r in fetch(root, *(url(f"folio/pca:{k}", "full/max/0/default.png")
                                              for k in (1, 2, 3)))]  # fmt: skip
    for k in range(3):
        reference = vectors[:, order[k]]
        # The basis from the reduced level is full resolution's, up to sign.
        assert abs(float(np.dot(t.vectors[k], reference))) > 0.999
        # (The reduced level averages noise away: its components vary a little less.)
        assert t.sigma[k] == pytest.approx(np.sqrt(values[order[k]]), rel=0.15)
        # The served component is numpy's full-resolution projection (up to sign), as 8 bits.
        projection = (reference @ centred).reshape(H, W)
        assert abs(np.corrcoef(projection.ravel(), served[k].ravel().astype(float))[0, 1]) > 0.99
        # And exactly the documented quantisation of the stored basis: within ±1 of a plain
        # matrix product, equal to the documented element-wise sum.
        stored = np.asarray(t.vectors[k]) @ (full - np.asarray(t.means)[:, None])
        quantised = np.clip(np.rint((stored - t.low[k]) * (255.0 / (t.high[k] - t.low[k]))), 0, 255)
        assert np.abs(served[k].astype(int) - quantised.reshape(H, W)).max() <= 1
        bands = [band_level(root, "folio", n) for n in NAMES]
        assert np.array_equal(served[k], expected(t, bands, k))
        assert t.low[k] == -bandmath.K_SIGMA * t.sigma[k] and t.high[k] == -t.low[k]
    rgb = pixels(fetch(root, url("folio/pca", "full/max/0/default.png"))[0])
    assert rgb.shape == (H, W, 3)
    for k in range(3):
        assert np.array_equal(rgb[..., k], served[k])


@pytest.mark.parametrize(
    ("spec", "obj", "bands"),
    [
        ("ratio:IR940,UV365", "folio", ("IR940", "UV365")),
        ("ratio:B450,G550", "folio", ("B450", "G550")),
        ("difference:IR940,R650", "folio", ("IR940", "R650")),
        ("stretch:UV365", "folio", ("UV365",)),
        ("difference:IR800,G500", "deep", ("IR800", "G500")),
        ("ratio:G500,IR800", "deep", ("G500", "IR800")),
    ],
)
def test_ratio_difference_stretch_equal_numpy_exactly(
    root: Path, spec: str, obj: str, bands: tuple[str, ...]
) -> None:
    served = pixels(fetch(root, url(f"{obj}/{spec}", "full/max/0/default.png"))[0])
    t = transform(root, obj, spec)  # fitted on first use and kept in the catalogue
    full = [band_level(root, obj, b) for b in bands]
    assert np.array_equal(served, expected(t, full, 0))
    # The range comes from the reduced level (the whole image for the small 'deep').
    level = 1 if obj == "folio" else 0
    small = [band_level(root, obj, b, level).astype(np.float64) for b in bands]
    assert t.level == (small[0].shape[1], small[0].shape[0])
    v = {
        "ratio": lambda: (small[0] + 1) / (small[1] + 1),
        "difference": lambda: small[0] - small[1],
        "stretch": lambda: small[0],
    }[t.op]()
    p1, p99 = np.percentile(v, [1, 99])
    if t.op == "difference":
        m = max(abs(p1), abs(p99), 1.0)
        assert (t.low[0], t.high[0]) == (-m, m)
    else:
        assert (t.low[0], t.high[0]) == (p1, p99)
    assert served.min() == 0 and served.max() == 255  # 1st-99th percentile spread over 0-255


def test_tiles_at_every_level_equal_the_formula_on_that_level(root: Path) -> None:
    """Each tile is the transform of the band pyramid's own level, in both API versions."""
    for spec, bands in (("ratio:IR940,UV365", ("IR940", "UV365")), ("pca:2", NAMES)):
        t = transform(root, "folio", "pca" if spec.startswith("pca") else spec)
        channel = 1 if spec == "pca:2" else 0
        for level, scale in enumerate((1, 2, 4)):
            whole = expected(t, [band_level(root, "folio", b, level) for b in bands], channel)
            span = 256 * scale
            for y in range(0, H, span):
                for x in range(0, W, span):
                    w, h = min(span, W - x), min(span, H - y)
                    size = f"{-(-w // scale)},"
                    v3, v2 = fetch(
                        root,
                        url(f"folio/{spec}", f"{x},{y},{w},{h}/{size}/0/default.png"),
                        url(f"folio/{spec}", f"{x},{y},{w},{h}/{size}/0/default.png", 2),
                    )
                    tile = pixels(v3)
                    part = whole[y // scale : y // scale + tile.shape[0],
                                 x // scale : x // scale + tile.shape[1]]  # fmt: skip
                    assert np.array_equal(tile, part), (spec, level, x, y)
                    assert np.array_equal(pixels(v2), tile)


@pytest.mark.parametrize("spec", ["pca", "ratio:IR940,UV365", "difference:IR940,R650"])
def test_neighbouring_tiles_join_without_a_seam(root: Path, spec: str) -> None:
    left, right, both, below, column = (pixels(r) for r in fetch(
        root,
        url(f"folio/{spec}", "0,0,256,256/max/0/default.png"),
        url(f"folio/{spec}", "256,0,256,256/max/0/default.png"),
        url(f"folio/{spec}", "0,0,512,256/max/0/default.png"),
        url(f"folio/{spec}", "0,256,256,256/max/0/default.png"),
        url(f"folio/{spec}", "0,0,256,512/max/0/default.png"),
    ))  # fmt: skip
    assert np.array_equal(np.concatenate([left, right], axis=1), both)
    assert np.array_equal(np.concatenate([left, below], axis=0), column)
    # An odd region across the seam is the same pixels again.
    (odd,) = (
        pixels(r) for r in fetch(root, url(f"folio/{spec}", "250,3,13,100/max/0/default.png"))
    )
    assert np.array_equal(odd, both[3:103, 250:263])


# -- kept in the catalogue ---------------------------------------------------------------------


def test_transforms_are_computed_once_kept_and_reused(root: Path) -> None:
    db = root / "data" / "catalogue.sqlite3"
    spec = "stretch:G550"
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM transforms WHERE spec = ?", (spec,)).fetchone()[0]
            == 0
        )
    fetch(root, url(f"folio/{spec}", "info.json"))
    fitted = transform(root, "folio", spec)
    # A later server process uses the stored transform (here altered to prove it is read).
    catalogue = Catalogue(db)
    record = catalogue.get("folio")
    assert record is not None
    catalogue.put_transform(
        "folio", spec, record.version, Transform("stretch", ("G550",), (0.0,), (255.0,), (1, 1))
    )
    as_stored = pixels(fetch(root, url(f"folio/{spec}", "full/max/0/default.png"))[0])
    assert np.array_equal(as_stored, band_level(root, "folio", "G550"))
    catalogue.put_transform("folio", spec, record.version, fitted)


def test_objects_ingested_before_get_the_same_basis_lazily(root: Path) -> None:
    """An object catalogued without transforms (an older ingest) gets them on first use,
    fitted exactly as the ingest fits them, and persisted."""
    at_ingest = transform(root, "folio", "pca")
    db = root / "data" / "catalogue.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM transforms WHERE object_id = 'folio' AND spec = 'pca'")
    (response,) = fetch(root, url("folio/pca:1", "0,0,256,256/max/0/default.png"))
    assert response.status_code == 200
    assert transform(root, "folio", "pca") == at_ingest


def test_reingesting_changed_bands_refits(tmp_path: Path) -> None:
    for version in ("v1", "v2"):  # v2: the same capture with another infrared band
        folder = tmp_path / version
        folder.mkdir()
        for i, nm in enumerate((450, 550, 900)):
            seed = 9 if (version, nm) == ("v2", 900) else i
            tifffile.imwrite(folder / f"leaf_{nm}nm.tif", smooth(60, 80, 1, seed=seed))
    args = ("--id", "leaf", "--images", str(tmp_path / "img"), "--data", str(tmp_path / "data"))
    assert run_cli("ingest", str(tmp_path / "v1"), *args)[0] == 0
    first = transform(tmp_path, "leaf", "pca")
    assert transform(tmp_path, "leaf", "ratio:IR900,B450").op == "ratio"  # the featured ratio
    assert run_cli("ingest", str(tmp_path / "v2"), *args)[0] == 0
    second = transform(tmp_path, "leaf", "pca")
    assert second != first
    with sqlite3.connect(tmp_path / "data" / "catalogue.sqlite3") as conn:
        versions = conn.execute("SELECT DISTINCT version FROM transforms").fetchall()
    assert len(versions) == 1  # the old version's transforms are gone


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ident", "status", "message"),
    [
        ("folio/pca:0", 400, "invalid computed image 'pca:0'"),
        ("folio/pca:x", 400, "invalid computed image 'pca:x'"),
        ("folio/ratio:IR940", 400, "expected pca, pca:<n>, ratio:<A>,<B>"),
        ("folio/difference:A,B,C", 400, "invalid computed image"),
        ("folio/stretch:", 400, "invalid computed image"),
        ("folio/pca:6", 404, "has 5 bands, hence 5 principal components: no pca:6"),
        ("deep/pca", 404, "has 2 bands, hence 2 principal components: no pca"),
        ("folio/ratio:IR940,X1", 404, "object 'folio' has no band 'X1'"),
        ("nothing/ratio:A,B", 404, "no multispectral object 'nothing'"),
        ("nothing/pca", 404, "no image with identifier 'nothing/pca'"),
    ],
)
def test_bad_computed_images_are_refused_with_a_clear_message(
    root: Path, ident: str, status: int, message: str
) -> None:
    (response,) = fetch(root, url(ident, "info.json"))
    assert response.status_code == status
    assert message in response.text and "Traceback" not in response.text
    assert "\n" not in response.text.strip()


def test_a_band_cannot_be_named_pca(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"b{i}.tif", smooth(20, 20, 1, seed=i))
    (folder / "bands.csv").write_text("file,name\nb0.tif,PCA\nb1.tif,IR\n")
    status, out = run_cli("ingest", str(folder), "--images", str(tmp_path / "i"),
                          "--data", str(tmp_path / "d"))  # fmt: skip
    assert status == 1 and "invalid band name 'PCA'" in out


def test_stretch_quality_and_jpeg_work_on_computed_images(root: Path) -> None:
    jpeg, stretched = fetch(
        root,
        url("folio/pca", "full/!200,200/0/default.jpg"),
        url("folio/pca:3", "full/max/0/stretch.png"),
    )
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert pixels(jpeg).shape == (173, 200, 3)
    grey = pixels(stretched)
    assert grey.min() == 0 and grey.max() == 255


# -- the manifest ------------------------------------------------------------------------------


def _path(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _manifest(base: Path, object_id: str) -> dict[str, Any]:
    """The object's manifest, found by following the top collection's links."""
    (top,) = fetch(base, "/iiif/collection")
    pending = [top.json()]
    while pending:
        doc = pending.pop()
        for item in doc.get("items", []):
            if item["type"] == "Collection":
                pending.append(fetch(base, _path(item["id"]))[0].json())
            elif item["type"] == "Manifest" and item["id"].endswith(f"/{object_id}"):
                manifest: dict[str, Any] = fetch(base, _path(item["id"]))[0].json()
                return manifest
    raise AssertionError(f"no manifest of {object_id} in the collections")


def test_manifest_offers_pca_and_the_featured_ratio_and_declares_the_spectral_service(
    root: Path,
) -> None:
    manifest = _manifest(root, "folio")
    assert validate.errors(manifest) == [] and validate.is_valid(manifest)
    canvas = manifest["items"][0]
    (service,) = canvas["service"]
    assert service["profile"] == "https://iiifsrv.example/api/spectra/1"
    assert service["type"] == "Service"
    point = fetch(root, _path(service["id"]) + "?x=10&y=20")[0].json()
    assert point["profile"] == service["profile"] and len(point["bands"]) == 5
    body = canvas["items"][0]["items"][0]["body"]
    labels = [item["label"]["en"][0] for item in body["items"]]
    assert labels[2:4] == ["Principal components 1-3 (PCA)", "Ratio IR940 / UV365"]
    for item in body["items"][2:4]:
        info = fetch(root, _path(item["service"][0]["id"]) + "/info.json")[0].json()
        assert (info["width"], info["height"]) == (W, H)
        tile = fetch(root, _path(info["id"]) + "/0,0,256,256/256,/0/default.jpg")[0]
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"


def test_builder_service_entry_equals_the_info_json_one() -> None:
    from tests.presentation_support import sample_objects

    base = "https://example.org"
    entry = json.loads(spectra_service(base, "palimpsest").json())
    entry.pop("@context", None)
    assert entry == info_spectra_service(base, "palimpsest", 3)
    obj = next(o for o in sample_objects() if o.id == "palimpsest")
    doc = build_manifest(base, "palimpsest", [obj])
    assert doc["items"][0]["service"] == [info_spectra_service(base, "palimpsest", 3)]
    for identifier, _ in computed_images(obj):  # the manifest's identifiers are the server's
        assert computed.parse(identifier) is not None
