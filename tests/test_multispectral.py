"""Multispectral objects: band folders, sidecars, multi-page TIFFs, bands and composites as IIIF
images, the stretch quality, and the generated sample."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from tests.ingest_support import get, run_cli, smooth

WAVELENGTHS = (365, 450, 550, 650, 940)
NAMES = ("UV365", "B450", "G550", "R650", "IR940")


def _band(i: int, dtype: str = "uint8") -> np.ndarray:
    return smooth(90, 120, 1, dtype=dtype, seed=20 + i)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A band folder named by wavelength, ingested as object 'leaf'."""
    root = tmp_path_factory.mktemp("ms")
    folder = root / "src" / "leaf"
    folder.mkdir(parents=True)
    for i, nm in enumerate(WAVELENGTHS):
        tifffile.imwrite(folder / f"leaf_{nm}nm.tif", _band(i))
    status, out = run_cli(
        "ingest", str(folder), "--images", str(root / "img"), "--data", str(root / "data")
    )
    assert status == 0, out
    return root / "img", root / "data", folder


def test_band_folder_becomes_one_object_with_named_bands(ingested: tuple[Path, Path, Path]) -> None:
    images, data, _ = ingested
    doc = get(images, data, "/objects/leaf").json()
    assert doc["kind"] == "multispectral" and (doc["width"], doc["height"]) == (120, 90)
    assert [b["name"] for b in doc["bands"]] == list(NAMES)
    assert [b["wavelength_nm"] for b in doc["bands"]] == list(map(float, WAVELENGTHS))
    assert doc["bands"][0]["label"] == "365 nm ultraviolet"
    composites = {c["name"]: c["image"] for c in doc["composites"]}
    assert composites == {
        "truecolor": "leaf/composite:R650,G550,B450",
        "falsecolor": "leaf/composite:IR940,R650,G550",
    }
    assert doc["image"] == composites["truecolor"]
    for i, name in enumerate(NAMES):  # each band is stored losslessly
        assert np.array_equal(tifffile.imread(images / "leaf" / f"{name}.tif"), _band(i))


def test_every_band_and_composite_is_a_iiif_image_linking_the_spectra(
    ingested: tuple[Path, Path, Path],
) -> None:
    images, data, _ = ingested
    for ident in ("leaf%2FIR940", "leaf%2Fcomposite:IR940,R650,G550", "leaf%2Fcomposite:truecolor"):
        info = get(images, data, f"/iiif/3/{ident}/info.json").json()
        assert info["id"] == f"http://test/iiif/3/{ident}"
        assert (info["width"], info["height"]) == (120, 90)
        assert "stretch" in info["extraQualities"]
        (service,) = info["service"]
        assert service["id"] == "http://test/spectra/leaf" and service["type"] == "Service"
        assert service["profile"] == "https://iiifsrv.example/api/spectra/1"
        info2 = get(images, data, f"/iiif/2/{ident}/info.json").json()
        assert "stretch" in info2["profile"][1]["qualities"]
        assert info2["service"][0]["@id"] == "http://test/spectra/leaf"


def _png(images: Path, data: Path, path: str) -> np.ndarray:
    response = get(images, data, path)
    assert response.status_code == 200, response.text
    return pyvips.Image.new_from_buffer(response.content, "").numpy()


@pytest.mark.parametrize(
    ("spec", "bands"),
    [
        ("composite:R650,G550,B450", ("R650", "G550", "B450")),
        ("composite:truecolor", ("R650", "G550", "B450")),
        ("composite:falsecolor", ("IR940", "R650", "G550")),
        ("composite:UV365,IR940,B450", ("UV365", "IR940", "B450")),
    ],
)
def test_composite_channels_equal_the_named_bands(
    ingested: tuple[Path, Path, Path], spec: str, bands: tuple[str, ...]
) -> None:
    images, data, _ = ingested
    for region in ("full/max", "10,20,64,48/max", "full/60,"):
        rgb = _png(images, data, f"/iiif/3/leaf%2F{spec}/{region}/0/default.png")
        assert rgb.shape[2] == 3
        for channel, band in enumerate(bands):
            grey = _png(images, data, f"/iiif/3/leaf%2F{band}/{region}/0/default.png")
            assert np.array_equal(rgb[..., channel], grey)


def test_bad_composites_are_refused(ingested: tuple[Path, Path, Path]) -> None:
    images, data, _ = ingested
    assert get(images, data, "/iiif/3/leaf%2Fcomposite:R650,X1,B450/info.json").status_code == 404
    response = get(images, data, "/iiif/3/leaf%2Fcomposite:R650,G550/info.json")
    assert response.status_code == 400 and "invalid composite" in response.text


def test_stretch_quality_spreads_each_band_over_the_full_range(
    ingested: tuple[Path, Path, Path],
) -> None:
    images, data, _ = ingested
    plain = _png(images, data, "/iiif/3/leaf%2FIR940/full/max/0/default.png")
    stretched = _png(images, data, "/iiif/3/leaf%2FIR940/full/max/0/stretch.png")
    assert np.ptp(stretched) > np.ptp(plain)
    assert stretched.min() == 0 and stretched.max() == 255
    both = _png(images, data, "/iiif/3/leaf%2Fcomposite:falsecolor/full/max/0/stretch.png")
    assert all(both[..., c].max() == 255 for c in range(3))


