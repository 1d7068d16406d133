"""Where annotation resources live: canvas/manifest ↔ container URL, viewer pages, search services.

PURE: standard library only. The manifest builder calls these to reference the store.
"""

from __future__ import annotations

import base64
import binascii

PREFIX = "/annotations"
ANNOTOT_PREFIX = "/annotot"
SAS_PREFIX = "/sas"

SEARCH2_CONTEXT = "http://iiif.io/api/search/2/context.json"


def encode_uri(uri: str) -> str:
    """A canvas or manifest URI as one URL-safe path segment (base64url, no padding)."""
    return base64.urlsafe_b64encode(uri.encode("utf-8")).decode("ascii").rstrip("=")


def decode_uri(segment: str) -> str | None:
    """The URI a path segment names, or None when it is not a segment made by encode_uri."""
    if not segment or any(c not in _B64URL for c in segment):
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        uri = raw.decode("utf-8")
        return None if any(ord(c) < 32 for c in uri) else uri
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def canvas_container_path(canvas_id: str) -> str:
    """Path (from the server root) of the W3C container of a canvas; ends in "/"."""
    return f"{PREFIX}/canvas/{encode_uri(canvas_id)}/"


def manifest_container_path(manifest_id: str) -> str:
    """Path of the W3C container of a manifest (all annotations on its canvases); ends in "/"."""
    return f"{PREFIX}/manifest/{encode_uri(manifest_id)}/"


def canvas_container_url(base_url: str, canvas_id: str) -> str:
    return base_url.rstrip("/") + canvas_container_path(canvas_id)


def manifest_container_url(base_url: str, manifest_id: str) -> str:
    return base_url.rstrip("/") + manifest_container_path(manifest_id)


def annotation_url(base_url: str, canvas_id: str, key: str) -> str:
    """The IRI of one annotation: inside its canvas's container."""
    return canvas_container_url(base_url, canvas_id) + key


def canvas_page_url(base_url: str, canvas_id: str) -> str:
    """Stable URL of the unpaged AnnotationPage of a canvas (what viewers read)."""
    return canvas_container_url(base_url, canvas_id) + "page"


def annotation_page_ref(base_url: str, canvas_id: str) -> dict[str, str]:
    """Reference for a manifest canvas's ``annotations``: id and type, deliberately no items."""
    return {"id": canvas_page_url(base_url, canvas_id), "type": "AnnotationPage"}


def search_url(base_url: str, manifest_id: str, version: int) -> str:
    return f"{base_url.rstrip('/')}{PREFIX}/search/{version}/{encode_uri(manifest_id)}"


def search_services(base_url: str, manifest_id: str) -> list[dict[str, object]]:
    """The Content Search 2.0 and 1.0 services (with autocomplete) to declare on a manifest."""
    s2 = search_url(base_url, manifest_id, 2)
    s1 = search_url(base_url, manifest_id, 1)
    return [
        {
            "id": s2,
            "type": "SearchService2",
            "service": [{"id": s2 + "/autocomplete", "type": "AutoCompleteService2"}],
        },
        {
            "@id": s1,
            "@type": "SearchService1",
            "profile": "http://iiif.io/api/search/1/search",
            # An array, as Presentation 3 requires of every `service` (manifesto reads both).
            "service": [
                {
                    "@id": s1 + "/autocomplete",
                    "@type": "AutoCompleteService1",
                    "profile": "http://iiif.io/api/search/1/autocomplete",
                }
            ],
        },
    ]
