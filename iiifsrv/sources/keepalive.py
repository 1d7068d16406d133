"""GETs on the event loop: a lean HTTP/1.1 client over asyncio streams that keeps its
connections alive, per (scheme, host, port), for the one ranged GET a stored tile costs.

Measured against Swift (docs/benchmarks.md, 2026-11-30 s3cpu): a ranged GET through urllib3 in
a worker thread cost ~0.45 ms of process CPU at 16 in flight (the thread hop, the GIL handed
back and forth, urllib3's request machinery); through this client on the loop ~0.07 ms.

Async I/O on the running loop, no threads; imports only the standard library.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ExchangeError(ConnectionError):
    """The connection failed or the answer was not HTTP/1.1 as expected (retried by callers)."""


@dataclass(frozen=True)
class Target:
    """Where a URL is sent: the connection it needs and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line

    @classmethod
    def of(cls, url: str) -> Target:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {u.scheme}://{u.hostname}")
        port = u.port or (443 if u.scheme == "https" else 80)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        return cls(u.scheme, u.hostname, port, path)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass
class Connections:
    """Idle keep-alive connections of one event loop, at most ``limit`` requests in flight.

    A connection is used by one request at a time and put back only after a complete answer
    that allows keep-alive; one that the server closed while idle is replaced at once."""

    limit: int
    timeout: float
    cafile: str | None = None
    _idle: dict[tuple[str, str, int], list[Streams]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _ssl: ssl.SSLContext | None = None

    async def get(self, target: Target, headers: str) -> tuple[int, bytes]:
        """One GET of ``target`` with ``headers`` ("Name: value\\r\\n" lines): (status, body).
        Raises ExchangeError (or TimeoutError after ``timeout`` s) when it fails."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        request = (
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n{headers}\r\n"
        ).encode("latin-1")
        async with self._slots, asyncio.timeout(self.timeout):
            while True:
                streams, reused = await self._connection(target)
                try:
                    return await self._exchange(target, streams, request)
                except _Stale:
                    if not reused:  # a new connection closed before answering: a failure
                        raise ExchangeError("connection closed before the answer") from None
                    # An idle connection the server had closed: once more on a new one.

    async def _connection(self, target: Target) -> tuple[Streams, bool]:
        idle = self._idle.get((target.scheme, target.host, target.port))
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.close()
        context = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.cafile)
            context = self._ssl
        try:
            streams = await asyncio.open_connection(
                target.host, target.port, ssl=context, limit=1 << 20
            )
        except OSError as exc:
            raise ExchangeError(f"cannot connect: {type(exc).__name__}") from None
        return streams, False

    async def _exchange(
        self, target: Target, streams: Streams, request: bytes
    ) -> tuple[int, bytes]:
        reader, writer = streams
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:  # closed before any byte of the answer
                    raise _Stale from None
                raise
            except (ConnectionResetError, BrokenPipeError):  # reset before any byte
                raise _Stale from None
            status, length, chunked, keep = _parse_head(head)
            if status in (204, 304) or 100 <= status < 200:
                body = b""
            elif length >= 0:
                body = await reader.readexactly(length)
            elif chunked:
                body = await _read_chunked(reader)
            else:  # delimited by the end of the connection
                body, keep = await reader.read(), False
        except _Stale:
            writer.close()
            raise
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise ExchangeError(f"{type(exc).__name__} while reading the answer") from None
        except BaseException:  # cancelled (the timeout): the connection is in an unknown state
            writer.close()
            raise
        if keep:
            self._idle.setdefault((target.scheme, target.host, target.port), []).append(streams)
        else:
            writer.close()
        return status, body

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


class _Stale(Exception):
    """A kept connection was closed by the server before any byte of the answer."""


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """(status, Content-Length or -1, chunked, keep-alive) of a response head."""
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ", 2)
    if len(first) < 2 or not first[0].startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x status line")
    status = int(first[1])
    length, chunked, keep = -1, False, first[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token == b"keep-alive" or (keep and token != b"close")
    if chunked:
        length = -1
    return status, length, chunked, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)
