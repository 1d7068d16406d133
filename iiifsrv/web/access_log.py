"""Keeps write tokens out of logs: a logging filter masking ``/key/<token>`` in uvicorn's access
log (and any record), and the uvicorn log configuration that installs it in every worker; the
structured access log (``access_log = "json"``): one JSON object per request, tokens masked.

HTTP layer: imports logging, json, time and uvicorn's default log configuration only.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from collections.abc import MutableMapping
from typing import Any

ACCESS_LOGGER = "iiifsrv.access"
access_log = logging.getLogger(ACCESS_LOGGER)

KEY_IN_PATH = re.compile(r"(/key/)[^/?#\s\"']+")
MASK = r"\1…"


def mask(text: str) -> str:
    return KEY_IN_PATH.sub(MASK, text)


class MaskTokens(logging.Filter):
    """Rewrites the message and string arguments of a record; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return mask(value.decode("latin-1"))
    return None


def json_line(
    scope: MutableMapping[str, Any], route: str, status: int, sent: int, seconds: float, now: float
) -> str:
    """One request as a JSON object: when, who (the client address uvicorn believed), what
    (method, path and query with tokens masked, route class), the outcome and its cost."""
    client = scope.get("client")
    query = scope.get("query_string", b"")
    headers = scope.get("headers", ())
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now % 1 * 1000):03d}Z",
        "client": client[0] if client else None,
        "method": scope.get("method"),
        "path": mask(scope.get("path", "")),
        "query": mask(query.decode("latin-1")) if query else "",
        "route": route,
        "status": status,
        "bytes": sent,
        "duration_ms": round(seconds * 1000, 3),
        "referer": _header(headers, b"referer"),
        "user_agent": _header(headers, b"user-agent"),
        "pid": os.getpid(),  # which worker answered
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def uvicorn_log_config(access: str = "") -> dict[str, Any]:
    """uvicorn's LOGGING_CONFIG with MaskTokens on both handlers (passed to uvicorn.run, so
    worker processes build it too); with ``access == "json"`` the iiifsrv.access logger writes
    bare JSON lines to standard output."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["mask_tokens"] = {"()": f"{__name__}.MaskTokens"}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("mask_tokens")
    if access == "json":
        config["formatters"]["json_line"] = {"format": "%(message)s"}
        config["handlers"]["json_access"] = {
            "class": "logging.StreamHandler",
            "formatter": "json_line",
            "stream": "ext://sys.stdout",
            "filters": ["mask_tokens"],
        }
        config["loggers"][ACCESS_LOGGER] = {
            "handlers": ["json_access"],
            "level": "INFO",
            "propagate": False,
        }
    return config
