"""Benchmark: cached external-metric GETs vs a bare aiohttp JSON handler, on loopback.

Each server runs in its own process; ``wrk`` measures max throughput, an open-loop aiohttp
client measures latency at a fixed 1,000 req/s (from the scheduled send time, so queueing
counts). Also: 10,000 distinct series served within their freshness limit, and an optional
soak (``--soak-seconds 600``) at 500 req/s reporting RSS growth and errors.

    .venv/bin/python bench/adapter_external.py [--duration 5] [--soak-seconds 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from adapter.api.routes import Deps, make_app
from adapter.metrics import AdapterMetrics
from adapter.provider import Sample
from adapter.providers.memory import MemoryProvider

PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue?labelSelector=app%3Dllm"
SERIES = 10_000
KINDS = ("baseline", "adapter", "adapter-cached")
PROVIDER = web.AppKey("provider", MemoryProvider)


def _fill(p: MemoryProvider) -> None:
    now = time.time()
    p.set_external("queue", "default", [Sample(7.5, now, {"app": "llm"})])
    for i in range(SERIES):
        p.set_external(f"series_{i}", "default", [Sample(float(i), now, {"app": "llm"})])


async def _refresh(app: web.Application) -> AsyncIterator[None]:
    """Stand-in for a live source: new samples every 10 s, so values stay inside freshness."""
    provider = app[PROVIDER]

    async def loop() -> None:
        while True:
            await asyncio.sleep(10)
            _fill(provider)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _serve(kind: str, port: int) -> None:
    if kind == "baseline":
        body = json.dumps(
            {
                "kind": "ExternalMetricValueList",
                "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": [
                    {
                        "metricName": "queue",
                        "metricLabels": {"app": "llm"},
                        "timestamp": "2026-11-21T13:30:00Z",
                        "value": "7500m",
                    }
                ],
            }
        )

        async def handler(request: web.Request) -> web.Response:
            return web.json_response(text=body)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
    else:
        cache_s = 1.0 if kind == "adapter-cached" else 0.0  # the CLI default vs no response cache
        provider = MemoryProvider(freshness_s=120)
        _fill(provider)
        app = make_app(Deps(provider, AdapterMetrics(), response_cache_s=cache_s))
        app[PROVIDER] = provider
        app.cleanup_ctx.append(_refresh)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return proc, url
        except OSError as e:
            if getattr(e, "code", None) == 404:  # the baseline answers everything
                return proc, url
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"{kind} server did not start")


def _wrk(url: str, duration_s: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{duration_s}s", url + PATH], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError(out)
    return float(m.group(1))


async def _open_loop(url: str, rate: int, duration_s: float, path: str = PATH) -> tuple[list[float], int]:
    """Latencies (s) measured from each request's scheduled time, and the error count."""
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
        start = time.perf_counter()

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                async with s.get(url + path) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        for i in range(int(rate * duration_s)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return latencies, errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _series_check(url: str) -> tuple[float, int]:
    """Fetch all 10,000 series once; returns (seconds, how many were fresh 200s)."""
    ok = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            nonlocal ok
            async with (
                sem,
                s.get(f"{url}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/series_{i}") as r,
            ):
                doc = await r.json()
                ts = (
                    time.mktime(time.strptime(doc["items"][0]["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
                    - time.timezone
                )
                ok += r.status == 200 and time.time() - ts <= 120

        await asyncio.gather(*(one(i) for i in range(SERIES)))
    return time.perf_counter() - started, ok


def _server_quantile(url: str, q: float) -> float:
    """Upper bound (ms) of the bucket holding quantile ``q`` of the adapter's own request
    latency histogram for the external-metric route: handler time without client queueing."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("prescale_adapter_request_duration_seconds_bucket{") and "{metric}" in line:
            le = re.search(r'le="([^"]+)"', line)
            if le is not None:
                buckets.append((float(le.group(1)), float(line.rsplit(" ", 1)[1])))
    if not buckets:
        return float("nan")
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= q * total) * 1000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _adapter_extras(proc: subprocess.Popen[bytes], url: str, soak_s: int) -> None:
    secs, fresh = asyncio.run(_series_check(url))
    print(f"series   {fresh}/{SERIES} distinct series served fresh in {secs:.2f} s")
    if soak_s:
        rss0 = _rss_kb(proc.pid)
        lat, errors = asyncio.run(_open_loop(url, 500, soak_s))
        rss1 = _rss_kb(proc.pid)
        print(
            f"soak     {soak_s}s at 500 req/s: p50 {_pct(lat, 0.5):.2f} ms p99 {_pct(lat, 0.99):.2f} ms, "
            f"errors {errors}, RSS {rss0} -> {rss1} kB ({(rss1 - rss0) / rss0:+.1%})"
        )


def _throughput_rounds(rounds: int, duration_s: int) -> dict[str, list[float]]:
    """wrk req/s per round, the two servers interleaved: on a shared 2-CPU box the load from
    other processes drifts, and a single A-then-B pair can be off by 2x either way."""
    rps: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            proc, url = _start(kind)
            try:
                rps[kind].append(_wrk(url, duration_s))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    return rps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", choices=KINDS)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--soak-seconds", type=int, default=0)
    ns = ap.parse_args()
    if ns.serve:
        _serve(ns.serve, ns.port)
        return 0
    rps = _throughput_rounds(ns.rounds, ns.duration)
    for kind in KINDS:
        proc, url = _start(kind)
        try:
            lat, errors = asyncio.run(_open_loop(url, 1000, ns.duration))
            server = ""
            if kind != "baseline":
                p50, p99 = _server_quantile(url, 0.5), _server_quantile(url, 0.99)
                server = f" | server-side p50 <= {p50:.1f} ms p99 <= {p99:.1f} ms"
            print(
                f"{kind:14s} wrk median {statistics.median(rps[kind]):7.0f} req/s "
                f"(rounds: {', '.join(f'{r:.0f}' for r in rps[kind])}) | at 1000 req/s: "
                f"p50 {_pct(lat, 0.5):.2f} ms p99 {_pct(lat, 0.99):.2f} ms errors {errors}{server}"
            )
            if kind == "adapter":
                _adapter_extras(proc, url, ns.soak_seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    for kind in KINDS[1:]:
        ratios = [a / b for a, b in zip(rps[kind], rps["baseline"], strict=True)]
        print(
            f"ratio    {kind}/baseline throughput: median {statistics.median(ratios):.2f}x "
            f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
