"""Parse a JSON request body strictly: one 400 for every way a body can be hostile or broken.

Imports only the standard library and iiifsrv.errors.
"""

from __future__ import annotations

import json
from typing import Any

from iiifsrv.errors import BadRequest


def _no_constants(name: str) -> Any:
    raise BadRequest(f"the body is not strict JSON: {name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """The document in ``body``; BadRequest for invalid UTF-8 or JSON, NaN/Infinity, numbers
    with more digits than Python converts, and nesting deep enough to exhaust the parser."""
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise BadRequest(
            "the body is not acceptable JSON (too deep or too long a number)"
        ) from None
