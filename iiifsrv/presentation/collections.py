"""Collections: the top-level Collection of every manifest, nested Collections per institution
and per project, split into page Collections (``?page=N``) when large.

PURE: builds JSON-ready dicts from store records; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iiifsrv.presentation.builder import CONTEXT, lang, manifest_url, slug
from iiifsrv.presentation.store import Record

PAGE_SIZE = 1000
GROUPS = {"institution": "Institution", "project": "Project"}


def collection_url(base: str, group: str = "", name: str = "", page: int = 0) -> str:
    url = f"{base}/iiif/collection"
    if group:
        url += f"/{group}/{name}"
    return f"{url}?page={page}" if page else url


def _manifest_ref(base: str, record: Record) -> dict[str, Any]:
    return {
        "id": manifest_url(base, record.id),
        "type": "Manifest",
        "label": lang(record.label or record.id),
    }


def _group_value(record: Record, group: str) -> str:
    return record.institution if group == "institution" else record.project


def groups(records: Sequence[Record], group: str) -> dict[str, str]:
    """slug → display name of every institution (or project) that has a manifest."""
    out: dict[str, str] = {}
    for record in records:
        value = _group_value(record, group)
        if value:
            out.setdefault(slug(value), value)
    return dict(sorted(out.items()))


def collection(
    base: str,
    records: Sequence[Record],
    *,
    group: str = "",
    name: str = "",
    page: int = 0,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any] | None:
    """The collection (``group`` "" = top level), or one of its pages; None when unknown."""
    if group:
        members = groups(records, group)
        if name not in members:
            return None
        records = [r for r in records if slug(_group_value(r, group)) == name]
        label = f"{GROUPS[group]}: {members[name]}"
    else:
        label = "All manifests"
    pages = max(1, -(-len(records) // page_size))
    if page < 0 or page > pages or (page and pages == 1):
        return None
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": collection_url(base, group, name, page),
        "type": "Collection",
        "label": lang(label),
    }
    items: list[dict[str, Any]] = []
    if page:
        doc["label"] = lang(f"{label} ({page} of {pages})")
        doc["partOf"] = [{"id": collection_url(base, group, name), "type": "Collection"}]
        chunk = records[(page - 1) * page_size : page * page_size]
        items = [_manifest_ref(base, r) for r in chunk]
    else:
        if not group:
            for kind, title in GROUPS.items():
                for key, value in groups(records, kind).items():
                    items.append(
                        {
                            "id": collection_url(base, kind, key),
                            "type": "Collection",
                            "label": lang(f"{title}: {value}"),
                        }
                    )
        if pages == 1:
            items += [_manifest_ref(base, r) for r in records]
        else:
            for number in range(1, pages + 1):
                first = (number - 1) * page_size + 1
                last = min(len(records), number * page_size)
                items.append(
                    {
                        "id": collection_url(base, group, name, number),
                        "type": "Collection",
                        "label": lang(f"Manifests {first}–{last}"),
                    }
                )
    doc["items"] = items
    return doc
