"""Media errors (security review #9): fixed messages without command lines or paths, failures
remembered per file version (a broken or audio-only file spawns ffprobe once, not per request),
no ffmpeg run without a video stream, and local files only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from iiifsrv import media
from iiifsrv.errors import Unavailable
from iiifsrv.settings import load
from iiifsrv.web.app import create_app
from tests.presentation_support import needs_ffmpeg, write_mp4

pytestmark = needs_ffmpeg


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every ffprobe/ffmpeg command the server runs (the real tools still run)."""
    commands: list[list[str]] = []
    real = media._run

    def counting(command: list[str]) -> str:
        commands.append(command)
        return real(command)

    monkeypatch.setattr(media, "_run", counting)
    yield commands


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images" / "av"
    root.mkdir(parents=True)
    write_mp4(root / "film.mp4", seconds=2.0)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=1", "-c:a", "aac", str(root / "audioonly.mp4")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # A concat script saved as .mp4: read by content, it would pull in another file.
    (root / "playlist.mp4").write_text(f"ffconcat version 1.0\nfile '{root / 'film.mp4'}'\n")
    return root.parent


@pytest.fixture
async def client(images: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load(overrides={"images": str(images), "data": str(tmp_path / "data")})
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.mark.parametrize("name", ["broken.mp4", "audioonly.mp4", "playlist.mp4"])
async def test_no_poster_costs_one_probe_and_says_nothing_more(
    client: httpx.AsyncClient, spawns: list[list[str]], images: Path, tmp_path: Path, name: str
) -> None:
    for _ in range(3):
        response = await client.get(f"/media/av/{name}/poster.jpg")
        assert (response.status_code, response.text) == (404, "no poster for this file\n")
        assert response.headers["x-content-type-options"] == "nosniff"
    assert len(spawns) == 1  # one ffprobe; no ffmpeg without a readable video stream
    assert os.path.basename(spawns[0][0]) == "ffprobe"


async def test_a_video_poster_is_made_once(
    client: httpx.AsyncClient, spawns: list[list[str]]
) -> None:
    for _ in range(3):
        response = await client.get("/media/av/film.mp4/poster.jpg")
        assert response.status_code == 200
        assert response.content[:3] == b"\xff\xd8\xff"
    assert [os.path.basename(c[0]) for c in spawns] == ["ffprobe", "ffmpeg"]
    for command in spawns:  # local files only, the demuxer named by the extension
        assert command[command.index("-protocol_whitelist") + 1] == "file"
        assert command[command.index("-i") - 2 : command.index("-i")] == ["-f", "mov"]


async def test_a_new_version_of_the_file_is_probed_again(
    client: httpx.AsyncClient, spawns: list[list[str]], images: Path
) -> None:
    broken = images / "av" / "broken.mp4"
    assert (await client.get("/media/av/broken.mp4/poster.jpg")).status_code == 404
    write_mp4(broken, seconds=2.0)  # replaced by a good video: a new version
    assert (await client.get("/media/av/broken.mp4/poster.jpg")).status_code == 200
    assert [os.path.basename(c[0]) for c in spawns] == ["ffprobe", "ffprobe", "ffmpeg"]


def test_probe_failures_are_remembered_and_generic(
    images: Path, spawns: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    broken = images / "av" / "broken.mp4"
    for _ in range(3):
        with pytest.raises(Unavailable) as caught:
            media.probe(broken)
        assert caught.value.message == "cannot read this media file"
    assert len(spawns) == 1
    # The detail (path, exit status) is in the log for the operator.
    assert str(broken) in caplog.text and "exit status" in caplog.text


async def test_hidden_and_missing_media_get_one_answer(
    client: httpx.AsyncClient, images: Path
) -> None:
    (images / ".private").mkdir()
    write_mp4(images / ".private" / "clip.mp4", seconds=1.0)
    for path in (".private/clip.mp4", "av/.clip.mp4", "av/none.mp4"):
        response = await client.get(f"/media/{path}")
        assert (response.status_code, response.text) == (404, f"no media file {path!r}\n")
