"""Audio and video files: content types, duration and size (probe), poster frames for video.

Blocking I/O; imports only the standard library and iiifsrv.errors. WAV is read with the
standard ``wave`` module; every other container with Debian's ``ffprobe``, posters with ``ffmpeg``
(both from the ffmpeg package): one maintained tool that reads every container viewers play.
Both run on local files only (``-protocol_whitelist file``, the demuxer fixed by extension);
their results, failures included, are remembered per file version, and their error text goes
to the log, never to a client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

from iiifsrv.errors import NotFound, Unavailable

log = logging.getLogger("iiifsrv.media")

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
# The demuxer for each extension: ffmpeg must not pick one by content (a playlist or concat
# script saved as .mp4 could make it read other files).
DEMUXERS = {
    ".mp4": "mov",
    ".m4v": "mov",
    ".mov": "mov",
    ".m4a": "mov",
    ".webm": "matroska",
    ".mkv": "matroska",
    ".ogv": "ogg",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".mp3": "mp3",
    ".aac": "aac",
    ".wav": "wav",
    ".flac": "flac",
}
CANNOT_READ = "cannot read this media file"
NO_POSTER = "no poster for this file"


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


class ToolMissing(Unavailable):
    """ffprobe or ffmpeg is not installed (a set-up problem, not a property of the file)."""


class _Failed(Exception):
    """ffprobe or ffmpeg could not read the file (the detail is for the log only)."""


def _run(command: list[str]) -> str:
    """Run ffprobe/ffmpeg; stdout, or _Failed. The one place a process is spawned."""
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=PROBE_TIMEOUT, check=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise _Failed(f"exit status {exc.returncode}: {(exc.stderr or '').strip()[:500]}") from None
    except subprocess.TimeoutExpired:
        raise _Failed(f"no result within {PROBE_TIMEOUT:.0f} s") from None
    return done.stdout or ""


def _input(path: Path) -> list[str]:
    """ffmpeg/ffprobe input options: local files only, the demuxer named by the extension."""
    options = ["-protocol_whitelist", "file"]
    demuxer = DEMUXERS.get(path.suffix.lower())
    if demuxer:
        options += ["-f", demuxer]
    return options


def _wav(path: Path) -> MediaInfo:
    with wave.open(str(path), "rb") as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
    return MediaInfo(duration=frames / rate if rate else 0.0)


def _ffprobe(path: Path) -> MediaInfo:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise ToolMissing("ffprobe is not installed (Debian package ffmpeg)")
    command = [
        exe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,width,height,duration",
        "-of",
        "json",
        *_input(path),
        "-i",
        str(path),
    ]
    try:
        doc = json.loads(_run(command) or "{}")
        duration = float(doc.get("format", {}).get("duration") or 0.0)
        width = height = 0
        video = False
        for stream in doc.get("streams", []):
            if stream.get("codec_type") == "video" and not video:
                video = True
                width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
            if not duration and stream.get("duration"):
                duration = float(stream["duration"])
    except (ValueError, TypeError, AttributeError) as exc:
        raise _Failed(f"unreadable ffprobe output: {exc}") from None
    return MediaInfo(duration=duration, width=width, height=height, video=video)


# Probe results and failures per file version (path, mtime, size): a broken file costs one
# ffprobe per version, not one per request.
_probes: dict[tuple[str, int, int], MediaInfo | None] = {}
_PROBES_MAX = 4096


def probe(path: Path) -> MediaInfo:
    """Duration (seconds) and, for video, frame size, read from the file itself."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not path.is_file():
        raise NotFound(f"no media file {path.name!r}")
    version = (str(path), st.st_mtime_ns, st.st_size)
    if version in _probes:
        known = _probes[version]
        if known is None:
            raise Unavailable(CANNOT_READ)
        return known
    info: MediaInfo | None = None
    if path.suffix.lower() == ".wav":
        # A WAV with a float or extensible header raises here: ffprobe reads those.
        with contextlib.suppress(wave.Error, EOFError):
            info = _wav(path)
    if info is None:
        try:
            info = _ffprobe(path)
        except _Failed as exc:
            log.warning("ffprobe cannot read %s: %s", path, exc)
    if len(_probes) >= _PROBES_MAX:
        _probes.clear()
    _probes[version] = info
    if info is None:
        raise Unavailable(CANNOT_READ)
    return info


def poster(source: Path, target: Path, at: float = 1.0) -> Path:
    """Write a JPEG frame of ``source`` to ``target`` (atomically) and return it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise ToolMissing("ffmpeg is not installed: no poster image")
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
        *_input(source),
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
        _run(command)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise _Failed("no frame written")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except _Failed as exc:
        log.warning("ffmpeg cannot make a poster for %s: %s", source, exc)
        raise Unavailable(NO_POSTER) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


class Posters:
    """Poster frames of videos, made once per file version into ``folder``; a file that has
    none (no video stream, unreadable) is remembered too, so it costs no process again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._none: set[str] = set()

    def get(self, source: Path) -> Path:
        """The poster of the video ``source``, or NotFound("no poster for this file")."""
        st = source.stat()
        identity = f"{source}\x1f{st.st_mtime_ns}\x1f{st.st_size}".encode()
        key = hashlib.blake2b(identity, digest_size=16).hexdigest()
        target = self.folder / f"{key}.jpg"
        if target.is_file():
            return target
        if key in self._none:
            raise NotFound(NO_POSTER)
        # One ffmpeg per video version, however many first requests arrive together.
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if target.is_file():
                return target
            if key in self._none:
                raise NotFound(NO_POSTER)
            try:
                info = probe(source)
                if not info.video:
                    raise NotFound(NO_POSTER)
                poster(source, target, min(1.0, info.duration / 2) if info.duration else 0.0)
            except ToolMissing:
                raise
            except (NotFound, Unavailable):
                with self._guard:
                    if len(self._none) >= _PROBES_MAX:
                        self._none.clear()
                    self._none.add(key)
                raise NotFound(NO_POSTER) from None
        return target