def test_sidecar_csv_names_bands_and_multipage_tiff(tmp_path: Path) -> None:
    folder = tmp_path / "scroll"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"capture-{i}.tif", _band(i, "uint16"))
    (folder / "bands.csv").write_text(
        "file,wavelength_nm,name,label\n"
        "capture-0.tif,420,Violet,deep violet\ncapture-1.tif,535,,\ncapture-2.tif,1050,IRfar,\n"
    )
    stack = tmp_path / "stack.tif"
    with tifffile.TiffWriter(stack) as tif:
        for i in range(3):
            tif.write(_band(i), extratags=[(285, "s", 0, f"band at {(i + 4) * 100}nm", True)])
    images, data = tmp_path / "img", tmp_path / "data"
    status, out = run_cli("ingest", str(folder), str(stack), "--images", str(images),
                          "--data", str(data), "--jobs", "2")  # fmt: skip
    assert status == 0, out
    doc = get(images, data, "/objects/scroll").json()
    assert [(b["name"], b["wavelength_nm"], b["label"]) for b in doc["bands"]] == [
        ("Violet", 420.0, "deep violet"),
        ("G535", 535.0, "535 nm green"),
        ("IRfar", 1050.0, "1050 nm infrared"),
    ]
    assert np.array_equal(tifffile.imread(images / "scroll" / "IRfar.tif"), _band(2, "uint16"))
    doc = get(images, data, "/objects/stack").json()
    assert [b["name"] for b in doc["bands"]] == ["B400", "G500", "R600"]
    assert np.array_equal(tifffile.imread(images / "stack" / "G500.tif"), _band(1))


def test_mismatched_band_dimensions_fail_without_touching_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    tifffile.imwrite(folder / "bad_450nm.tif", smooth(90, 120, 1))
    tifffile.imwrite(folder / "bad_650nm.tif", smooth(80, 120, 1))
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, smooth(50, 60, 3))
    images, data = tmp_path / "img", tmp_path / "data"
    status, out = run_cli("ingest", str(folder), str(other), "--images", str(images),
                          "--data", str(data))  # fmt: skip
    assert status == 1
    assert "FAILED   bad: band R650 (bad_650nm.tif) is 120x80 but band B450 is 120x90" in out
    assert "all bands must share the same dimensions" in out
    assert sorted(p.name for p in images.iterdir()) == ["other.tif"]


def test_sample_object_hides_text_that_infrared_and_ultraviolet_reveal(tmp_path: Path) -> None:
    from iiifsrv.ingest import sample

    t0 = time.perf_counter()
    made = sample.ensure(tmp_path / "img", tmp_path / "data", small=True)
    assert time.perf_counter() - t0 < 2.0
    assert len(made) == 6 and sample.ensure(tmp_path / "img", tmp_path / "data", small=True) == []
    doc = get(tmp_path / "img", tmp_path / "data", "/objects/palimpsest").json()
    assert [b["name"] for b in doc["bands"]] == ["UV365", "B450", "G550", "R650", "IR850", "IR940"]
    bands, ir_mask, uv_mask, _ = sample.bands(1)

    def contrast(band: str, mask: pyvips.Image) -> float:
        pixels = tifffile.imread(tmp_path / "img" / "palimpsest" / f"{band}.tif").astype(float)
        m = mask.numpy() > 0.5
        ys, xs = np.nonzero(m)
        box = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        inside = box[m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]]
        outside = box[~m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]]
        return abs(inside.mean() - outside.mean())

    for visible in ("B450", "G550", "R650"):
        assert contrast("IR940", ir_mask) > 4 * contrast(visible, ir_mask)
        assert contrast("UV365", uv_mask) > 4 * contrast(visible, uv_mask)


def test_sample_featured_ratio_and_pca_show_both_hidden_layers(tmp_path: Path) -> None:
    """The manifest's ratio (longest / shortest wavelength: IR940 / UV365) shows the infrared
    text and the ultraviolet stamp at once, which no visible band shows."""
    from iiifsrv.ingest import sample

    sample.ensure(tmp_path / "img", tmp_path / "data", small=True)
    _, ir_mask, uv_mask, _ = sample.bands(1)

    def contrast(image: np.ndarray, mask: pyvips.Image) -> float:
        m = mask.numpy() > 0.5
        ys, xs = np.nonzero(m)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        pixels, inside = image[box].astype(float), m[box]
        return abs(pixels[inside].mean() - pixels[~inside].mean())

    ratio = _png(tmp_path / "img", tmp_path / "data",
                 "/iiif/3/palimpsest%2Fratio:IR940,UV365/full/max/0/default.png")  # fmt: skip
    visible = _png(tmp_path / "img", tmp_path / "data",
                   "/iiif/3/palimpsest%2FR650/full/max/0/default.png")  # fmt: skip
    for mask in (ir_mask, uv_mask):
        assert contrast(ratio, mask) > 100 and contrast(ratio, mask) > 3 * contrast(visible, mask)
    pca = _png(tmp_path / "img", tmp_path / "data",
               "/iiif/3/palimpsest%2Fpca/full/max/0/default.png")  # fmt: skip
    assert pca.shape[2] == 3
    assert max(contrast(pca[..., c], ir_mask) for c in range(3)) > 100
