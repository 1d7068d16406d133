"""The spectral service: values equal the band pixels, windows, plots, and refusals."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.ingest_support import get, run_cli, smooth

WAVELENGTHS = (365, 550, 650, 940)


@pytest.fixture(scope="module")
def leaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("spectra")
    folder = root / "leaf16"
    folder.mkdir()
    for i, nm in enumerate(WAVELENGTHS):
        tifffile.imwrite(folder / f"leaf16_{nm}nm.tif", smooth(70, 110, 1, dtype="uint16", seed=i))
    status, out = run_cli("ingest", str(folder), "--images", str(root / "img"),
                          "--data", str(root / "data"))  # fmt: skip
    assert status == 0, out
    return root / "img", root / "data"


def _band_pixels(images: Path, name: str) -> np.ndarray:
    return tifffile.imread(images / "leaf16" / f"{name}.tif").astype(np.float64)


@pytest.mark.parametrize(("x", "y", "radius"), [(0, 0, 0), (57, 33, 0), (109, 69, 0), (50, 2, 3)])
def test_values_equal_the_band_pixels(leaf: tuple[Path, Path], x: int, y: int, radius: int) -> None:
    images, data = leaf
    response = get(images, data, f"/spectra/leaf16?x={x}&y={y}&radius={radius}")
    assert response.status_code == 200
    doc = response.json()
    assert [b["wavelength_nm"] for b in doc["bands"]] == list(map(float, WAVELENGTHS))
    assert [b["name"] for b in doc["bands"]] == ["UV365", "G550", "R650", "IR940"]
    for band in doc["bands"]:
        pixels = _band_pixels(images, band["name"])
        window = pixels[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        assert band["mean"] == pytest.approx(window.mean(), abs=1e-3)
        assert band["max"] == 65535 and band["image"] == f"leaf16/{band['name']}"


def test_plots_are_svg_and_png(leaf: tuple[Path, Path]) -> None:
    images, data = leaf
    svg = get(images, data, "/spectra/leaf16?x=10&y=10&format=svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "wavelength (nm)" in texts and "IR940" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 4
    png = get(images, data, "/spectra/leaf16?x=10&y=10&format=png")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("x=110&y=0", 400, "outside the image (110x70"),
        ("x=0&y=70", 400, "outside the image"),
        ("x=-1&y=5", 400, "outside the image"),
        ("y=5", 400, "missing query parameter 'x'"),
        ("x=a&y=5", 400, "must be an integer"),
        ("x=1&y=1&radius=999", 400, "radius"),
        ("x=1&y=1&format=gif", 400, "format"),
    ],
)
def test_bad_requests_are_400(
    leaf: tuple[Path, Path], query: str, status: int, message: str
) -> None:
    response = get(*leaf, f"/spectra/leaf16?{query}")
    assert response.status_code == status and message in response.text


def test_unknown_object_is_404(leaf: tuple[Path, Path]) -> None:
    assert get(*leaf, "/spectra/nothing?x=1&y=1").status_code == 404
