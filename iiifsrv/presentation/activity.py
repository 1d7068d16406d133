"""IIIF Change Discovery API 1.0: the OrderedCollection and its OrderedCollectionPages.

PURE: builds JSON-ready dicts from activities already read from the store; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iiifsrv.presentation.builder import manifest_url
from iiifsrv.presentation.store import Activity

DISCOVERY_CONTEXT = "http://iiif.io/api/discovery/1/context.json"
PAGE_SIZE = 100


def stream_url(base: str) -> str:
    return f"{base}/iiif/activity"


def page_url(base: str, number: int) -> str:
    return f"{base}/iiif/activity/page/{number}"


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    """At least one page: an empty stream still has a (empty) first and last page."""
    return max(1, -(-total // page_size))


def ordered_collection(base: str, total: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    last = page_count(total, page_size) - 1
    return {
        "@context": DISCOVERY_CONTEXT,
        "id": stream_url(base),
        "type": "OrderedCollection",
        "totalItems": total,
        "first": {"id": page_url(base, 0), "type": "OrderedCollectionPage"},
        "last": {"id": page_url(base, last), "type": "OrderedCollectionPage"},
    }


def activity(base: str, item: Activity) -> dict[str, Any]:
    return {
        "type": item.type,
        "object": {"id": manifest_url(base, item.manifest_id), "type": "Manifest"},
        "endTime": item.end_time,
    }


def ordered_page(
    base: str,
    number: int,
    items: Sequence[Activity],
    total: int,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """Page ``number`` (0-based), oldest activity first."""
    doc: dict[str, Any] = {
        "@context": DISCOVERY_CONTEXT,
        "id": page_url(base, number),
        "type": "OrderedCollectionPage",
        "startIndex": number * page_size,
        "partOf": {"id": stream_url(base), "type": "OrderedCollection"},
    }
    if number > 0:
        doc["prev"] = {"id": page_url(base, number - 1), "type": "OrderedCollectionPage"}
    if number < page_count(total, page_size) - 1:
        doc["next"] = {"id": page_url(base, number + 1), "type": "OrderedCollectionPage"}
    doc["orderedItems"] = [activity(base, a) for a in items]
    return doc
