"""An open-loop HTTP load generator: requests leave on a fixed schedule, whatever the answers.

    .venv/bin/python bench/serving_openloop.py URL BODY --rate 2000 --duration-s 5

wrk waits for each answer before its connection sends again, so a slow server slows the
offer down and overload never builds up. Here every request has a scheduled send time
(``rate`` per second, evenly spaced); it goes out on an idle keep-alive connection, or a new
one, or (past ``--max-connections``) as soon as one frees up. Latency runs from the scheduled
time, so waiting for a connection counts. Prints one JSON object: the offered and answered
counts and, per HTTP status, the sorted latencies in milliseconds (status 0: connection
errors, -1: not answered by the end of the drain time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import deque
from urllib.parse import urlsplit

TICK_S = 0.001


def _content_length(buf: bytes, head_end: int) -> int:
    for name in (b"\r\nContent-Length:", b"\r\ncontent-length:"):
        at = buf.find(name, 0, head_end)
        if at >= 0:
            start = at + len(name)
            stop = buf.find(b"\r\n", start)
            return int(buf[start : stop if 0 <= stop <= head_end else head_end])
    return 0


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.sent_at = scheduled
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(self.buf, end)
            if len(self.buf) < end + 4 + length:
                return
            status = int(self.buf[9:12])
            self.buf = self.buf[end + 4 + length :]
            self.gen.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Generator:
    def __init__(self, url: str, body: str, max_connections: int) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        data = body.encode()
        head = (f"POST {u.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.request = head.encode() + data
        self.max_connections = max_connections
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.opening = 0
        self.backlog: deque[float] = deque()
        self.latencies: dict[int, list[float]] = {}
        self.offered = 0
        self.quiet = asyncio.Event()  # set when nothing is outstanding

    def _settle(self) -> None:
        if not (self.busy or self.backlog or self.opening):
            self.quiet.set()

    def record(self, status: int, scheduled: float) -> None:
        self.latencies.setdefault(status, []).append((time.monotonic() - scheduled) * 1e3)

    def done(self, conn: _Conn, status: int) -> None:
        self.record(status, conn.sent_at)
        self.busy.discard(conn)
        if self.backlog:
            self.busy.add(conn)
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)
            self._settle()

    def lost(self, conn: _Conn) -> None:
        if conn in self.busy:
            self.busy.discard(conn)
            self.record(0, conn.sent_at)
        if conn in self.idle:
            self.idle.remove(conn)
        self._settle()

    async def _open(self, scheduled: float) -> None:
        self.opening += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.record(0, scheduled)
            self._settle()
            return
        finally:
            self.opening -= 1
        self.busy.add(conn)
        conn.send(scheduled)

    def dispatch(self, scheduled: float, tasks: set[asyncio.Task[None]]) -> None:
        self.offered += 1
        if self.idle:
            conn = self.idle.pop()
            self.busy.add(conn)
            conn.send(scheduled)
        elif len(self.busy) + self.opening < self.max_connections:
            t = asyncio.create_task(self._open(scheduled))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        else:
            self.backlog.append(scheduled)

    async def run(self, rate: float, duration_s: float, drain_s: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        n_total = int(rate * duration_s)
        sent = 0
        while sent < n_total:
            due = min(n_total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                self.dispatch(start + sent / rate, tasks)
                sent += 1
            await asyncio.sleep(TICK_S)
        self.quiet.clear()
        self._settle()
        with contextlib.suppress(TimeoutError):  # let the last answers arrive, within the drain time
            await asyncio.wait_for(self.quiet.wait(), drain_s)
        unanswered = [c.sent_at for c in self.busy] + list(self.backlog)
        self.latencies.setdefault(-1, []).extend((time.monotonic() - s) * 1e3 for s in unanswered)
        conns, self.busy, self.idle = [*self.idle, *self.busy], set(), []
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("body")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration-s", type=float, default=5.0)
    p.add_argument("--drain-s", type=float, default=12.0, help="wait this long for the last answers")
    p.add_argument("--max-connections", type=int, default=2000)
    args = p.parse_args()
    gen = _Generator(args.url, args.body, args.max_connections)
    t0 = time.monotonic()
    asyncio.run(gen.run(args.rate, args.duration_s, args.drain_s))
    out = {"offered": gen.offered, "wall_s": time.monotonic() - t0,
           "latencies_ms": {str(k): sorted(v) for k, v in gen.latencies.items() if v}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
