"""Read-only JSON view of the catalogue: GET /objects and GET /objects/{id}.

HTTP layer; imports Starlette, errors, catalogue (blocking, called in threads) and service.
Each object carries links to the IIIF info.json of its image, bands and composites.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iiifsrv.access.rules import DENY, Resource
from iiifsrv.catalogue import CatalogueObject
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import NotFound
from iiifsrv.service import ImageService
from iiifsrv.web.auth import Access, protect
from iiifsrv.web.respond import base_url


def _info(base: str, image: str) -> str:
    return f"{base}/iiif/3/{quote(image, safe='')}/info.json" if image else ""


def document(obj: CatalogueObject, base: str) -> dict[str, Any]:
    doc = obj.to_json()
    # The master's location on disk is not public: its file name only.
    if doc.get("source"):
        doc["source"] = os.path.basename(str(doc["source"]).rstrip("/"))
    doc["info"] = _info(base, obj.image)
    for item in doc["bands"] + doc["composites"]:
        item["info"] = _info(base, item["image"])
    if obj.bands:
        doc["spectra"] = f"{base}/spectra/{quote(obj.id, safe='')}"
    return doc


def resource_of(obj: CatalogueObject) -> Resource:
    """A catalogue object as an access-control resource: its image and every band."""
    return Resource(obj.image or obj.id, obj.id, tuple(b.image for b in obj.bands))


def routes(service: ImageService, access: Access | None = None) -> list[BaseRoute]:
    def _all() -> list[CatalogueObject]:
        catalogue = service.catalogue()
        return catalogue.list() if catalogue is not None else []

    async def index(request: Request) -> Response:
        base = base_url(request.scope, service.settings.public_url)
        objects = await anyio.to_thread.run_sync(_all)
        headers = dict(CORS_HEADERS)
        if access is not None:  # restricted objects are listed only to those who may see them
            decisions = access.visible(request.scope, [resource_of(o) for o in objects])
            objects = [o for o, d in zip(objects, decisions, strict=True) if d.kind != DENY]
            for d in decisions:
                protect(d, headers)
        items = [
            {
                "id": o.id,
                "label": o.label,
                "kind": o.kind,
                "width": o.width,
                "height": o.height,
                "bands": len(o.bands),
                "info": _info(base, o.image),
                "href": f"{base}/objects/{quote(o.id, safe='')}",
            }
            for o in objects
        ]
        return JSONResponse({"objects": items, "total": len(items)}, headers=headers)

    async def show(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        obj = await service.catalogue_object(object_id)
        headers = dict(CORS_HEADERS)
        if obj is not None and access is not None:
            decision = access.visible(request.scope, [resource_of(obj)])[0]
            if decision.kind == DENY:  # not told apart from a missing object
                obj = None
            protect(decision, headers)
        if obj is None:
            raise NotFound(f"no object {object_id!r} in the catalogue")
        base = base_url(request.scope, service.settings.public_url)
        return JSONResponse(document(obj, base), headers=headers)

    return [
        Route("/objects", index, methods=["GET", "HEAD"]),
        Route("/objects/{object_id}", show, methods=["GET", "HEAD"]),
    ]
