"""Where annotation resources live, and how a canvas is named: canvas/manifest ↔ container URL,
viewer pages, search services, all minted from one request's base by ``Urls(base)``.

A canvas of this server's own manifests is identified by its PATH below the base
("/iiif/manifests/flat/canvas/1"), whatever host name, port or public_url a client used; a
foreign canvas keeps its absolute URI. The container segment encodes that key, so it never
carries a host. PURE: standard library only. The manifest builder calls these via its hooks.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import quote, unquote

PREFIX = "/annotations"
ANNOTOT_PREFIX = "/annotot"
SAS_PREFIX = "/sas"
SEMANTIC_PREFIX = PREFIX + "/semantic"

SEARCH2_CONTEXT = "http://iiif.io/api/search/2/context.json"
# The project's own JSON-LD context (confidence, word confidences, software version): served by
# this server at <base>CONTEXT_PATH; its terms expand to <base>/ns/iiifsrv#<term>.
CONTEXT_PATH = "/ns/iiifsrv.jsonld"
TEXT_GRANULARITY_CONTEXT = "http://iiif.io/api/extension/text-granularity/context.json"
# Where the agents are named: a person under /users/<name>, a software agent under /agents/<name>.
AGENT_PATHS = {"Person": "/users/", "Software": "/agents/"}


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


def local_form(uri: str, base: str) -> str:
    """The key of a canvas or manifest URI: its path when it lies under ``base``, else the URI.

    A key (a path) is returned as it is: idempotent."""
    base = base.rstrip("/")
    if base and uri.startswith(base + "/"):
        return uri[len(base) :]
    return uri


def public_form(key: str, base: str) -> str:
    """The URI a client sees for a key: the base joined to a path, a foreign URI unchanged."""
    return base.rstrip("/") + key if key.startswith("/") else key


@dataclass(frozen=True)
class Urls:
    """Every annotation URL of one request, minted from its public base (no trailing "/")."""

    base: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", self.base.rstrip("/"))

    def key(self, uri: str) -> str:
        return local_form(uri, self.base)

    def public(self, key: str) -> str:
        return public_form(key, self.base)

    def container(self, kind: str, uri: str) -> str:
        """The W3C container of a canvas or a manifest (ends in "/")."""
        return f"{self.base}{PREFIX}/{kind}/{encode_uri(self.key(uri))}/"

    def annotation(self, canvas: str, key: str) -> str:
        return self.container("canvas", canvas) + key

    def page(self, canvas: str) -> str:
        return self.container("canvas", canvas) + "page"

    def search(self, manifest: str, version: int) -> str:
        return f"{self.base}{PREFIX}/search/{version}/{encode_uri(self.key(manifest))}"

    def semantic(self, manifest: str = "") -> str:
        """The semantic search of a manifest's annotations (of all of them without one)."""
        scope = f"/{encode_uri(self.key(manifest))}" if manifest else ""
        return f"{self.base}{SEMANTIC_PREFIX}{scope}"

    def agent(self, kind: str, name: str) -> str:
        """The URI of a writer: <base>/users/<name> (a person) or <base>/agents/<name>."""
        return self.base + AGENT_PATHS.get(kind, "/users/") + quote(name, safe="")

    def agent_of(self, uri: str) -> tuple[str, str] | None:
        """(kind, name) of an agent URI minted by ``agent`` under this base, else None."""
        for kind, path in AGENT_PATHS.items():
            head = self.base + path
            if uri.startswith(head) and "/" not in uri[len(head) :] and uri[len(head) :]:
                return kind, unquote(uri[len(head) :])
        return None

    def context(self) -> str:
        return self.base + CONTEXT_PATH


def canvas_container_path(canvas_id: str) -> str:
    """Path (from the server root) of the container of a canvas given by its key; ends in "/"."""
    return Urls("").container("canvas", canvas_id)


def canvas_container_url(base_url: str, canvas_id: str) -> str:
    return Urls(base_url).container("canvas", canvas_id)


def manifest_container_url(base_url: str, manifest_id: str) -> str:
    return Urls(base_url).container("manifest", manifest_id)


def annotation_url(base_url: str, canvas_id: str, key: str) -> str:
    """The IRI of one annotation: inside its canvas's container."""
    return Urls(base_url).annotation(canvas_id, key)


def canvas_page_url(base_url: str, canvas_id: str) -> str:
    """Stable URL of the unpaged AnnotationPage of a canvas (what viewers read)."""
    return Urls(base_url).page(canvas_id)


def annotation_page_ref(base_url: str, canvas_id: str) -> dict[str, str]:
    """Reference for a manifest canvas's ``annotations``: id and type, deliberately no items."""
    return {"id": canvas_page_url(base_url, canvas_id), "type": "AnnotationPage"}


def search_url(base_url: str, manifest_id: str, version: int) -> str:
    return Urls(base_url).search(manifest_id, version)


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


def semantic_service(base_url: str, manifest_id: str) -> dict[str, object]:
    """The semantic variant of Content Search 2.0 (same request and response; matches by
    meaning): declared after the word search, so viewers that take the first keep words."""
    return {
        "id": Urls(base_url).semantic(manifest_id),
        "type": "SearchService2",
        "label": {"en": ["Semantic search (by meaning)"]},
    }


def search_services_with_semantic(base_url: str, manifest_id: str) -> list[dict[str, object]]:
    """search_services plus the semantic variant (when the [semantic] extra is on)."""
    return [*search_services(base_url, manifest_id), semantic_service(base_url, manifest_id)]
