"""The catalogue's values: objects (images, multispectral sets, audio, video), their bands and
composites, and the fitted transforms of their computed images (PCA basis, value ranges).

PURE values; imports only the standard library. Stored as JSON by the catalogue backends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Band:
    name: str
    wavelength_nm: float | None
    image: str
    label: str


@dataclass(frozen=True)
class Composite:
    name: str
    label: str
    image: str


@dataclass(frozen=True)
class Transform:
    """How a computed image's pixels follow from its bands' (README: "Computed images of ...").

    For each output channel c a float64 value v_c is computed from the band values x (as read,
    8 or 16 bit): ``pca``: v_c = sum_i vectors[c][i] * (x_i - means[i]) over ``bands`` in order;
    ``ratio``: (A + 1) / (B + 1); ``difference``: A - B; ``stretch``: A. It is shown as
    ``clip(rint((v_c - low[c]) * (255 / (high[c] - low[c]))), 0, 255)``. Fitted once per object
    version on ``level`` (the width, height of the pyramid level measured).
    """

    op: str  # "pca" | "ratio" | "difference" | "stretch"
    bands: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    level: tuple[int, int] = (0, 0)
    means: tuple[float, ...] = ()
    vectors: tuple[tuple[float, ...], ...] = ()
    sigma: tuple[float, ...] = ()  # pca: the standard deviation of each component

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Transform:
        return cls(
            op=str(doc["op"]),
            bands=tuple(doc["bands"]),
            low=tuple(float(v) for v in doc["low"]),
            high=tuple(float(v) for v in doc["high"]),
            level=(int(doc["level"][0]), int(doc["level"][1])),
            means=tuple(float(v) for v in doc.get("means", ())),
            vectors=tuple(tuple(float(v) for v in row) for row in doc.get("vectors", ())),
            sigma=tuple(float(v) for v in doc.get("sigma", ())),
        )


@dataclass(frozen=True)
class CatalogueObject:
    id: str
    label: str
    kind: str  # "image" | "multispectral" | "audio" | "video"
    metadata: dict[str, str] = field(default_factory=dict)
    rights: str = ""
    source: str = ""
    image: str = ""
    width: int = 0
    height: int = 0
    bands: tuple[Band, ...] = ()
    composites: tuple[Composite, ...] = ()
    media: str = ""
    duration: float | None = None
    content_hash: str = ""
    updated: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CatalogueObject:
        doc = dict(doc)
        doc["bands"] = tuple(Band(**b) for b in doc.get("bands", ()))
        doc["composites"] = tuple(Composite(**c) for c in doc.get("composites", ()))
        doc["metadata"] = dict(doc.get("metadata", {}))
        return cls(**doc)

    def featured_ratio(self) -> tuple[str, str] | None:
        """The band ratio a manifest offers: longest / shortest wavelength (e.g. IR940/UV365),
        the two ends of the captured spectrum; without wavelengths, last / first band."""
        if len(self.bands) < 2:
            return None
        known = [b for b in self.bands if b.wavelength_nm is not None]
        if len(known) >= 2:
            longest = max(known, key=lambda b: b.wavelength_nm or 0.0)
            shortest = min(known, key=lambda b: b.wavelength_nm or 0.0)
            if longest.name != shortest.name:
                return longest.name, shortest.name
        return self.bands[-1].name, self.bands[0].name

    @property
    def version(self) -> str:
        """Changes whenever the object's pixels may have: what fitted transforms are keyed by."""
        return self.content_hash or self.updated


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
