"""Audio and video files: content types, duration and size (probe), poster frames for video.

Blocking I/O; imports the standard library, iiifsrv.errors, sources.resolve (the identifier
check) and sources.storage (pure). WAV is read with the standard ``wave`` module; every other
container with Debian's ``ffprobe``, posters with ``ffmpeg`` (both from the ffmpeg package): one
maintained tool that reads every container viewers play. They read local files only
(``-protocol_whitelist file``) or, for an S3 image root, one presigned HTTP(S) URL of the
object (``http,https,tcp,tls``, seeking by ranged GETs); the demuxer is always fixed by the
extension. Their results, failures included, are remembered per file version, and their error
text goes to the log (with the URL replaced by the key), never to a client.

MediaFiles finds A/V files under the image root, a folder or an S3 bucket, and reads them.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from iiifsrv.errors import NotFound, Unavailable
from iiifsrv.sources.resolve import check_identifier
from iiifsrv.sources.storage import Version

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


def _input(source: str, suffix: str) -> list[str]:
    """ffmpeg/ffprobe input options: a local file, or the one presigned URL of an object in
    S3 (nothing else), and the demuxer named by the extension."""
    remote = source.startswith(("http://", "https://"))
    options = ["-protocol_whitelist", "http,https,tcp,tls" if remote else "file"]
    demuxer = DEMUXERS.get(suffix.lower())
    if demuxer:
        options += ["-f", demuxer]
    return options


def _wav(path: Path) -> MediaInfo:
    with wave.open(str(path), "rb") as wav:
        frames, rate = wav.getnframes(), wav.getframerate()
    return MediaInfo(duration=frames / rate if rate else 0.0)


def _ffprobe(source: str, suffix: str) -> MediaInfo:
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
        *_input(source, suffix),
        "-i",
        source,
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
_probes: dict[tuple[str, int | str, int], MediaInfo | None] = {}
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
    return _probe(version, path.suffix, lambda: str(path), path, str(path))


def _probe(
    version: tuple[str, int | str, int],
    suffix: str,
    source: Callable[[], str],
    local: Path | None,
    name: str,
) -> MediaInfo:
    """Probe once per version: ``source()`` gives what ffprobe reads (a path or a URL)."""
    if version in _probes:
        known = _probes[version]
        if known is None:
            raise Unavailable(CANNOT_READ)
        return known
    info: MediaInfo | None = None
    if suffix.lower() == ".wav" and local is not None:
        # A WAV with a float or extensible header raises here: ffprobe reads those.
        with contextlib.suppress(wave.Error, EOFError):
            info = _wav(local)
    if info is None:
        url = source()
        try:
            info = _ffprobe(url, suffix)
        except _Failed as exc:
            log.warning("ffprobe cannot read %s: %s", name, str(exc).replace(url, name))
    if len(_probes) >= _PROBES_MAX:
        _probes.clear()
    _probes[version] = info
    if info is None:
        raise Unavailable(CANNOT_READ)
    return info


def poster(
    source: Path | str, target: Path, at: float = 1.0, *, suffix: str = "", name: str = ""
) -> Path:
    """Write a JPEG frame of ``source`` (a file, or the URL of a file with extension
    ``suffix``, logged as ``name``) to ``target`` (atomically) and return it."""
    text = str(source)
    suffix = suffix or Path(text).suffix
    name = name or text
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
        *_input(text, suffix),
        "-i",
        text,
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
        log.warning("ffmpeg cannot make a poster for %s: %s", name, str(exc).replace(text, name))
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
        identity = f"{source}\x1f{st.st_mtime_ns}\x1f{st.st_size}"
        return self.make(
            identity, lambda: probe(source), lambda target, at: poster(source, target, at)
        )

    def make(
        self,
        identity: str,
        probed: Callable[[], MediaInfo],
        write: Callable[[Path, float], Path],
    ) -> Path:
        """The poster of the file version ``identity``: ``probed()`` says whether it is a video
        and how long, ``write(target, at)`` writes the frame at ``at`` seconds."""
        key = hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
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
                info = probed()
                if not info.video:
                    raise NotFound(NO_POSTER)
                write(target, min(1.0, info.duration / 2) if info.duration else 0.0)
            except ToolMissing:
                raise
            except (NotFound, Unavailable):
                with self._guard:
                    if len(self._none) >= _PROBES_MAX:
                        self._none.clear()
                    self._none.add(key)
                raise NotFound(NO_POSTER) from None
        return target


# -- A/V files under the image root: a folder or an S3 bucket -----------------------------------

PRESIGN_SECONDS = 300  # how long the URL ffprobe/ffmpeg read an S3 object through is valid


class ObjectStore(Protocol):
    """What MediaFiles needs of an S3 storage (sources/s3.py S3Storage)."""

    def stat(self, key: str) -> Version: ...

    def read(self, key: str, offset: int, length: int, *, etag: str = "") -> bytes: ...

    def presign(self, key: str, seconds: int) -> str: ...


@dataclass(frozen=True)
class MediaObject:
    path: str  # relative to the image root, "/"-separated ("av/film.mp4")
    size: int
    mtime: float
    tag: str  # what changes with the content: "<mtime_ns>" locally, the ETag in S3
    file: Path | None = None  # the local file; None when it is in object storage

    @property
    def identity(self) -> str:
        if self.file is not None:
            return f"{self.file}\x1f{self.tag}\x1f{self.size}"
        return f"s3:{self.path}\x1f{self.tag}\x1f{self.size}"


class MediaFiles:
    """A/V files under the image root: a local folder, or the S3 storage of an s3:// root
    (then ``store`` is set and keys are the paths relative to the root's prefix)."""

    def __init__(self, root: Path, posters: Path, store: ObjectStore | None = None) -> None:
        self.root = root
        self.store = store
        self.posters = Posters(posters)

    def find(self, path: str) -> MediaObject:
        """The A/V file ``path`` names (A/V extensions only, nothing outside the root)."""
        missing = NotFound(f"no media file {path!r}")
        try:
            check_identifier(path)
        except NotFound:
            raise missing from None
        if not is_media(path):
            raise missing
        if self.store is not None:
            try:
                version = self.store.stat(path)
            except NotFound:
                raise missing from None
            return MediaObject(path, version.size, version.mtime, version.tag)
        root_real = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(root_real, *path.split("/")))
        if not real.startswith(root_real + os.sep) or not is_media(real):
            raise missing
        try:
            st = os.stat(real)
        except OSError:
            raise missing from None
        if not os.path.isfile(real):
            raise missing
        return MediaObject(path, st.st_size, st.st_mtime, str(st.st_mtime_ns), Path(real))

    def read(self, obj: MediaObject, offset: int, length: int) -> bytes:
        """Bytes of an object in S3: one ranged GET of that version (If-Match its ETag)."""
        assert self.store is not None
        return self.store.read(obj.path, offset, length, etag=obj.tag)

    def _url(self, obj: MediaObject) -> str:
        assert self.store is not None
        return self.store.presign(obj.path, PRESIGN_SECONDS)

    def probe(self, obj: MediaObject) -> MediaInfo:
        """Duration and frame size (a local file as ``probe`` does; an object through a URL)."""
        if obj.file is not None:
            return probe(obj.file)
        suffix = os.path.splitext(obj.path)[1]
        version = (f"s3:{obj.path}", obj.tag, obj.size)
        return _probe(version, suffix, lambda: self._url(obj), None, obj.path)

    def probe_path(self, path: str) -> MediaInfo:
        return self.probe(self.find(path))

    def poster(self, obj: MediaObject) -> Path:
        """The poster frame of a video (made once per version), or NotFound."""
        if obj.file is not None:
            return self.posters.get(obj.file)
        suffix = os.path.splitext(obj.path)[1]

        def write(target: Path, at: float) -> Path:
            return poster(self._url(obj), target, at, suffix=suffix, name=obj.path)

        return self.posters.make(obj.identity, lambda: self.probe(obj), write)
