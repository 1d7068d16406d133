"""The spectral service's work: mean band values around a point, and the plot of that spectrum.

Blocking, CPU-bound (the web layer calls ``sample`` and ``png`` in threads); imports pyvips,
numpy, imaging (level loading) and sources.describe. The SVG is written by hand; PNG is libvips'
rendering of the same SVG.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pyvips

from iiifsrv.imaging import load_level
from iiifsrv.sources.describe import Source

MAX_RADIUS = 50


@dataclass(frozen=True)
class BandValue:
    name: str
    label: str
    wavelength_nm: float | None
    image: str
    mean: float
    bits: int


def window(x: int, y: int, radius: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, width, height) square of side 2r+1 around (x, y), clipped to the image."""
    left, top = max(0, x - radius), max(0, y - radius)
    right, bottom = min(width, x + radius + 1), min(height, y + radius + 1)
    return left, top, right - left, bottom - top


def mean_at(source: Source, x: int, y: int, radius: int) -> float:
    """The mean of the first channel over the window, read at full resolution."""
    left, top, w, h = window(x, y, radius, source.info.width, source.info.height)
    # Only the window is read (a source in object storage fetches just the tiles under it).
    image = load_level(source, 0, (left, top, left + w, top + h))
    box = (left, top, w, h)
    pixels = np.asarray(image.crop(*box).extract_band(0).numpy(), dtype=np.float64)
    return float(pixels.mean())


def sample(sources: list[Source], x: int, y: int, radius: int) -> list[float]:
    return [mean_at(source, x, y, radius) for source in sources]


# -- plot ------------------------------------------------------------------------------------

W, H = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 50, 70


def _colour(nm: float | None) -> str:
    """A display colour for a wavelength: violet for UV, the spectrum, dark red for infrared."""
    if nm is None:
        return "#444444"
    if nm < 400:
        return "#7a3fbf"
    if nm > 700:
        return "#8b1a1a"
    stops = [(400, (110, 0, 200)), (460, (0, 70, 255)), (520, (0, 170, 60)),
             (580, (220, 200, 0)), (620, (255, 120, 0)), (700, (200, 0, 0))]  # fmt: skip
    for (n0, c0), (n1, c1) in zip(stops, stops[1:], strict=False):
        if n0 <= nm <= n1:
            t = (nm - n0) / (n1 - n0)
            r, g, b = (round(a + (b - a) * t) for a, b in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#444444"


def svg(title: str, values: list[BandValue]) -> str:
    """A line plot of mean value against wavelength (or band order when wavelengths are unknown)."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    by_nm = all(v.wavelength_nm is not None for v in values)
    xs = [float(v.wavelength_nm or 0) if by_nm else float(i) for i, v in enumerate(values)]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    top = float((1 << max(v.bits for v in values)) - 1) if values else 255.0

    def px(xv: float) -> float:
        return LEFT + (xv - lo) / (hi - lo) * pw

    def py(yv: float) -> float:
        return TOP + ph - (yv / top) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
        f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">'
        f"{html.escape(title)}</text>",
    ]
    for i in range(6):  # horizontal grid and value ticks
        yv = top * i / 5
        y = py(yv)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e0e0e0"/>'
        )
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{yv:.0f}</text>')
    out.append(
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#000"/>'
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}" stroke="#000"/>'
    )
    points = " ".join(f"{px(xv):.1f},{py(v.mean):.1f}" for xv, v in zip(xs, values, strict=True))
    out.append(f'<polyline points="{points}" fill="none" stroke="#333" stroke-width="2"/>')
    for xv, v in zip(xs, values, strict=True):
        x, y = px(xv), py(v.mean)
        colour = _colour(v.wavelength_nm)
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" stroke="#000">'
            f"<title>{html.escape(v.label)}: {v.mean:.1f}</title></circle>"
        )
        out.append(
            f'<text x="{x:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{html.escape(v.name)}'
            "</text>"
        )
    axis = "wavelength (nm)" if by_nm else "band"
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 20}" text-anchor="middle">{axis}</text>'
        f'<text x="18" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + ph / 2})">mean value (0-{top:.0f})</text>'
    )
    if by_nm and values:
        first, last = values[0].wavelength_nm or 0, values[-1].wavelength_nm or 0
        out.append(
            f'<text x="{LEFT}" y="{H - 36}" fill="#666">{first:g} nm</text>'
            f'<text x="{W - RIGHT}" y="{H - 36}" fill="#666" text-anchor="end">{last:g} nm</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def png(svg_text: str) -> bytes:
    image = pyvips.Image.svgload_buffer(svg_text.encode("utf-8"))
    return bytes(image.pngsave_buffer(compression=6))
