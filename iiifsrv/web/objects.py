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

from iiifsrv.catalogue import CatalogueObject
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import NotFound
from iiifsrv.service import ImageService
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


def routes(service: ImageService) -> list[BaseRoute]:
    def _all() -> list[CatalogueObject]:
        catalogue = service.catalogue()
        return catalogue.list() if catalogue is not None else []

    async def index(request: Request) -> Response:
        base = base_url(request.scope, service.settings.public_url)
        objects = await anyio.to_thread.run_sync(_all)
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
        return JSONResponse({"objects": items, "total": len(items)}, headers=CORS_HEADERS)

    async def show(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        obj = await service.catalogue_object(object_id)
        if obj is None:
            raise NotFound(f"no object {object_id!r} in the catalogue")
        base = base_url(request.scope, service.settings.public_url)
        return JSONResponse(document(obj, base), headers=CORS_HEADERS)

    return [
        Route("/objects", index, methods=["GET", "HEAD"]),
        Route("/objects/{object_id}", show, methods=["GET", "HEAD"]),
    ]
