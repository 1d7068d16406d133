"""Durable file writes: fsync a file's bytes and its folder, so a rename survives a crash.

Imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_synced(path: Path, body: bytes) -> None:
    """Write ``body`` to ``path`` and fsync it (callers rename it into place afterwards)."""
    with open(path, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
