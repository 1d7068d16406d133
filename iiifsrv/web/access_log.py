"""Keeps write tokens out of logs: a logging filter masking ``/key/<token>`` in uvicorn's access
log (and any record), and the uvicorn log configuration that installs it in every worker.

HTTP layer: imports logging and uvicorn's default log configuration only.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

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


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's LOGGING_CONFIG with MaskTokens on both handlers (passed to uvicorn.run, so
    worker processes build it too)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["mask_tokens"] = {"()": f"{__name__}.MaskTokens"}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("mask_tokens")
    return config
