"""iiifsrv ingest: profiles, exactness, orientation, ICC, idempotence, failures, objects."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from iiifsrv.sources import jp2 as codestream
from tests.ingest_support import catalogue_ids, get, level0, run_cli, smooth


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("masters")
    tifffile.imwrite(root / "rgb-8bit-300x200.tif", smooth(200, 300, 3, seed=1))
    tifffile.imwrite(root / "grey-8bit-300x200.tif", smooth(200, 300, 1, seed=2))
    tifffile.imwrite(root / "rgb-16bit-300x200.tif", smooth(200, 300, 3, dtype="uint16", seed=3))
    tifffile.imwrite(root / "grey-16bit-300x200.tif", smooth(200, 300, 1, dtype="uint16", seed=4))
    photo = pyvips.Image.new_from_array(smooth(400, 600, 3, seed=5)).copy(interpretation="srgb")
    photo.pngsave(str(root / "photo-600x400.png"))
    oriented = pyvips.Image.new_from_array(smooth(200, 300, 3, seed=6)).copy(interpretation="srgb")
    oriented = oriented.copy()
    oriented.set_type(pyvips.GValue.gint_type, "orientation", 6)
    oriented.jpegsave(str(root / "exif-orientation6-300x200.jpg"), Q=90)
    icc = pyvips.Image.new_from_array(smooth(100, 150, 3, seed=7)).copy(interpretation="srgb")
    icc.icc_transform("srgb", input_profile="srgb").tiffsave(str(root / "icc-srgb-150x100.tif"))
    return root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(
    "name", ["rgb-8bit-300x200", "grey-8bit-300x200", "rgb-16bit-300x200", "grey-16bit-300x200"]
)
def test_lossless_profile_reproduces_every_pixel(masters: Path, tmp_path: Path, name: str) -> None:
    source = masters / f"{name}.tif"
    status, out = run_cli(
        "ingest", str(source), "--images", str(tmp_path / "img"), "--data", str(tmp_path / "d"),
        "--profile", "lossless",
    )  # fmt: skip
    assert status == 0, out
    derivative = tmp_path / "img" / f"{name}.tif"
    with tifffile.TiffFile(derivative) as tif:
        levels = tif.series[0].levels
        assert len(levels) >= 2 and levels[0].keyframe.tilewidth == 256
    expected = tifffile.imread(source)
    actual = level0(derivative)
    assert actual.dtype == expected.dtype
    assert np.array_equal(actual, expected)


def test_default_profile_is_lossless_for_16_bit(masters: Path, tmp_path: Path) -> None:
    source = masters / "rgb-16bit-300x200.tif"
    status, out = run_cli("ingest", str(source), "--images", str(tmp_path), "--data", str(tmp_path))
    assert status == 0, out
    assert np.array_equal(level0(tmp_path / "rgb-16bit-300x200.tif"), tifffile.imread(source))


def test_jpeg_profile_stays_above_38_db_psnr(masters: Path, tmp_path: Path) -> None:
    source = masters / "photo-600x400.png"
    status, out = run_cli("ingest", str(source), "--images", str(tmp_path), "--data", str(tmp_path))
    assert status == 0, out
    derivative = tmp_path / "photo-600x400.tif"
    with tifffile.TiffFile(derivative) as tif:
        page = tif.series[0].levels[0].keyframe
        assert page.compression == 7 and (page.tilewidth, page.tilelength) == (256, 256)
    original = pyvips.Image.new_from_file(str(source)).numpy()
    assert _psnr(level0(derivative), original) >= 38.0


def test_jp2_profile_writes_jpeg2000_that_is_served(masters: Path, tmp_path: Path) -> None:
    images, data = tmp_path / "img", tmp_path / "data"
    source = masters / "grey-16bit-300x200.tif"
    status, out = run_cli(
        "ingest", str(source), "--images", str(images), "--data", str(data), "--profile", "jp2"
    )
    assert status == 0, out
    jp2 = images / "grey-16bit-300x200.jp2"
    assert jp2.read_bytes()[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    decoded = pyvips.Image.new_from_file(str(jp2)).numpy()
    assert np.array_equal(decoded, tifffile.imread(source))  # the jp2 band profile is lossless
    # TLM markers give every tile-part's length: object storage reads a tile's bytes alone.
    raw = jp2.read_bytes()
    _, start, end = codestream.codestream_bounds(io.BytesIO(raw), len(raw))
    first = start + codestream.main_header_end(raw[start:])
    lengths = codestream.tlm_lengths(raw[start:first])
    walked = codestream.walk_tile_parts(lambda o, n: raw[o : o + n], first, end, 100)
    assert lengths == [(t, n) for t, _, n in walked] and len(lengths) >= 2
    info = get(images, data, "/iiif/3/grey-16bit-300x200/info.json").json()
    assert (info["width"], info["height"]) == (300, 200)


def test_exif_orientation_is_applied(masters: Path, tmp_path: Path) -> None:
    source = masters / "exif-orientation6-300x200.jpg"
    status, out = run_cli("ingest", str(source), "--images", str(tmp_path), "--data", str(tmp_path))
    assert status == 0, out
    assert level0(tmp_path / "exif-orientation6-300x200.tif").shape[:2] == (300, 200)


def test_icc_profile_is_kept(masters: Path, tmp_path: Path) -> None:
    source = masters / "icc-srgb-150x100.tif"
    status, out = run_cli("ingest", str(source), "--images", str(tmp_path), "--data", str(tmp_path))
    assert status == 0, out
    original = pyvips.Image.new_from_file(str(source)).get("icc-profile-data")
    kept = pyvips.Image.new_from_file(str(tmp_path / "icc-srgb-150x100.tif"))
    assert kept.get("icc-profile-data") == original


def test_unchanged_source_is_skipped_and_a_changed_one_redone(
    masters: Path, tmp_path: Path
) -> None:
    source = tmp_path / "work.tif"
    tifffile.imwrite(source, smooth(64, 80, 3, seed=9))
    args = ("ingest", str(source), "--images", str(tmp_path / "i"), "--data", str(tmp_path / "d"))
    assert run_cli(*args)[0] == 0
    derivative = tmp_path / "i" / "work.tif"
    first = derivative.stat().st_mtime_ns
    status, out = run_cli(*args)
    assert status == 0 and "skipped  work: unchanged" in out
    assert derivative.stat().st_mtime_ns == first
    tifffile.imwrite(source, smooth(64, 80, 3, seed=10))
    status, out = run_cli(*args)
    assert status == 0 and "ok       work" in out
    assert np.array_equal(level0(derivative)[..., 0].shape, (64, 80))


def test_bad_inputs_fail_alone_with_clear_messages(masters: Path, tmp_path: Path) -> None:
    images, data, src = tmp_path / "img", tmp_path / "data", tmp_path / "src"
    src.mkdir()
    keep = masters / "grey-8bit-300x200.tif"
    assert run_cli("ingest", str(keep), "--images", str(images), "--data", str(data))[0] == 0
    before = (images / "grey-8bit-300x200.tif").read_bytes()
    (src / "corrupt.tif").write_bytes(b"II*\x00" + os.urandom(200))
    good_jpeg = pyvips.Image.new_from_array(smooth(120, 160, 3)).copy(interpretation="srgb")
    data_jpeg = good_jpeg.jpegsave_buffer(Q=90)
    (src / "truncated.jpg").write_bytes(data_jpeg[: len(data_jpeg) // 2])
    (src / "notes.png").write_text("this is not an image")
    (src / "good.jpg").write_bytes(data_jpeg)
    status, out = run_cli(
        "ingest", str(src), str(keep.with_name("missing.tif")), "--images", str(images),
        "--data", str(data),
    )  # fmt: skip
    assert status == 1
    lines = {line.split(":")[0]: line for line in out.splitlines() if line.startswith("FAILED")}
    assert "corrupt or unreadable image" in lines["FAILED   corrupt"]
    assert "truncated" in lines["FAILED   truncated"].lower()
    assert "unsupported format" in lines["FAILED   notes"]
    assert "no such file" in lines["FAILED   missing"]
    assert "ok       good" in out and "1 ingested, 0 skipped, 4 failed" in out
    assert sorted(p.name for p in images.iterdir()) == ["good.tif", "grey-8bit-300x200.tif"]
    assert (images / "grey-8bit-300x200.tif").read_bytes() == before
    assert catalogue_ids(data) == ["good", "grey-8bit-300x200"]


def test_unknown_profile_is_refused(masters: Path, tmp_path: Path) -> None:
    status, out = run_cli(
        "ingest", str(masters), "--images", str(tmp_path), "--data", str(tmp_path),
        "--profile", "nope",
    )  # fmt: skip
    assert status == 2 and "unknown profile 'nope'" in out and "lossless" in out


def test_objects_cli_and_json_endpoint(masters: Path, tmp_path: Path) -> None:
    images, data = tmp_path / "img", tmp_path / "data"
    source = masters / "rgb-8bit-300x200.tif"
    status, _ = run_cli(
        "ingest", str(source), "--images", str(images), "--data", str(data), "--id", "page1",
        "--label", "Page one", "--meta", "creator=A. Scribe", "--rights",
        "http://rightsstatements.org/vocab/NoC-US/1.0/",
    )  # fmt: skip
    assert status == 0
    status, out = run_cli("objects", "list", "--images", str(images), "--data", str(data))
    assert status == 0 and out.startswith("page1\timage\t300x200")
    status, out = run_cli("objects", "show", "page1", "--images", str(images), "--data", str(data))
    shown = json.loads(out)
    assert shown["label"] == "Page one" and shown["metadata"] == {"creator": "A. Scribe"}
    listing = get(images, data, "/objects").json()
    assert listing["total"] == 1 and listing["objects"][0]["id"] == "page1"
    doc = get(images, data, "/objects/page1").json()
    assert doc["info"] == "http://test/iiif/3/page1/info.json"
    assert get(images, data, doc["info"].removeprefix("http://test")).status_code == 200
    assert get(images, data, "/objects/nothing").status_code == 404
    status, out = run_cli(
        "objects", "remove", "page1", "--images", str(images), "--data", str(data)
    )
    assert status == 0 and not (images / "page1.tif").exists()
    assert get(images, data, "/objects").json()["total"] == 0
    status, out = run_cli("objects", "show", "page1", "--images", str(images), "--data", str(data))
    assert status == 1 and "no object 'page1'" in out
