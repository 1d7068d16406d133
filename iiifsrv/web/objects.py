"""Read-only JSON view of the catalogue: GET /objects, GET /objects/{id} and
GET /objects/{id}/similar (near-duplicate images by perceptual hash).

HTTP layer; imports Starlette, errors, catalogue and similarity (blocking, called in threads)
and service. Each object carries links to the IIIF info.json of its image, bands and composites.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iiifsrv import similarity
from iiifsrv.access.rules import DENY, Resource
from iiifsrv.catalogue import CatalogueObject
from iiifsrv.catalogue.hashes import ImageHash
from iiifsrv.conditional import CORS_HEADERS
from iiifsrv.errors import BadRequest, NotFound
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

    def _similar(
        object_id: str, threshold: int
    ) -> tuple[ImageHash | None, list[similarity.Match], dict[str, CatalogueObject]]:
        catalogue = service.catalogue()
        stored = similarity.hashes_for(catalogue)
        if stored is None:
            return None, [], {}
        resolver = service.resolver
        mine, matches = similarity.similar(catalogue, stored, object_id, resolver, threshold)
        objects = {m.object_id: catalogue.get(m.object_id) for m in matches}
        return mine, matches, {k: v for k, v in objects.items() if v is not None}

    async def similar(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        raw = request.query_params.get("threshold", str(service.settings.similarity_threshold))
        if not re.fullmatch(r"[0-9]{1,3}", raw) or int(raw) > 2 * similarity.BITS:
            raise BadRequest(f"threshold must be a number of bits from 0 to {2 * similarity.BITS}")
        obj = await service.catalogue_object(object_id)
        headers = dict(CORS_HEADERS)
        if obj is not None and access is not None:
            decision = access.visible(request.scope, [resource_of(obj)])[0]
            if decision.kind == DENY:  # not told apart from a missing object
                obj = None
            protect(decision, headers)
        if obj is None:
            raise NotFound(f"no object {object_id!r} in the catalogue")
        mine, matches, objects = await anyio.to_thread.run_sync(_similar, object_id, int(raw))
        if access is not None:  # restricted objects are listed only to those who may see them
            listed = list(objects.values())
            for o, d in zip(
                listed, access.visible(request.scope, [resource_of(o) for o in listed]), strict=True
            ):
                protect(d, headers)
                if d.kind == DENY:
                    del objects[o.id]
        if mine is None:
            raise NotFound(f"object {object_id!r} has no image to compare")
        base = base_url(request.scope, service.settings.public_url)
        body = {
            "id": object_id,
            "href": f"{base}/objects/{quote(object_id, safe='')}",
            "phash": f"{mine.phash:016x}",
            "dhash": f"{mine.dhash:016x}",
            "threshold": int(raw),
            "similar": [
                {
                    "id": m.object_id,
                    "label": objects[m.object_id].label,
                    "distance": m.distance,
                    "href": f"{base}/objects/{quote(m.object_id, safe='')}",
                    "info": _info(base, objects[m.object_id].image),
                }
                for m in matches
                if m.object_id in objects
            ],
        }
        return JSONResponse(body, headers=headers)

    return [
        Route("/objects", index, methods=["GET", "HEAD"]),
        Route("/objects/{object_id}", show, methods=["GET", "HEAD"]),
        Route("/objects/{object_id}/similar", similar, methods=["GET", "HEAD"]),
    ]
