"""IIIF Content Search 2.0 and 1.0 responses (search and autocomplete) built from records.

PURE: imports the annotation model and urls; the store finds the records.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from iiifsrv.annotations.model import (
    Record,
    body_text,
    contexts,
    motivations,
    oa_provenance,
    w3c,
    words,
)
from iiifsrv.annotations.urls import SEARCH2_CONTEXT, annotation_url

SEARCH1_CONTEXT = "http://iiif.io/api/search/1/context.json"
PRESENTATION2_CONTEXT = "http://iiif.io/api/presentation/2/context.json"
SUPPORTED_2 = ("q", "motivation", "user")
SUPPORTED_1 = ("q", "motivation", "user")
CONTEXT_CHARS = 40


def query_words(q: str) -> list[str]:
    return words(q)


def filter_motivation(records: list[Record], motivation: str) -> list[Record]:
    wanted = set(motivation.split())
    if not wanted:
        return records
    return [r for r in records if wanted & set(motivations(r.doc) or ["commenting"])]


@dataclass(frozen=True)
class Paging:
    """Where one page of results sits: URLs of the whole result set and of its pages."""

    collection: str
    first: str
    last: str
    next: str
    prev: str
    start: int
    total: int


def _target(rec: Record) -> str:
    # The region was computed when the annotation was written: no SVG is parsed per hit.
    return f"{rec.canvas}#xywh={rec.region}" if rec.region else rec.canvas


def _quote(text: str, terms: list[str]) -> tuple[str, str, str]:
    low = text.lower()
    for term in terms:
        at = low.find(term.rstrip("*"))
        if at >= 0:
            end = at + len(term.rstrip("*"))
            while end < len(text) and text[end].isalnum():
                end += 1
            return (
                text[max(0, at - CONTEXT_CHARS) : at],
                text[at:end],
                text[end : end + CONTEXT_CHARS],
            )
    return "", text[:CONTEXT_CHARS], ""


def search2(
    request_url: str,
    base_url: str,
    records: list[Record],
    terms: list[str],
    ignored: list[str],
    paging: Paging | None = None,
) -> dict[str, Any]:
    """A Content Search 2.0 AnnotationPage: matching annotations, plus highlighting hits; with
    ``paging``, one page of an AnnotationCollection (partOf, next, prev, startIndex)."""
    items = []
    hits = []
    for rec in records:
        anno = w3c(rec, base_url, context=False)
        anno["target"] = _target(rec)
        items.append(anno)
        prefix, exact, suffix = _quote(body_text(rec.doc), terms)
        hits.append(
            {
                "id": anno["id"] + "#hit",
                "type": "Annotation",
                "motivation": "highlighting",
                "target": {
                    "type": "SpecificResource",
                    "source": anno["id"],
                    "selector": [
                        {
                            "type": "TextQuoteSelector",
                            "prefix": prefix,
                            "exact": exact,
                            "suffix": suffix,
                        }  # fmt: skip
                    ],
                },
            }
        )
    # Extension contexts the items use (textGranularity, the project's) go first.
    extra = sorted({c for r in records for c in contexts(r, base_url)}, reverse=True)
    page: dict[str, Any] = {
        "@context": [*extra, SEARCH2_CONTEXT] if extra else SEARCH2_CONTEXT,
        "id": request_url,
        "type": "AnnotationPage",
    }
    if paging is not None:
        page["partOf"] = {
            "id": paging.collection,
            "type": "AnnotationCollection",
            "total": paging.total,
            "first": {"id": paging.first, "type": "AnnotationPage"},
            "last": {"id": paging.last, "type": "AnnotationPage"},
        }
        if paging.next:
            page["next"] = {"id": paging.next, "type": "AnnotationPage"}
        if paging.prev:
            page["prev"] = {"id": paging.prev, "type": "AnnotationPage"}
        page["startIndex"] = paging.start
    page["items"] = items
    if hits:
        page["annotations"] = [{"type": "AnnotationPage", "items": hits}]
    if ignored:
        page["ignored"] = ignored
    return page


def search1(
    request_url: str,
    base_url: str,
    records: list[Record],
    terms: list[str],
    ignored: list[str],
    paging: Paging | None = None,
) -> dict[str, Any]:
    """A Content Search 1.0 AnnotationList (what Mirador 4 and Universal Viewer read); with
    ``paging``, one page of the results (within.first/last, next, prev, startIndex)."""
    resources = []
    hits = []
    for rec in records:
        ident = annotation_url(base_url, rec.canvas, rec.key)
        text = body_text(rec.doc)
        resources.append(
            {
                "@id": ident,
                "@type": "oa:Annotation",
                "motivation": "sc:painting",
                "resource": {"@type": "cnt:ContentAsText", "chars": text},
                "on": _target(rec),
                **oa_provenance(rec, base_url),  # who wrote it: a person or software
            }
        )
        prefix, exact, suffix = _quote(text, terms)
        hits.append(
            {
                "@type": "search:Hit",
                "annotations": [ident],
                "match": exact,
                "before": prefix,
                "after": suffix,
            }  # fmt: skip
        )
    out: dict[str, Any] = {
        "@context": [PRESENTATION2_CONTEXT, SEARCH1_CONTEXT],
        "@id": request_url,
        "@type": "sc:AnnotationList",
        "within": {"@type": "sc:Layer", "total": len(resources)},
    }
    if paging is not None:
        out["within"].update(total=paging.total, first=paging.first, last=paging.last)
        if paging.next:
            out["next"] = paging.next
        if paging.prev:
            out["prev"] = paging.prev
        out["startIndex"] = paging.start
    out["resources"] = resources
    out["hits"] = hits
    if ignored:
        out["within"]["ignored"] = ignored
    return out


def terms_with_prefix(records: list[Record], prefix: str, limit: int = 20) -> list[tuple[str, int]]:
    """Words starting with ``prefix`` in the records' text, most frequent first."""
    counts: Counter[str] = Counter()
    for rec in records:
        for word in set(words(body_text(rec.doc))):
            if word.startswith(prefix):
                counts[word] += 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def autocomplete2(
    request_url: str, search_url: str, terms: list[tuple[str, int]], ignored: list[str]
) -> dict[str, Any]:
    page: dict[str, Any] = {
        "@context": SEARCH2_CONTEXT,
        "id": request_url,
        "type": "TermPage",
        "items": [
            {
                "type": "Term",
                "value": word,
                "total": count,
                "service": [
                    {"id": f"{search_url}?{urlencode({'q': word})}", "type": "SearchService2"}
                ],  # fmt: skip
            }
            for word, count in terms
        ],
    }
    if ignored:
        page["ignored"] = ignored
    return page


def autocomplete1(
    request_url: str, search_url: str, terms: list[tuple[str, int]], ignored: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@context": SEARCH1_CONTEXT,
        "@id": request_url,
        "@type": "search:TermList",
        "terms": [
            {"match": word, "url": f"{search_url}?{urlencode({'q': word})}", "count": count}
            for word, count in terms
        ],
    }
    if ignored:
        out["ignored"] = ignored
    return out
