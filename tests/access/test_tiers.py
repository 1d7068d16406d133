"""The degraded tier's pure helpers: the scale limit and the small version's info.json."""

from __future__ import annotations

import pytest

from iiifsrv.access.tiers import LEVEL0_2, scale, small_info, too_sharp

FULL = (2000, 1500)


@pytest.mark.parametrize(
    ("region", "output", "sharper"),
    [
        ((2000, 1500), (256, 192), False),  # the small version itself
        ((2000, 1500), (250, 187), False),  # a stored level below it
        ((2000, 1500), (257, 193), True),  # one pixel more
        ((1000, 750), (128, 96), False),  # a quarter at the small scale
        ((1000, 750), (129, 97), True),
        ((256, 256), (256, 256), True),  # a full-resolution crop
        ((7, 7), (1, 1), False),  # rounding up per side
        ((7, 7), (2, 2), True),
    ],
)
def test_too_sharp(region: tuple[int, int], output: tuple[int, int], sharper: bool) -> None:
    assert too_sharp(256, FULL, region, output) is sharper


def test_scale_never_enlarges() -> None:
    assert scale(256, 2000, 1500) == 0.128
    assert scale(4000, 2000, 1500) == 1.0


def test_small_info_3_and_2() -> None:
    v3 = {"profile": "level2", "tiles": [{}], "extraFeatures": ["sizeByWh"], "sizes": [{}]}
    assert small_info(v3) == {"profile": "level0", "sizes": [{}]}
    v2 = {"profile": ["http://iiif.io/api/image/2/level2.json", {"supports": [], "formats": []}]}
    v2["tiles"] = [{}]
    assert small_info(v2) == {"profile": [LEVEL0_2, {"formats": []}]}
