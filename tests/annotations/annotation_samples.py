"""Sample annotations for the annotation tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from iiifsrv.annotations.urls import canvas_container_path

CANVAS = "http://test/iiif/manifests/psalter/canvas/p1"
CANVAS2 = "http://test/iiif/manifests/psalter/canvas/p2"
MANIFEST = "http://test/iiif/manifests/psalter"
ANNO_TYPE = 'application/ld+json; profile="http://www.w3.org/ns/anno.jsonld"'
SVG = "<svg xmlns='http://www.w3.org/2000/svg'><path d='M10,20 L110,20 L110,70 Z'/></svg>"


def anno(
    text: str = "a word under ultraviolet light",
    canvas: str = CANVAS,
    region: str = "10,20,100,50",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "@context": "http://www.w3.org/ns/anno.jsonld",
        "type": "Annotation",
        "motivation": "commenting",
        "body": {"type": "TextualBody", "value": f"<p>{text}</p>", "format": "text/html"},
        "target": {
            "type": "SpecificResource",
            "source": {
                "id": canvas,
                "type": "Canvas",
                "partOf": [{"id": MANIFEST, "type": "Manifest"}],
            },
            "selector": [
                {"type": "FragmentSelector", "value": f"xywh={region}"},
                {"type": "SvgSelector", "value": SVG},
            ],
        },
        **extra,
    }


def container(canvas: str = CANVAS) -> str:
    """A container path for these synthetic canvases (no manifest to follow), naming the canvas
    by its whole URI: valid whatever base the server has, since the server keys what a segment
    decodes to exactly as it keys a target. tests/test_client_journey.py follows the links."""
    return canvas_container_path(canvas)


def path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


PSALTER: dict[str, Any] = {
    "@context": "http://iiif.io/api/presentation/3/context.json",
    "id": MANIFEST,
    "type": "Manifest",
    "label": {"en": ["Psalter (synthetic canvases)"]},
    "items": [
        {"id": c, "type": "Canvas", "width": 1000, "height": 1500, "items": []}
        for c in (CANVAS, CANVAS2)
    ],
}


async def published_search(client: Any, headers: dict[str, str], version: int = 2) -> str:
    """The Content Search service (1 or 2) of the synthetic canvases' manifest, as a client
    finds it: the manifest is published (PUT, with a write token), then read back."""
    path = urlsplit(MANIFEST).path
    put = await client.put(path, json=PSALTER, headers=headers)
    assert put.status_code in (200, 201), put.text
    served = (await client.get(path)).json()
    kind = f"SearchService{version}"
    found = [s for s in served["service"] if kind in (s.get("type"), s.get("@type"))]
    return str(found[0].get("id", found[0].get("@id")))
