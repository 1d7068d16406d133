"""Images in S3-compatible object storage: the image root setting, and (against a real
OpenStack Swift with s3api, started by tests/s3_support.py) info.json, pixels, passthrough bytes,
the number and size of the ranged GETs, outages and replaced objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from iiifsrv.errors import NotFound
from iiifsrv.settings import SettingsError, load
from iiifsrv.sources.local import LocalStorage
from iiifsrv.sources.storage import ImageRoot, parse_root


@pytest.mark.parametrize(
    ("text", "root"),
    [
        ("s3://images", ImageRoot("s3", bucket="images", prefix="")),
        ("s3://images/", ImageRoot("s3", bucket="images", prefix="")),
        ("s3://images/coll/a", ImageRoot("s3", bucket="images", prefix="coll/a/")),
        ("S3://images//coll//", ImageRoot("s3", bucket="images", prefix="coll/")),
        ("/srv/images", ImageRoot("local", path=Path("/srv/images"))),
    ],
)
def test_image_root_parses(text: str, root: ImageRoot) -> None:
    assert parse_root(text) == root


@pytest.mark.parametrize(
    "text",
    ["", "s3://", "s3://UPPER/x", "s3://b/../x", "s3://b/./x", "http://host/images", "gs://b/p"],
)
def test_image_root_refuses_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(ValueError):
        parse_root(text)


def test_images_setting_is_checked_at_load() -> None:
    with pytest.raises(SettingsError, match="'images' from environment"):
        load(environ={"IIIFSRV_IMAGES": "ftp://host/images"})
    settings = load(environ={"IIIFSRV_IMAGES": "s3://bucket/prefix"})
    assert str(settings.image_root) == "s3://bucket/prefix/"


def test_local_storage_reads_ranges_and_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.tif").write_bytes(b"0123456789")
    (tmp_path / "secret.tif").write_bytes(b"secret")
    (tmp_path / "root" / "link.tif").symlink_to(tmp_path / "secret.tif")
    storage = LocalStorage(tmp_path / "root")
    assert storage.read("sub/a.tif", 3, 4) == b"3456"
    assert storage.stat("sub/a.tif").size == 10
    assert [k for k, _ in storage.list("sub/a")] == ["sub/a.tif"]
    assert storage.exists("sub/a.tif") and not storage.exists("sub/b.tif")
    for key in ("../secret.tif", "link.tif", "sub/../../secret.tif", ""):
        with pytest.raises(NotFound):
            storage.read(key, 0, 1)
