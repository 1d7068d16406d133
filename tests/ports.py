"""Free TCP ports on 127.0.0.1 for the servers the tests (and the benches) start.

Chosen below the kernel's ephemeral range: a port taken from that range (``bind(("", 0))``) and
released is free to be the local port of any outgoing connection (a pooled connection to Swift,
memcached, PostgreSQL) before the server binds it, and then the server cannot start — CI met
this once. Below the range only listeners compete, and those are checked for here.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 15000
_random = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def bindable(port: int) -> bool:
    """Nothing listens on ``port`` (nor holds it in TIME_WAIT) now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT is refused too
        except OSError:
            return False
        return True


def free_port(span: int = 1) -> int:
    """A port ``p`` such that ``p .. p + span - 1`` are free now, outside the ephemeral range."""
    top = _ephemeral_start() - span
    if top > _LOWEST:
        for _ in range(500):
            port = _random.randrange(_LOWEST, top)
            if all(bindable(port + i) for i in range(span)):
                return port
    with socket.socket() as s:  # an unusual port range: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
