"""The failed-authentication throttle: per client address, at most N failures in a sliding
minute, then 429 with Retry-After until the oldest failure leaves the window.

Pure (the clock is passed in); in-process, so with several workers each counts its own failures.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from iiifsrv.errors import IIIFError

WINDOW = 60.0
MAX_ADDRESSES = 10_000


class TooManyRequests(IIIFError):
    status = 429


class Throttle:
    def __init__(self, limit: int, window: float = WINDOW, max_addresses: int = MAX_ADDRESSES):
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def check(self, address: str, now: float) -> None:
        """TooManyRequests (429, Retry-After) while ``address`` is over the limit."""
        if self.limit <= 0:
            return
        times = self._recent(address, now)
        if times is not None and len(times) >= self.limit:
            wait = max(1, math.ceil(times[-self.limit] + self.window - now))
            raise TooManyRequests(
                f"too many failed authentications: retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def fail(self, address: str, now: float) -> None:
        """Record one failed authentication (wrong token, forged session) from ``address``."""
        if self.limit <= 0:
            return
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        times.append(now)
