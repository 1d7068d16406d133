"""Encode a libvips image into one of the Image API output formats.

Blocking, CPU-bound; imports pyvips and iiif.model only.
"""

from __future__ import annotations

import pyvips

from iiifsrv.iiif.model import FORMATS


def encode(image: pyvips.Image, fmt: str, jpeg_quality: int = 80) -> bytes:
    if fmt == "jpg":
        if image.bands in (2, 4):
            image = image.flatten(background=[255] * (image.bands - 1))
        data = image.jpegsave_buffer(Q=jpeg_quality, strip=True)
    elif fmt == "png":
        data = image.pngsave_buffer(compression=4, strip=True)
    elif fmt == "webp":
        data = image.webpsave_buffer(Q=jpeg_quality, strip=True)
    elif fmt == "tif":
        data = image.tiffsave_buffer(compression="deflate", strip=True)
    elif fmt == "gif":
        data = image.gifsave_buffer(strip=True)
    elif fmt == "jp2":
        if image.bands in (2, 4):
            image = image.flatten(background=[255] * (image.bands - 1))
        data = image.jp2ksave_buffer(Q=jpeg_quality)
    else:  # the parser admits only FORMATS
        raise ValueError(f"no encoder for {fmt!r}")
    return bytes(data)


def media_type(fmt: str) -> str:
    return FORMATS[fmt]
