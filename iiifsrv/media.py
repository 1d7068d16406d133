"""Audio and video files: content types, duration and size (probe), poster frames for video.

Blocking I/O; imports only the standard library and iiifsrv.errors. WAV is read with the
standard ``wave`` module; every other container with Debian's ``ffprobe``, posters with ``ffmpeg``
(both from the ffmpeg package): one maintained tool that reads every container viewers play.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from iiifsrv.errors import NotFound, Unavailable

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".ogv": "video/ogg",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
}
PROBE_TIMEOUT = 30.0


def media_type(path: str) -> str:
    """The content type of an audio or video file from its extension."""
    return MEDIA_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def is_media(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in MEDIA_TYPES


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int = 0
    height: int = 0
    video: bool = False


def _wav(path: Path) -> MediaInfo:
    with wave.open(str(path), "rb") as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
    return MediaInfo(duration=frames / rate if rate else 0.0)


def _ffprobe(path: Path) -> MediaInfo:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise Unavailable("ffprobe is not installed (Debian package ffmpeg)")
    command = [
        exe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,width,height,duration",
        "-of",
        "json",
        str(path),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=PROBE_TIMEOUT, check=True, text=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"cannot read the media file {path.name}: {exc}") from None
    doc = json.loads(done.stdout or "{}")
    duration = float(doc.get("format", {}).get("duration") or 0.0)
    width = height = 0
    video = False
    for stream in doc.get("streams", []):
        if stream.get("codec_type") == "video" and not video:
            video = True
            width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
        if not duration and stream.get("duration"):
            duration = float(stream["duration"])
    return MediaInfo(duration=duration, width=width, height=height, video=video)


def probe(path: Path) -> MediaInfo:
    """Duration (seconds) and, for video, frame size, read from the file itself."""
    if not path.is_file():
        raise NotFound(f"no media file {path.name!r}")
    if path.suffix.lower() == ".wav":
        try:
            return _wav(path)
        except (wave.Error, EOFError):
            pass  # e.g. WAV with a float or extensible header: ffprobe reads those
    return _ffprobe(path)


def poster(source: Path, target: Path, at: float = 1.0) -> Path:
    """Write a JPEG frame of ``source`` to ``target`` (atomically) and return it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise Unavailable("ffmpeg is not installed: no poster image")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unique per call: concurrent first requests must not write or remove each other's file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    command = [
        exe,
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-ss",
        f"{max(0.0, at):.3f}",
        "-i",
        str(source),
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "mjpeg",
        str(tmp),
    ]
    try:
        subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, check=True)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise Unavailable(f"no frame could be read from {source.name}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"cannot make a poster for {source.name}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
