"""Graceful shutdown of a worker: SIGTERM → drain (``/health`` answers 503) → stop accepting →
finish in-flight requests → exit.

Entry-level helper: imports only the standard library. One ``Drain`` per worker process (the
state a signal changes is the process's own); the web layer reads ``draining``, the ASGI
lifespan calls ``install``. uvicorn does the rest: on its own SIGTERM handler it closes the
listening sockets, waits for in-flight requests (its ``timeout_graceful_shutdown``, set from
``shutdown_timeout``), runs the lifespan shutdown and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("iiifsrv.lifecycle")

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Drain:
    """Whether this process is draining, and the SIGTERM hook that starts the drain."""

    def __init__(self) -> None:
        self.draining = False
        self._installed = False

    def install(self, delay: float) -> Callable[[], None]:
        """Wrap the current SIGTERM handler (uvicorn's): the first SIGTERM marks the process as
        draining and calls the wrapped handler ``delay`` seconds later; a second one calls it at
        once. Returns a function restoring the previous handler. Does nothing outside the main
        thread or without a running loop (in-process tests)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        previous: Handler = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return lambda: None
        forward: Callable[[int, FrameType | None], Any] = previous

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.draining or delay <= 0:
                self.draining = True
                forward(sig, frame)
                return
            self.draining = True
            log.info("SIGTERM: draining for %ss (/health answers 503), then stopping", delay)
            loop.call_soon_threadsafe(loop.call_later, delay, forward, sig, None)

        signal.signal(signal.SIGTERM, on_term)
        self._installed = True

        def restore() -> None:
            if signal.getsignal(signal.SIGTERM) is on_term:
                signal.signal(signal.SIGTERM, previous)
            self._installed = False

        return restore


# The worker process's drain state (one per process, like its signal handlers).
DRAIN = Drain()
