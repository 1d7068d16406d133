"""OCR of pages kept in object storage (a real OpenStack Swift, tests/s3_support.py): pages
ingested into an ``s3://`` root are read by ``iiifsrv enrich ocr`` through the server's own
source layer (listing, ranged GETs of the stored TIFF, never the whole object at once), in two
worker processes; a client of the server on that root finds every line, accurately and where it
was drawn, and Content Search finds a word on its line. A rerun skips unchanged objects (by
their ETag) and reads again the one whose object was replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv.samples import printed_page
from iiifsrv.settings import load
from iiifsrv.web.app import create_app
from tests.enrich.test_ocr import TEXT, get, levenshtein, near, xywh
from tests.s3_support import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, Swift, start_swift

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")

ROOT = f"s3://{BUCKET}/scans"
PAGES = {"dickens-1": TEXT[:3], "dickens-2": TEXT[3:]}


@pytest.fixture(scope="module")
def swift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swift]:
    try:
        server = start_swift(tmp_path_factory.mktemp("swift-ocr"))
    except RuntimeError as exc:  # not installed or not starting: fail, not skip
        pytest.fail(f"cannot start OpenStack Swift for the S3 tests: {exc}")
    yield server
    server.stop()


def iiifsrv(swift: Swift, *args: str) -> str:
    """``iiifsrv ARGS`` as a shell runs it, with the S3 credentials and endpoint in its env."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "IIIFSRV_S3_ENDPOINT": swift.endpoint, "IIIFSRV_S3_REGION": REGION}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "iiifsrv", *args], capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_ocr_reads_pages_from_an_s3_root(
    swift: Swift, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    boxes = {}
    for name, lines in PAGES.items():
        image, boxes[name] = printed_page(lines, size=36, margin=90)
        image.tiffsave(str(src / f"{name}.tif"))
    iiifsrv(swift, "ingest", str(src), "--images", ROOT, "--data", str(data))
    keys = [o["Key"] for o in swift.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(keys) == [f"scans/{name}.tif" for name in PAGES]  # nothing local to read

    mark = swift.mark()
    out = iiifsrv(swift, "enrich", "ocr", "--all", "--jobs", "2", "--images", ROOT,
                  "--data", str(data))  # fmt: skip
    for name, lines in PAGES.items():
        assert f"{name}: done ({len(lines)} lines)" in out, out
    # Read as the server reads: ranged GETs (206) of the stored pyramids.
    reads = [a for a in swift.accesses()[mark:] if a.method == "GET" and "/scans/" in a.path]
    assert reads and all(a.status == 206 for a in reads), reads

    # A client of the server on the same root, following the links, finds every line.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    settings = load(overrides={"images": ROOT, "data": str(data), "s3_endpoint": swift.endpoint,
                               "s3_region": REGION})  # fmt: skip
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:  # fmt: skip
        collection = await get(c, "http://test/iiif/collection")
        for ref in collection["items"]:
            manifest = await get(c, ref["id"])
            name = manifest["id"].rsplit("/", 1)[-1]
            canvas = manifest["items"][0]
            found = (await get(c, canvas["annotations"][0]["id"]))["items"]
            assert [a["motivation"] for a in found] == ["supplementing"] * len(PAGES[name])
            errors = sum(levenshtein(a["body"]["value"], t)
                         for a, t in zip(found, PAGES[name], strict=True))  # fmt: skip
            assert errors / sum(len(t) for t in PAGES[name]) <= 0.02, found
            for anno, box in zip(found, boxes[name], strict=True):
                assert near(xywh(anno["target"]), box), (anno["target"], box)
            assert (await c.get(canvas["seeAlso"][0]["id"])).status_code == 200  # its ALTO
            if name == "dickens-2":
                search = next(s for s in manifest["service"] if s["type"] == "SearchService2")
                hits = (await get(c, search["id"], q="Dickens"))["items"]
                assert [xywh(h["target"]) for h in hits] == [xywh(found[-1]["target"])]
    await app.state.annotation_store.close()

    # Unchanged objects (same ETag) are skipped; a replaced one is read again.
    assert "dickens-1: unchanged" in iiifsrv(swift, "enrich", "ocr", "--all", "--images", ROOT,
                                             "--data", str(data))  # fmt: skip
    s3 = swift.client()
    body = s3.get_object(Bucket=BUCKET, Key="scans/dickens-1.tif")["Body"].read()
    s3.put_object(Bucket=BUCKET, Key="scans/dickens-1.tif", Body=body + b"\0")
    rerun = iiifsrv(swift, "enrich", "ocr", "--all", "--images", ROOT, "--data", str(data))
    assert "dickens-1: done (3 lines)" in rerun and "dickens-2: unchanged" in rerun, rerun
