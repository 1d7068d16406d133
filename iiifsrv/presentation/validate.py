"""Validation of Presentation 3 documents against the official JSON schema (draft-07).

Reads the schema packaged in iiifsrv/schemas once; imports jsonschema and the standard library.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator

SCHEMA_FILE = "iiif_presentation_3_0.schema.json"
MAX_ERRORS = 50


CLASSES = {"Manifest": "manifest", "Collection": "collection", "AnnotationPage": "annotationPage"}


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("iiifsrv").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft7Validator.check_schema(schema)
    return schema


@cache
def validator(expected_type: str | None = None) -> Draft7Validator:
    """The whole schema, or (for a known type) only its class: errors then name the real cause
    instead of "is not valid under any of the given schemas"."""
    schema = _schema()
    if expected_type in CLASSES:
        # The class itself, not a oneOf around it: a oneOf evaluates its branch to the end
        # before it reports, while errors of the class come one by one (and can stop early).
        schema = {**schema, "$ref": f"#/classes/{CLASSES[expected_type]}"}
    return Draft7Validator(schema)


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(part) for part in path) if path else "/"


def _leaves(error: Any) -> list[Any]:
    """The causes of a oneOf/anyOf failure in the branch that got furthest into the document
    (the alternative the author most likely meant), recursively."""
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    best = max(
        branches.values(),
        key=lambda errs: (max(len(e.absolute_path) for e in errs), -len(errs)),
    )
    return [leaf for sub in best for leaf in _leaves(sub)]


def errors(
    doc: Any, expected_type: str | None = None, max_items: int | None = None
) -> list[dict[str, str]]:
    """Schema errors as ``[{"path": JSON pointer, "message": ...}]``, at most MAX_ERRORS of them;
    empty when valid. Validation stops at the cap, so a huge broken document costs little.
    ``max_items`` refuses a document with more top-level ``items`` before validating it."""
    found: list[dict[str, str]] = []
    if not isinstance(doc, dict):
        return [{"path": "/", "message": "the document must be a JSON object"}]
    if max_items is not None and (too_many := too_many_items(doc, max_items)):
        return too_many
    if expected_type and doc.get("type") != expected_type:
        found.append({"path": "/type", "message": f"expected type {expected_type!r}"})
    seen: set[tuple[str, str]] = set()
    declared = doc.get("type") if isinstance(doc.get("type"), str) else None
    check = validator(expected_type or declared)
    for error in check.iter_errors(doc):
        for leaf in _leaves(error):
            item = (_pointer(leaf.absolute_path), leaf.message[:300])
            if item not in seen:
                seen.add(item)
                found.append({"path": item[0], "message": item[1]})
        if len(found) >= MAX_ERRORS:
            break
    found.sort(key=lambda e: e["path"])
    return found[:MAX_ERRORS]


def too_many_items(doc: dict[str, Any], max_items: int) -> list[dict[str, str]]:
    """The one problem of a document with more than ``max_items`` top-level items, or []."""
    items = doc.get("items")
    if isinstance(items, list) and len(items) > max_items:
        return [{"path": "/items", "message": f"{len(items)} items; at most {max_items} allowed"}]
    return []


def is_valid(doc: Any) -> bool:
    return bool(validator().is_valid(doc))
