"""The spectral service: GET /spectra/{object}?x=&y=[&radius=][&format=json|svg|png].

HTTP layer; imports Starlette, errors, service and spectra (blocking work run in threads).
Values are the mean of each band over a (2r+1)² window at full-resolution coordinates.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iiifsrv import spectra
from iiifsrv.access.rules import Resource
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import BadRequest, NotFound
from iiifsrv.service import ImageService
from iiifsrv.web.auth import Access, protect
from iiifsrv.web.respond import base_url

# The profile of the service entry in info.json: this server's spectral service, version 1,
# documented in docs/ingest.md ("Spectral service").
SPECTRA_PROFILE = "https://iiifsrv.example/api/spectra/1"


def spectra_service(base: str, object_id: str, version: int) -> dict[str, Any]:
    """The info.json ``service`` entry linking a band or composite to its object's spectra."""
    url = f"{base}/spectra/{quote(object_id, safe='')}"
    if version >= 3:
        return {
            "id": url,
            "type": "Service",
            "profile": SPECTRA_PROFILE,
            "label": {"en": ["Spectral values at a point (?x=&y=[&radius=][&format=svg|png])"]},
        }
    return {"@id": url, "profile": SPECTRA_PROFILE, "label": "Spectral values at a point"}


def _int(request: Request, name: str, default: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        if default is None:
            raise BadRequest(f"missing query parameter {name!r} (an integer pixel coordinate)")
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, not {text!r}") from None


def routes(service: ImageService, access: Access | None = None) -> list[BaseRoute]:
    async def spectrum(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        obj = await service.catalogue_object(object_id)
        if obj is None:
            raise NotFound(f"no object {object_id!r} in the catalogue")
        # Band values are full-resolution data: a degraded decision refuses them too.
        resource = Resource(obj.image or obj.id, obj.id, tuple(b.image for b in obj.bands))
        decision = access.require(request.scope, resource) if access else None
        if not obj.bands:
            raise NotFound(f"object {object_id!r} has no spectral bands")
        x, y = _int(request, "x"), _int(request, "y")
        radius = _int(request, "radius", 0)
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "svg", "png"):
            raise BadRequest(f"format must be json, svg or png, not {fmt!r}")
        if not 0 <= radius <= spectra.MAX_RADIUS:
            raise BadRequest(f"radius must be between 0 and {spectra.MAX_RADIUS}")
        if not (0 <= x < obj.width and 0 <= y < obj.height):
            raise BadRequest(
                f"point ({x}, {y}) lies outside the image ({obj.width}x{obj.height} pixels)"
            )
        sources = [await service.source(band.image) for band in obj.bands]
        means = await anyio.to_thread.run_sync(
            spectra.sample, sources, x, y, radius, limiter=service.limiter
        )
        values = [
            spectra.BandValue(b.name, b.label, b.wavelength_nm, b.image, mean, s.info.bits)
            for b, s, mean in zip(obj.bands, sources, means, strict=True)
        ]
        headers = {**CORS_HEADERS, "Cache-Control": service.settings.cache_control}
        if decision is not None:
            protect(decision, headers)
        if fmt == "json":
            base = base_url(request.scope, service.settings.public_url)
            doc = {
                "id": f"{base}/spectra/{quote(obj.id, safe='')}?x={x}&y={y}&radius={radius}",
                "profile": SPECTRA_PROFILE,
                "object": obj.id,
                "label": obj.label,
                "x": x,
                "y": y,
                "radius": radius,
                "window": dict(
                    zip(
                        ("x", "y", "w", "h"),
                        spectra.window(x, y, radius, obj.width, obj.height),
                        strict=True,
                    )
                ),
                "bands": [
                    {
                        "name": v.name,
                        "label": v.label,
                        "wavelength_nm": v.wavelength_nm,
                        "image": v.image,
                        "mean": round(v.mean, 4),
                        "max": (1 << v.bits) - 1,
                    }
                    for v in values
                ],
            }
            return JSONResponse(doc, headers=headers)
        title = f"Spectrum of {obj.id} at ({x}, {y})" + (f" ±{radius} px" if radius else "")
        text = spectra.svg(title, values)
        if fmt == "svg":
            return Response(text, media_type="image/svg+xml", headers=headers)
        body = await anyio.to_thread.run_sync(spectra.png, text, limiter=service.limiter)
        return Response(body, media_type="image/png", headers=headers)

    return [Route("/spectra/{object_id}", spectrum, methods=["GET", "HEAD"])]
