"""The degraded tier: no view sharper than the small version, and its info.json. PURE: stdlib.

A degraded rule gives the public the image at ``max_size`` pixels on its long side. Limiting
only the output size would not do that: a 256-pixel crop of a 256-pixel region is full
resolution, and enough such crops are the whole image. So the limit is on the scale: an
output may have at most the pixels the same region has in the small version.
"""

from __future__ import annotations

import math
from typing import Any


def scale(max_size: int, width: int, height: int) -> float:
    """The small version's scale: its long side is ``max_size`` (never enlarged)."""
    return min(1.0, max_size / max(width, height, 1))


def too_sharp(
    max_size: int,
    full: tuple[int, int],
    region: tuple[int, int],
    output: tuple[int, int],
) -> bool:
    """Whether ``output`` pixels of a ``region`` (in full-resolution pixels) show more detail
    than the small version of a ``full``-sized image has there (rounded up, per side)."""
    k = scale(max_size, *full)
    return output[0] > math.ceil(region[0] * k) or output[1] > math.ceil(region[1] * k)


LEVEL0_2 = "http://iiif.io/api/image/2/level0.json"


def small_info(doc: dict[str, Any]) -> dict[str, Any]:
    """The info.json of the small version: level 0 with its ``sizes`` only (no tiles, no size
    features), so viewers show those sizes (OpenSeadragon builds its pyramid from them) and
    never ask for crops sharper than the small version. Image API 3.0 and 2.1 documents."""
    doc.pop("tiles", None)
    if isinstance(doc.get("profile"), list):  # 2.1: [compliance URI, {formats, qualities, …}]
        extra = {k: v for k, v in doc["profile"][1].items() if k != "supports"}
        doc["profile"] = [LEVEL0_2, extra]
    else:
        doc["profile"] = "level0"
        doc.pop("extraFeatures", None)
    return doc
