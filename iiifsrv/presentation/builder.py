"""Manifest builder: catalogue objects → IIIF Presentation 3 Manifest documents (iiif-prezi3).

PURE: no I/O. Imports iiif_prezi3's models (never its network helpers), the catalogue's data
classes and iiifsrv.media's extension→type table. Every id is made from the ``base`` given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import iiif_prezi3 as p3

from iiifsrv.catalogue import CatalogueObject
from iiifsrv.media import media_type

CONTEXT = "http://iiif.io/api/presentation/3/context.json"
IMAGE2_PROFILE = "http://iiif.io/api/image/2/level2.json"
THUMBNAIL_BOX = 200
LANG = "en"
_RIGHTS = re.compile(
    r"^http://(creativecommons\.org/(licenses|publicdomain)/|rightsstatements\.org/vocab/)"
)
METADATA_LABELS = {
    "title": "Title",
    "creator": "Creator",
    "date": "Date",
    "institution": "Institution",
    "project": "Project",
    "description": "Description",
}

AnnotationPageRef = Callable[[str, str], "dict[str, Any] | None"]
SearchServices = Callable[[str, str], "list[dict[str, Any]]"]
# (base, object id) -> extra canvas properties, e.g. OCR files as seeAlso / rendering.
CanvasLinks = Callable[[str, str], "dict[str, Any]"]


@dataclass(frozen=True)
class Hooks:
    """Plug-ins from the annotation store: a canvas's AnnotationPage reference (``{"id", "type":
    "AnnotationPage"}``, no items) and the search services of a manifest. Both get the base URL
    and the canvas or manifest id; they must be cheap, pure and deterministic."""

    annotation_page_ref: AnnotationPageRef | None = None
    search_services: SearchServices | None = None
    # Names what else the search hook declares (e.g. "semantic"), so switching it rebuilds.
    search_variant: str = ""
    canvas_links: CanvasLinks | None = None

    @property
    def signature(self) -> str:
        """Changes when a hook is plugged in or removed, or what hooks make changes (``ids``:
        containers encode a canvas's path), so stored manifests are rebuilt."""
        anno = self.annotation_page_ref is not None
        variant = f",{self.search_variant}" if self.search_variant else ""
        links = ",links" if self.canvas_links is not None else ""
        search = self.search_services is not None
        return f"anno={anno},search={search}{variant},ids=path{links}"


def lang(text: str, language: str = LANG) -> dict[str, list[str]]:
    return {language: [text]}


def slug(text: str) -> str:
    """A URL-safe lower-case name: "British Library" → "british-library"."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "unnamed"


def manifest_url(base: str, manifest_id: str) -> str:
    return f"{base}/iiif/manifests/{quote(manifest_id, safe='')}"


def image_service_url(base: str, identifier: str, version: int = 3) -> str:
    return f"{base}/iiif/{version}/{quote(identifier, safe='')}"


def media_url(base: str, path: str) -> str:
    return f"{base}/media/{quote(path, safe='/')}"


def poster_url(base: str, path: str) -> str:
    return f"{media_url(base, path)}/poster.jpg"


def thumbnail_size(width: int, height: int, box: int = THUMBNAIL_BOX) -> tuple[int, int, str]:
    """The largest size fitting ``box`` without upscaling, as (w, h, Image API size parameter).

    Uses ``w,`` (or ``,h`` for portrait images): a 3.0 server refuses ``!w,h`` that would upscale.
    """
    if width <= 0 or height <= 0:
        return box, box, f"{box},"
    if width >= height:
        w = min(box, width)
        h = max(1, round(height * w / width))
        return w, h, f"{w},"
    h = min(box, height)
    w = max(1, round(width * h / height))
    return w, h, f",{h}"


def image_services(base: str, identifier: str) -> list[Any]:
    """ImageService3 first (what Presentation 3 viewers look for), then ImageService2."""
    return [
        p3.ServiceV3(
            id=image_service_url(base, identifier, 3), type="ImageService3", profile="level2"
        ),
        p3.ServiceV2(
            id=image_service_url(base, identifier, 2), type="ImageService2", profile=IMAGE2_PROFILE
        ),
    ]


def thumbnail(base: str, identifier: str, width: int, height: int) -> p3.AnnotationBody:
    w, h, size = thumbnail_size(width, height)
    return p3.AnnotationBody(
        id=f"{image_service_url(base, identifier)}/full/{size}/0/default.jpg",
        type="Image",
        format="image/jpeg",
        width=w,
        height=h,
        service=[
            p3.ServiceV3(
                id=image_service_url(base, identifier, 3), type="ImageService3", profile="level2"
            )
        ],
    )


def image_body(
    base: str, identifier: str, width: int, height: int, label: str | None = None
) -> p3.AnnotationBody:
    fields: dict[str, Any] = {}
    if label:
        fields["label"] = lang(label)
        fields["thumbnail"] = [thumbnail(base, identifier, width, height)]
    return p3.AnnotationBody(
        id=f"{image_service_url(base, identifier)}/full/max/0/default.jpg",
        type="Image",
        format="image/jpeg",
        width=width,
        height=height,
        service=image_services(base, identifier),
        **fields,
    )


def band_label(name: str, wavelength_nm: float | None, label: str) -> str:
    """The label of a band names it and its wavelength: "940 nm infrared"."""
    text = label or name
    if wavelength_nm is not None:
        nm = f"{wavelength_nm:g} nm"
        if nm not in text:
            text = f"{nm} {text}" if text else nm
    return text


# The spectral service of a multispectral object, declared on its canvas: the same entry as in
# its images' info.json (web/spectra.py spectra_service; a test keeps the two equal).
SPECTRA_PROFILE = "https://iiifsrv.example/api/spectra/1"
SPECTRA_LABEL = "Spectral values at a point (?x=&y=[&radius=][&format=svg|png])"


def spectra_service(base: str, object_id: str) -> p3.ServiceV3:
    return p3.ServiceV3(
        id=f"{base}/spectra/{quote(object_id, safe='')}",
        type="Service",
        profile=SPECTRA_PROFILE,
        label=lang(SPECTRA_LABEL),
    )


def computed_images(obj: CatalogueObject) -> list[tuple[str, str]]:
    """(identifier, label) of the computed images a manifest offers (README): the first
    three principal components (with three bands or more) and the featured band ratio."""
    out = []
    if len(obj.bands) >= 3:
        out.append((f"{obj.id}/pca", "Principal components 1-3 (PCA)"))
    ratio = obj.featured_ratio()
    if ratio is not None:
        out.append((f"{obj.id}/ratio:{ratio[0]},{ratio[1]}", f"Ratio {ratio[0]} / {ratio[1]}"))
    return out


def multispectral_body(base: str, obj: CatalogueObject) -> p3.Choice:
    """One Choice: the default composite first, the other composites, the computed images (PCA,
    the featured ratio), then every band."""
    composites = sorted(obj.composites, key=lambda c: c.image != obj.image)
    items = [
        image_body(base, c.image, obj.width, obj.height, c.label or c.name) for c in composites
    ]
    if not composites and obj.image:
        items.append(image_body(base, obj.image, obj.width, obj.height, obj.label))
    items += [
        image_body(base, identifier, obj.width, obj.height, label)
        for identifier, label in computed_images(obj)
    ]
    items += [
        image_body(
            base, b.image, obj.width, obj.height, band_label(b.name, b.wavelength_nm, b.label)
        )
        for b in obj.bands
    ]
    return p3.Choice(type="Choice", items=items)


def _painting_page(canvas_id: str, body: Any) -> p3.AnnotationPage:
    annotation = p3.Annotation(
        id=f"{canvas_id}/annotation/painting",
        type="Annotation",
        motivation="painting",
        body=body,
        target=canvas_id,
    )
    return p3.AnnotationPage(
        id=f"{canvas_id}/page/painting", type="AnnotationPage", items=[annotation]
    )


def canvas(base: str, obj: CatalogueObject, canvas_id: str) -> p3.Canvas:
    fields: dict[str, Any] = {"label": lang(obj.label or obj.id)}
    if obj.kind in ("audio", "video"):
        if not obj.media:
            raise ValueError(f"object {obj.id!r} is {obj.kind} but has no media file")
        if not obj.duration or obj.duration <= 0:
            raise ValueError(f"object {obj.id!r} has no duration")
        body_fields: dict[str, Any] = {"duration": obj.duration, "format": media_type(obj.media)}
        fields["duration"] = obj.duration
        if obj.kind == "video":
            if obj.width > 0 and obj.height > 0:
                fields.update(width=obj.width, height=obj.height)
                body_fields.update(width=obj.width, height=obj.height)
            poster = p3.AnnotationBody(
                id=poster_url(base, obj.media), type="Image", format="image/jpeg"
            )
            fields["thumbnail"] = [poster]
            if obj.width > 0 and obj.height > 0:
                placeholder_id = f"{canvas_id}/placeholder"
                fields["placeholderCanvas"] = p3.PlaceholderCanvas(
                    id=placeholder_id,
                    type="Canvas",
                    width=obj.width,
                    height=obj.height,
                    items=[
                        _painting_page(
                            placeholder_id,
                            p3.AnnotationBody(
                                id=poster_url(base, obj.media),
                                type="Image",
                                format="image/jpeg",
                                width=obj.width,
                                height=obj.height,
                            ),
                        )
                    ],
                )
        body: Any = p3.AnnotationBody(
            id=media_url(base, obj.media),
            type="Video" if obj.kind == "video" else "Sound",
            **body_fields,
        )
    else:
        if obj.width <= 0 or obj.height <= 0:
            raise ValueError(f"object {obj.id!r} has no width and height")
        fields.update(width=obj.width, height=obj.height)
        if obj.kind == "multispectral":
            body = multispectral_body(base, obj)
            thumb_image = obj.image or (obj.composites[0].image if obj.composites else "")
            fields["service"] = [spectra_service(base, obj.id)]
        else:
            body = image_body(base, obj.image, obj.width, obj.height)
            thumb_image = obj.image
        if thumb_image:
            fields["thumbnail"] = [thumbnail(base, thumb_image, obj.width, obj.height)]
    return p3.Canvas(id=canvas_id, type="Canvas", items=[_painting_page(canvas_id, body)], **fields)


def describe(objects: Sequence[CatalogueObject]) -> str:
    """A one-line summary when the catalogue has no description: what the object is."""
    if len(objects) > 1:
        return f"{len(objects)} objects"
    obj = objects[0]
    size = f"{obj.width} × {obj.height} px" if obj.width and obj.height else ""
    length = f"{obj.duration:g} s" if obj.duration else ""
    if obj.kind == "multispectral":
        parts = [f"{len(obj.bands)} bands", f"{len(obj.composites)} composites", size]
        return "Multispectral image: " + ", ".join(p for p in parts if p)
    if obj.kind == "audio":
        return "Audio" + (f", {length}" if length else "")
    if obj.kind == "video":
        return "Video" + "".join(f", {p}" for p in (length, size) if p)
    return "Image" + (f", {size}" if size else "")


def _metadata(objects: Sequence[CatalogueObject]) -> list[p3.KeyValueString]:
    if len(objects) != 1:
        return []
    out = []
    for key, value in objects[0].metadata.items():
        if value:
            name = METADATA_LABELS.get(key, key.replace("_", " ").capitalize())
            out.append(p3.KeyValueString(label=lang(name), value=lang(str(value), "none")))
    return out


def build_manifest(
    base: str,
    manifest_id: str,
    objects: Sequence[CatalogueObject],
    *,
    label: str | None = None,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """A Manifest (as a JSON-ready dict) with one canvas per object, in the order given."""
    if not objects:
        raise ValueError("a manifest needs at least one object")
    hooks = hooks or Hooks()
    url = manifest_url(base, manifest_id)
    first = objects[0]
    meta = first.metadata
    institution = meta.get("institution", "")
    fields: dict[str, Any] = {"label": lang(label or first.label or first.id)}
    metadata = _metadata(objects)
    if metadata:
        fields["metadata"] = metadata
    fields["summary"] = lang(
        meta["description"] if meta.get("description") and len(objects) == 1 else describe(objects)
    )
    rights = first.rights if all(o.rights == first.rights for o in objects) else ""
    # Presentation 3 names these licences by their http:// URIs; catalogues often hold https://.
    rights = re.sub(
        r"^https://(creativecommons\.org|rightsstatements\.org)/", r"http://\1/", rights
    )
    if rights and _RIGHTS.match(rights):
        fields["rights"] = rights
    attribution = f"Provided by {institution}" if institution else "Provided by this server"
    if rights:
        attribution += f"; rights: {rights}"
    fields["requiredStatement"] = p3.KeyValueString(
        label=lang("Attribution"), value=lang(attribution)
    )
    if institution:
        provider_id = f"{base}/iiif/collection/institution/{slug(institution)}"
        fields["provider"] = [p3.Provider(id=provider_id, type="Agent", label=lang(institution))]
    else:
        fields["provider"] = [p3.Provider(id=f"{base}/", type="Agent", label=lang("iiifsrv"))]
    canvases = [
        canvas(base, obj, f"{url}/canvas/{index}") for index, obj in enumerate(objects, start=1)
    ]
    thumbs = [t for c in canvases for t in (c.thumbnail or [])]
    if thumbs:
        fields["thumbnail"] = [thumbs[0]]
    manifest = p3.Manifest(id=url, type="Manifest", items=canvases, **fields)
    doc: dict[str, Any] = json.loads(manifest.json())
    if hooks.annotation_page_ref is not None:
        for item in doc["items"]:
            ref = hooks.annotation_page_ref(base, item["id"])
            if ref:
                item["annotations"] = [ref]
    if hooks.canvas_links is not None:
        for obj, item in zip(objects, doc["items"], strict=True):
            item.update(hooks.canvas_links(base, obj.id))
    if hooks.search_services is not None:
        services = hooks.search_services(base, url)
        if services:
            doc["service"] = list(services)
    return doc
