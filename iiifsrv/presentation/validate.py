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


@cache
def validator() -> Draft7Validator:
    text = resources.files("iiifsrv").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    schema = json.loads(text)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(part) for part in path) if path else "/"


def _leaves(error: Any) -> list[Any]:
    """The most specific causes of a oneOf/anyOf failure (what a person can act on)."""
    if not error.context:
        return [error]
    deepest = max(len(e.absolute_path) for e in error.context)
    out = []
    for sub in error.context:
        if len(sub.absolute_path) == deepest:
            out.extend(_leaves(sub))
    return out


def errors(doc: Any, expected_type: str | None = None) -> list[dict[str, str]]:
    """Schema errors as ``[{"path": JSON pointer, "message": ...}]``; empty when valid."""
    found: list[dict[str, str]] = []
    if not isinstance(doc, dict):
        return [{"path": "/", "message": "the document must be a JSON object"}]
    if expected_type and doc.get("type") != expected_type:
        found.append({"path": "/type", "message": f"expected type {expected_type!r}"})
    seen: set[tuple[str, str]] = set()
    for error in sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        for leaf in _leaves(error):
            item = (_pointer(leaf.absolute_path), leaf.message[:300])
            if item not in seen:
                seen.add(item)
                found.append({"path": item[0], "message": item[1]})
    return found[:MAX_ERRORS]


def is_valid(doc: Any) -> bool:
    return bool(validator().is_valid(doc))
