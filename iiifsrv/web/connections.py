"""Connection guards for uvicorn: a request-header timeout and a per-client connection cap.

HTTP layer (the wire): imports uvicorn's httptools protocol and the standard library only.
``iiifsrv serve`` passes ``GuardedHttpToolsProtocol`` as uvicorn's ``http`` class and calls
``configure`` once per worker process (uvicorn instantiates the class, so it cannot take
arguments).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("iiifsrv.connections")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Guard:
    """The limits, and the open connections per client address, of this worker process."""

    def __init__(self) -> None:
        self.header_timeout = 10.0
        self.max_per_client = 256
        self.exempt: tuple[Network, ...] = ()
        self.open: dict[str, int] = {}

    def configure(self, header_timeout: float, max_per_client: int, exempt: str = "") -> None:
        """``exempt``: the trusted proxies (forwarded_allow_ips); all their clients share one
        address, so the cap does not apply to them ("*" exempts nobody)."""
        self.header_timeout = header_timeout
        self.max_per_client = max_per_client
        nets = [e.strip() for e in exempt.split(",") if e.strip() not in ("", "*")]
        self.exempt = tuple(ipaddress.ip_network(e, strict=False) for e in nets)

    def _exempt(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.exempt)

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``; False (not counted) when it is over the cap."""
        count = self.open.get(host, 0)
        if self.max_per_client and count >= self.max_per_client and not self._exempt(host):
            return False
        self.open[host] = count + 1
        return True

    def release(self, host: str) -> None:
        count = self.open.get(host, 0) - 1
        if count > 0:
            self.open[host] = count
        else:
            self.open.pop(host, None)


GUARD = Guard()


def configure(header_timeout: float, max_per_client: int, exempt: str = "") -> None:
    GUARD.configure(header_timeout, max_per_client, exempt)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: a connection still without complete request headers
    ``header_timeout`` seconds after it opened (or after its next request began) is closed, and
    a client address over ``max_per_client`` open connections has new ones closed at once."""

    _header_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        if not GUARD.admit(host):
            log.debug("closing a connection from %s: over max_connections_per_client", host)
            transport.close()
            return
        self._counted = host
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted is not None:
            GUARD.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_timer is None and GUARD.header_timeout > 0:
            self._header_timer = self.loop.call_later(GUARD.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("closing a connection from %s: no complete headers in time", self._counted)
            self.transport.close()
