"""Band arithmetic of computed images: fit a transform (PCA basis, value range) on one pyramid
level, and apply it to pixel arrays, the same way for every tile.

Blocking, CPU-bound; imports numpy and the catalogue's Transform only (no I/O, no pyvips).
Every operation is element-wise in float64 in a fixed order, so a pixel's value does not depend on
the region it is computed in: neighbouring tiles meet without a seam.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from iiifsrv.catalogue import Transform

# Transforms are fitted on the largest pyramid level with at most this many pixels (else on the
# smallest level): about a megapixel, enough for stable statistics, cheap to read.
FIT_MAX_PIXELS = 1 << 20
PERCENTILES = (1.0, 99.0)  # ratio and stretch: this range of values is shown as 0-255
K_SIGMA = 2.5  # pca: component c shows -K·σ_c .. +K·σ_c as 0-255

Array = npt.NDArray[np.float64]


def fit_level(sizes: Sequence[tuple[int, int]]) -> int:
    """The index of the level to fit on: the largest with at most FIT_MAX_PIXELS pixels."""
    for index, (width, height) in enumerate(sizes):
        if width * height <= FIT_MAX_PIXELS:
            return index
    return len(sizes) - 1


def _floats(arrays: Sequence[npt.NDArray[np.generic]]) -> list[Array]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def raw_values(
    transform: Transform, arrays: Sequence[npt.NDArray[np.generic]], channel: int
) -> Array:
    """The float64 value v of output ``channel`` (README: "Computed images of ...")."""
    x = _floats(arrays)
    op = transform.op
    if op == "pca":
        vector = transform.vectors[channel]
        out = vector[0] * (x[0] - transform.means[0])
        for i in range(1, len(x)):
            out = out + vector[i] * (x[i] - transform.means[i])
        return out
    if op == "ratio":
        return (x[0] + 1.0) / (x[1] + 1.0)
    if op == "difference":
        return x[0] - x[1]
    if op == "stretch":
        return x[0]
    raise ValueError(f"unknown operation {op!r}")


def quantise(values: Array, low: float, high: float) -> npt.NDArray[np.uint8]:
    """``clip(rint((v - low) * (255 / (high - low))), 0, 255)`` as 8-bit values."""
    scaled = np.rint((values - low) * (255.0 / (high - low)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def apply(
    transform: Transform, arrays: Sequence[npt.NDArray[np.generic]], channels: Sequence[int]
) -> npt.NDArray[np.uint8]:
    """The 8-bit image of ``channels``: H×W for one channel, H×W×n for several."""
    planes = [
        quantise(raw_values(transform, arrays, c), transform.low[c], transform.high[c])
        for c in channels
    ]
    if len(planes) == 1:
        return np.ascontiguousarray(planes[0])
    return np.ascontiguousarray(np.stack(planes, axis=-1))


def _range(low: float, high: float, minimum: float) -> tuple[float, float]:
    return low, max(high, low + minimum)


def fit(
    op: str,
    bands: Sequence[str],
    arrays: Sequence[npt.NDArray[np.generic]],
    level: tuple[int, int],
) -> Transform:
    """The transform of ``op`` over ``bands`` (their pixels at one level, in that order)."""
    names = tuple(bands)
    if op == "pca":
        return _fit_pca(names, _floats(arrays), level)
    probe = Transform(op, names, (0.0,), (1.0,), level)
    values = raw_values(probe, arrays, 0).ravel()
    p_low, p_high = (float(v) for v in np.percentile(values, PERCENTILES))
    if op == "difference":
        extent = max(abs(p_low), abs(p_high), 1.0)  # symmetric: no difference is mid-grey
        low, high = -extent, extent
    elif op == "ratio":
        low, high = _range(p_low, p_high, 1e-3)
    else:
        low, high = _range(p_low, p_high, 1.0)
    return Transform(op, names, (low,), (high,), level)


def _fit_pca(names: tuple[str, ...], x: list[Array], level: tuple[int, int]) -> Transform:
    """Principal components of the bands' covariance (raw values, not standardised).

    Components are ordered by decreasing variance; each eigenvector's sign makes the sum of its
    elements positive (else its largest element), so component 1 is bright where the bands are.
    """
    data = np.stack([a.ravel() for a in x])
    means = data.mean(axis=1)
    cov = np.atleast_2d(np.cov(data))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    vectors = []
    sigma = []
    for index in order:
        vector = eigenvectors[:, index]
        total = float(vector.sum())
        if abs(total) < 1e-9:
            total = float(vector[np.argmax(np.abs(vector))])
        if total < 0:
            vector = -vector
        vectors.append(tuple(float(v) for v in vector))
        sigma.append(float(np.sqrt(max(float(eigenvalues[index]), 0.0))))
    low = tuple(-K_SIGMA * s if s > 1e-9 else -1.0 for s in sigma)
    high = tuple(K_SIGMA * s if s > 1e-9 else 1.0 for s in sigma)
    return Transform(
        "pca",
        names,
        low,
        high,
        level,
        means=tuple(float(m) for m in means),
        vectors=tuple(vectors),
        sigma=tuple(sigma),
    )
