"""A/V delivery: byte ranges on a real uvicorn (the wire matters), posters, durations."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv import media
from iiifsrv.catalogue import Catalogue, CatalogueObject
from iiifsrv.errors import RangeNotSatisfiable
from iiifsrv.presentation import validate
from iiifsrv.web.media import parse_range
from tests.ports import free_port as _free_port
from tests.presentation_support import HAS_FFMPEG, needs_ffmpeg, write_mp4, write_wav

# -- the Range header (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-1", (0, 1)),
        ("bytes=0-", (0, 999)),
        ("bytes=10-2000", (10, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=999-999", (999, 999)),
        ("BYTES = 5 - 6", (5, 6)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=5-1", None),  # invalid: ignored
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-1001", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, 1000)
    assert caught.value.headers["Content-Range"] == "bytes */1000"


# -- durations and posters -------------------------------------------------------------------


def test_wav_duration_read_with_standard_library(tmp_path: Path) -> None:
    info = media.probe(write_wav(tmp_path / "t.wav", seconds=0.5))
    assert info.duration == pytest.approx(0.5)
    assert not info.video


@needs_ffmpeg
def test_mp4_duration_and_size_from_ffprobe(tmp_path: Path) -> None:
    info = media.probe(write_mp4(tmp_path / "f.mp4", seconds=2.0))
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height, info.video) == (64, 48, True)


def test_content_types() -> None:
    assert media.media_type("a/b.MP4") == "video/mp4"
    assert media.media_type("x.webm") == "video/webm"
    assert media.media_type("x.wav") == "audio/wav"
    assert media.media_type("x.mp3") == "audio/mpeg"
    assert not media.is_media("x.jpg")


# -- a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("media")
    images, data = root / "images", root / "data"
    (images / "av").mkdir(parents=True)
    write_wav(images / "av" / "tone.wav", seconds=1.0)
    (images / "plain.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    if HAS_FFMPEG:
        write_mp4(images / "av" / "film.mp4", seconds=2.0)
    catalogue = Catalogue(data / "catalogue.sqlite3")
    if HAS_FFMPEG:
        catalogue.upsert(
            CatalogueObject(id="film", label="A film", kind="video", media="av/film.mp4")
        )
    port = _free_port()
    env = {**os.environ, "IIIFSRV_LOG_LEVEL": "warning"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [sys.executable, "-m", "iiifsrv", "serve", "--port", str(port)]
        + ["--images", str(images), "--data", str(data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.close()
            output = (root / "server.log").read_text(errors="replace")
            pytest.fail(f"server did not start: {output[-2000:]}")
        time.sleep(0.05)  # polling for start-up, not timing a result
    try:
        yield base, images
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_range_first_two_bytes_is_206(server: tuple[str, Path]) -> None:
    base, images = server
    data = (images / "av" / "tone.wav").read_bytes()
    response = httpx.get(f"{base}/media/av/tone.wav", headers={"Range": "bytes=0-1"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-1/{len(data)}"
    assert response.headers["content-length"] == "2"
    assert response.content == data[:2] == b"RI"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["access-control-allow-origin"] == "*"


def test_range_past_the_end_is_416(server: tuple[str, Path]) -> None:
    base, images = server
    size = (images / "av" / "tone.wav").stat().st_size
    response = httpx.get(f"{base}/media/av/tone.wav", headers={"Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.headers["access-control-allow-origin"] == "*"


def test_whole_file_is_200_with_length(server: tuple[str, Path]) -> None:
    base, images = server
    data = (images / "av" / "tone.wav").read_bytes()
    response = httpx.get(f"{base}/media/av/tone.wav")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.content == data
    head = httpx.head(f"{base}/media/av/tone.wav")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    tail = httpx.get(f"{base}/media/av/tone.wav", headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == data[-4:]
    cached = httpx.get(
        f"{base}/media/av/tone.wav", headers={"If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304
    stale = httpx.get(
        f"{base}/media/av/tone.wav", headers={"Range": "bytes=0-1", "If-Range": '"old"'}
    )
    assert stale.status_code == 200 and stale.content == data


def test_media_preflight_and_refusals(server: tuple[str, Path]) -> None:
    base, _ = server
    preflight = httpx.options(
        f"{base}/media/av/tone.wav",
        headers={"Origin": "https://v.example", "Access-Control-Request-Headers": "range"},
    )
    assert preflight.status_code == 204
    assert "Range" in preflight.headers["access-control-allow-headers"]
    assert httpx.get(f"{base}/media/plain.jpg").status_code == 404  # not an A/V file
    assert httpx.get(f"{base}/media/av/none.wav").status_code == 404
    assert httpx.get(f"{base}/media/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert httpx.get(f"{base}/media/av/tone.wav/poster.jpg").status_code == 404


@needs_ffmpeg
def test_video_range_poster_and_manifest(server: tuple[str, Path]) -> None:
    base, images = server
    data = (images / "av" / "film.mp4").read_bytes()
    middle = httpx.get(f"{base}/media/av/film.mp4", headers={"Range": "bytes=100-199"})
    assert middle.status_code == 206
    assert middle.headers["content-type"] == "video/mp4"
    assert middle.content == data[100:200]
    poster = httpx.get(f"{base}/media/av/film.mp4/poster.jpg")
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/jpeg"
    assert poster.content[:3] == b"\xff\xd8\xff"
    manifest = httpx.get(f"{base}/iiif/manifests/film")
    assert manifest.status_code == 200
    doc = manifest.json()
    assert validate.errors(doc) == []
    canvas = doc["items"][0]
    assert canvas["duration"] == pytest.approx(2.0, abs=0.1)
    assert (canvas["width"], canvas["height"]) == (64, 48)
    body = canvas["items"][0]["items"][0]["body"]
    assert body["type"] == "Video" and body["format"] == "video/mp4"
    assert body["id"] == f"{base}/media/av/film.mp4"
    assert canvas["thumbnail"][0]["id"] == f"{base}/media/av/film.mp4/poster.jpg"


def test_sample_tone_is_a_two_second_wav(tmp_path: Path) -> None:
    from iiifsrv import samples

    samples._write_tone(str(tmp_path / "tone.wav"))
    assert media.probe(tmp_path / "tone.wav").duration == pytest.approx(2.0)
