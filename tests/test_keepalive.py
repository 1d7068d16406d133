"""sources/keepalive.py against a small real HTTP/1.1 server on 127.0.0.1: connections kept
and reused, bodies framed by Content-Length, chunks or the end of the connection, an idle
connection the server closed replaced at once, a server that does not answer bounded by the
timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from iiifsrv.sources.keepalive import Connections, ExchangeError, Target, _parse_head

Answer = Callable[[bytes], bytes | None]  # request head -> raw answer (None: close at once)


@asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[Target, list[int]]]:
    """A server answering each request with ``answer``; yields a target and, per connection
    accepted, how many requests it served."""
    served: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(0)
        writers.append(writer)
        n = len(served) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                out = answer(head)
                if out is None:
                    break
                served[n] += 1
                writer.write(out)
                await writer.drain()
                if b"Connection: close" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield Target.of(f"http://127.0.0.1:{port}/bucket/key?X-Amz-Signature=x"), served
    finally:
        srv.close()
        for writer in writers:
            writer.close()
        await srv.wait_closed()
        await asyncio.sleep(0.05)  # the transports' close callbacks run


def ranged(head: bytes) -> bytes:
    """206 with the requested range of the bytes 0, 1, 2, ... (mod 256)."""
    line = next(x for x in head.split(b"\r\n") if x.lower().startswith(b"range:"))
    start, end = (int(v) for v in line.split(b"=", 1)[1].split(b"-"))
    body = bytes(i % 256 for i in range(start, end + 1))
    return b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize(
    ("head", "parsed"),
    [
        (b"HTTP/1.1 206 Partial\r\nContent-Length: 12\r\n\r\n", (206, 12, False, True)),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nConnection: close\r\n\r\n",
            (200, 3, False, False),
        ),
        (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n", (404, -1, True, True)),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", (200, 1, False, False)),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", (200, -1, False, True)),
    ],
)
def test_response_heads(head: bytes, parsed: tuple[int, int, bool, bool]) -> None:
    assert _parse_head(head) == parsed


def test_targets() -> None:
    t = Target.of("https://s3.example.org/b/k%2Fx.tif?X-Amz-Date=1&X-Amz-Signature=ab")
    assert (t.scheme, t.host, t.port, t.path) == (
        "https",
        "s3.example.org",
        443,
        "/b/k%2Fx.tif?X-Amz-Date=1&X-Amz-Signature=ab",
    )
    assert t.host_header == "s3.example.org"
    assert Target.of("http://127.0.0.1:8080/b/k").host_header == "127.0.0.1:8080"
    with pytest.raises(ValueError):
        Target.of("ftp://example.org/b/k")


async def test_ranged_gets_share_one_kept_connection() -> None:
    async with server(ranged) as (target, served):
        pool = Connections(limit=4, timeout=5)
        for start in (0, 100, 1000):
            status, body = await pool.get(target, f"Range: bytes={start}-{start + 9}\r\n")
            assert status == 206
            assert body == bytes(i % 256 for i in range(start, start + 10))
        assert served == [3]
        pool.close()


async def test_concurrent_gets_stay_within_the_limit() -> None:
    async with server(ranged) as (target, served):
        pool = Connections(limit=3, timeout=5)
        bodies = await asyncio.gather(
            *(pool.get(target, f"Range: bytes={i}-{i}\r\n") for i in range(30))
        )
        assert [b for _, b in bodies] == [bytes([i]) for i in range(30)]
        assert 1 <= len(served) <= 3 and sum(served) == 30
        pool.close()


async def test_chunked_and_connection_close_answers() -> None:
    def answer(head: bytes) -> bytes:
        if b"/chunked" in head:
            head = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            return head + b"5\r\n<Code\r\n3;x=1\r\n>No\r\n0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async with server(answer) as (target, served):
        pool = Connections(limit=2, timeout=5)
        chunked = Target(target.scheme, target.host, target.port, "/chunked")
        assert await pool.get(chunked, "") == (404, b"<Code>No")
        assert await pool.get(target, "") == (200, b"ok")
        assert await pool.get(target, "") == (200, b"ok")
        assert served == [2, 1]  # the chunked answer kept its connection; "close" did not
        pool.close()


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    count = [0]

    def answer(head: bytes) -> bytes | None:
        count[0] += 1
        if count[0] == 2:  # the server drops the kept connection instead of answering
            return None
        return ranged(head)

    async with server(answer) as (target, served):
        pool = Connections(limit=2, timeout=5)
        assert (await pool.get(target, "Range: bytes=0-3\r\n"))[1] == b"\x00\x01\x02\x03"
        assert (await pool.get(target, "Range: bytes=4-5\r\n"))[1] == b"\x04\x05"
        assert len(served) == 2
        pool.close()


async def test_a_server_that_does_not_answer_is_bounded_by_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    pool = Connections(limit=1, timeout=0.3)
    with pytest.raises(TimeoutError):
        await pool.get(Target.of(f"http://127.0.0.1:{port}/k"), "")
    srv.close()
    await srv.wait_closed()
    await asyncio.sleep(0.05)
    with pytest.raises(ExchangeError):  # nothing listens there any more
        await pool.get(Target.of(f"http://127.0.0.1:{port}/k"), "")
