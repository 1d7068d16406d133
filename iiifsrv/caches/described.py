"""Source descriptions (a file's levels, tiling and raw-tile index) as bytes for the shared
cache, so a replica does not parse the same TIFF structure again.

Imports the standard library, iiifsrv.iiif.model and iiifsrv.sources.describe (the values).
Only plain file descriptions are encoded; composites and computed images are rebuilt from
their parts' descriptions.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from iiifsrv.iiif.model import Level, SourceInfo
from iiifsrv.sources.describe import LevelAccess, Source

FORMAT = 1


def encode(source: Source) -> bytes:
    """Everything of ``source`` but where the file is (the reader knows that itself)."""
    info = source.info
    doc = {
        "format": FORMAT,
        "loader": source.loader,
        "info": {
            "kind": info.kind,
            "width": info.width,
            "height": info.height,
            "bands": info.bands,
            "bits": info.bits,
            "levels": [
                [lv.width, lv.height, lv.tile_width, lv.tile_height, lv.raw_jpeg]
                for lv in info.levels
            ],
        },
        "access": [
            {
                "options": a.options,
                "offsets": list(a.offsets),
                "counts": list(a.counts),
                "across": a.tiles_across,
                "jpeg": base64.b64encode(a.jpeg_header).decode("ascii"),
            }
            for a in source.access
        ],
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)


def decode(data: bytes, path: str, mtime_ns: int, size: int, inode: int) -> Source | None:
    """The description stored by ``encode``, for the file at ``path``; None when the bytes are
    not one (another format version, damage): the caller describes the file itself."""
    try:
        doc: dict[str, Any] = json.loads(zlib.decompress(data))
        if doc.get("format") != FORMAT:
            return None
        raw = doc["info"]
        info = SourceInfo(
            kind=str(raw["kind"]),
            width=int(raw["width"]),
            height=int(raw["height"]),
            levels=tuple(
                Level(int(w), int(h), int(tw), int(th), bool(rj))
                for w, h, tw, th, rj in raw["levels"]
            ),
            bands=int(raw["bands"]),
            bits=int(raw["bits"]),
        )
        access = tuple(
            LevelAccess(
                dict(a["options"]),
                tuple(int(o) for o in a["offsets"]),
                tuple(int(c) for c in a["counts"]),
                int(a["across"]),
                base64.b64decode(a["jpeg"]),
            )
            for a in doc["access"]
        )
        if len(access) != len(info.levels) or not info.levels:
            return None
        return Source(path, mtime_ns, size, inode, str(doc["loader"]), info, access)
    except (ValueError, KeyError, TypeError, zlib.error):
        return None
