"""Parse a JSON request body strictly: one 400 for every way a body can be hostile or broken.

Imports only the standard library and iiifsrv.errors.
"""

from __future__ import annotations

import json
from typing import Any

from iiifsrv.errors import BadRequest


def _no_constants(name: str) -> Any:
    raise BadRequest(f"the body is not strict JSON: {name} is not a JSON number")


# Deeper documents are refused: no annotation or manifest needs it, and every later reader
# (serialisers, validators, the stores) recurses over the structure.
MAX_DEPTH = 100


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The document in ``body``; BadRequest for invalid UTF-8 or JSON, NaN/Infinity, numbers
    with more digits than Python converts, and nesting deeper than ``max_depth``."""
    try:
        doc = json.loads(body, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise BadRequest(
            "the body is not acceptable JSON (too deep or too long a number)"
        ) from None
    if _depth(doc) > max_depth:
        raise BadRequest(f"the body is nested deeper than {max_depth} levels")
    return doc


def _depth(doc: Any) -> int:
    """How deep lists and objects nest (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest
