"""An open-loop HTTP load generator: requests leave at a fixed rate, whatever the answers.

A closed loop (each client waits for its answer before it asks again) slows down with the
server and hides its queueing. Here request k is due at ``k / rate`` seconds, and its latency
counts from that due time, so a request that waited for a free connection pays for the wait
(no coordinated omission). Connections are plain HTTP/1.1 keep-alive sockets on asyncio
streams: a few microseconds of client CPU per request, so that on a small machine the client
leaves the cores to the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Outcome:
    """What one run saw: per request its status (or the error's name) and latency."""

    statuses: list[int | str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter[int | str]:
        return Counter(self.statuses)

    def percentile_ms(self, q: float, status: int | None = 200) -> float | None:
        values = [t for s, t in zip(self.statuses, self.latencies_s, strict=True)
                  if status is None or s == status]
        return float(np.percentile(values, q) * 1000) if values else None

    @property
    def max_s(self) -> float:
        return max(self.latencies_s, default=0.0)


class Connection:
    """One keep-alive connection; ``request`` sends a request and reads its whole answer."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, raw: bytes) -> int:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(raw)
            return await asyncio.wait_for(self._answer(reader), self.timeout_s)
        except BaseException:
            self.close()
            raise

    async def _answer(self, reader: asyncio.StreamReader) -> int:
        status = int((await reader.readline()).split(b" ", 2)[1])
        length, chunked, closing = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                closing = value == "close"
        if chunked:
            while size := int((await reader.readline()).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readline()
        else:
            await reader.readexactly(length)
        if closing:
            self.close()
        return status

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


FAILURES = (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError)
"""What a request may meet instead of an answer: counted under the error's name."""


async def _attempt(connection: Connection, raw: bytes) -> int | str:
    try:
        return await connection.request(raw)
    except FAILURES as error:
        return type(error).__name__


def get_request(host: str, port: int, path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode()


async def open_loop(host: str, port: int, raw: bytes, *, rate: float, seconds: float,
                    connections: int, timeout_s: float = 30.0) -> Outcome:
    """Send ``raw`` at ``rate`` per second for ``seconds`` over at most ``connections``
    keep-alive connections. A request still waiting for a connection when the time is up is
    not sent (status ``unsent``); every one sent is answered, errs or times out before this
    returns."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port, timeout_s))
    outcome = Outcome()
    start = time.perf_counter()

    end = start + seconds

    async def one(due: float) -> None:
        try:
            connection = await asyncio.wait_for(pool.get(), max(0.0, end - time.perf_counter()))
        except TimeoutError:
            outcome.statuses.append("unsent")
            outcome.latencies_s.append(time.perf_counter() - due)
            return
        status = await _attempt(connection, raw)
        pool.put_nowait(connection)
        outcome.statuses.append(status)
        outcome.latencies_s.append(time.perf_counter() - due)

    tasks = []
    for k in range(int(rate * seconds)):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    outcome.seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return outcome


async def burst(host: str, port: int, raw: bytes, *, count: int,
                timeout_s: float = 30.0) -> Outcome:
    """``count`` requests at once, each on a connection of its own."""
    outcome = Outcome()
    start = time.perf_counter()

    async def one() -> None:
        connection = Connection(host, port, timeout_s)
        status = await _attempt(connection, raw)
        connection.close()
        outcome.statuses.append(status)
        outcome.latencies_s.append(time.perf_counter() - start)

    await asyncio.gather(*(one() for _ in range(count)))
    outcome.seconds = time.perf_counter() - start
    return outcome
