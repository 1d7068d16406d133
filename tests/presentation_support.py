"""Helpers for the presentation and media tests: sample catalogue objects, tiny WAV and MP4
files, tokens. (Fixtures live in the test modules, so no shared conftest is needed.)"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest
import pyvips

from iiifsrv.catalogue import Band, CatalogueObject, Composite

TOKENS = "tok-alice=alice,tok-bob=bob,tok-eve=eve:editor"
HAS_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg/ffprobe not installed")


def write_wav(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    """A mono 16-bit sine tone written with the standard library."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples)
    return path


def write_mp4(path: Path, seconds: float = 2.0) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc=duration={seconds}:size=64x48:rate=10",
            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def grey_png(path: Path, width: int, height: int, value: int) -> None:
    image = (pyvips.Image.black(width, height) + value).cast("uchar")
    image.pngsave(str(path))


def sample_objects() -> list[CatalogueObject]:
    bands = (
        Band("IR940", 940.0, "palimpsest/IR940", "940 nm infrared"),
        Band("R650", 650.0, "palimpsest/R650", "650 nm red"),
        Band("UV365", 365.0, "palimpsest/UV365", "ultraviolet"),
    )
    composites = (
        Composite("truecolor", "True colour (R650, G550, B450)", "palimpsest/truecolor"),
        Composite("falsecolor", "False colour (IR940, R650, UV365)", "palimpsest/falsecolor"),
    )
    meta = {"title": "A palimpsest", "institution": "Example Library", "date": "c. 1200"}
    return [
        CatalogueObject(
            id="plain",
            label="A plain image",
            kind="image",
            metadata={
                "title": "A plain image",
                "creator": "Someone",
                "institution": "Example Library",
                "description": "A test image.",
            },
            rights="http://creativecommons.org/licenses/by/4.0/",
            image="plain",
            width=300,
            height=200,
            updated="2026-01-01T00:00:00Z",
        ),
        CatalogueObject(
            id="palimpsest",
            label="A palimpsest",
            kind="multispectral",
            metadata=meta,
            rights="http://rightsstatements.org/vocab/InC/1.0/",
            image="palimpsest/truecolor",
            width=120,
            height=160,
            bands=bands,
            composites=composites,
            updated="2026-01-01T00:00:00Z",
        ),
        CatalogueObject(
            id="tone",
            label="A tone",
            kind="audio",
            metadata={"project": "Sound archive"},
            media="av/tone.wav",
            updated="2026-01-01T00:00:00Z",
        ),
    ]


def auth(token: str = "tok-alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
