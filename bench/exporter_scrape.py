"""Scrape latency and collection cost of the GPU exporter, against baselines run in the same process.

  .venv/bin/python bench/exporter_scrape.py [--scrapes 2000]

Figures (all on the simulated backend, pods from a real gRPC PodResources server on a unix socket):
- scrape p50/p99 of ``/metrics`` (the server's Renderer: cached snapshot + freshness gauge) at
  8 GPUs, 64 GPUs and 8 GPUs x 7 MIG instances, every family, every device held by a pod;
- baseline A: ``prometheus_client.generate_latest`` over a registry of plain Gauges holding the
  same series (the yardstick for the exporter's own scrape path);
- baseline B: a naive design that reads the backend, calls the kubelet and renders with
  ``generate_latest`` on every scrape (what dcgm-exporter does with its per-scrape PodMapper);
- the per-snapshot render the loop does off the scrape path (ours, and the same via generate_latest);
- collection CPU per second at a 1 s interval, and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import aiohttp
import grpc  # type: ignore[import-untyped]
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_exporter.backend import SimulatedBackend, simulated_from_spec
from gpu_exporter.collection import Collection, Intervals
from gpu_exporter.collector import render, render_with_client
from gpu_exporter.podresources import api_pb2
from gpu_exporter.pods import PodResourcesClient
from gpu_exporter.server import Renderer, ServerDeps, make_app


class Kubelet:
    """A podresources/v1 ``List`` server on a unix socket (the kubelet's side of the API)."""

    def __init__(self, sock: Path, pods: list[api_pb2.PodResources]) -> None:
        response = api_pb2.ListPodResourcesResponse(pod_resources=pods)
        handler = grpc.method_handlers_generic_handler("v1.PodResourcesLister", {
            "List": grpc.unary_unary_rpc_method_handler(
                lambda _req, _ctx: response, request_deserializer=api_pb2.ListPodResourcesRequest.FromString,
                response_serializer=api_pb2.ListPodResourcesResponse.SerializeToString)})
        self.sock = sock
        self.server: Any = grpc.server(futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix://{sock}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait()
        self.sock.unlink(missing_ok=True)


def _pod(name: str, *ids: str) -> api_pb2.PodResources:
    return api_pb2.PodResources(name=name, namespace="serving", containers=[api_pb2.ContainerResources(
        name="server",
        devices=[api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=list(ids))])])


def _percentiles(fn: Callable[[], object], n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.99 * (n - 1))] * 1e3


def _plain_registry(text: str) -> CollectorRegistry:
    """The same series as plain prometheus_client Gauges (baseline A)."""
    registry = CollectorRegistry(auto_describe=False)
    for family in text_string_to_metric_families(text):
        by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for s in family.samples:
            by_name.setdefault(s.name, []).append((s.labels, s.value))
        for name, samples in by_name.items():
            labelnames = sorted({k for labels, _v in samples for k in labels})
            gauge = Gauge(name, family.documentation or name, labelnames, registry=registry)
            for labels, value in samples:
                child = gauge.labels(**{k: labels.get(k, "") for k in labelnames}) if labelnames else gauge
                child.set(value)
    return registry


def _kubelet_pods(backend: SimulatedBackend) -> list[api_pb2.PodResources]:
    pods = []
    for i, d in enumerate(backend.devices):
        # every third device is time-sliced between two pods
        pods.append(_pod(f"model-{i}-0", d.uuid + "::0" if i % 3 == 0 else d.uuid))
        if i % 3 == 0:
            pods.append(_pod(f"model-{i}-1", d.uuid + "::1"))
    return pods


async def _case(label: str, spec: str, scrapes: int, sock: Path) -> None:
    backend = simulated_from_spec(spec, "bench-node")
    kubelet = Kubelet(sock, _kubelet_pods(backend))
    client = PodResourcesClient(sock)
    collection = Collection(backend, "bench-node", pods=client)
    try:
        await collection.refresh_gpu()
        await collection.refresh_pods()
        renderer = Renderer(lambda: collection.latest, "prescale", time.time)
        text = renderer.body().decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        ours = _percentiles(renderer.body, scrapes)
        uncached = _percentiles(lambda: render(collection.latest, "prescale"), max(50, scrapes // 10))
        client_render = _percentiles(lambda: render_with_client(collection.latest, "prescale"),
                                     max(50, scrapes // 10))
        plain = _plain_registry(text)
        base_a = _percentiles(lambda: generate_latest(plain), max(50, scrapes // 10))

        def naive() -> bytes:
            reading = backend.read(time.time())
            attribution = client.attribution()
            snap = collection.latest.__class__(0, "bench-node", "simulated", reading=reading,
                                               attribution=attribution)
            return render_with_client(snap, "prescale")

        base_b = _percentiles(naive, max(50, scrapes // 20))
        print(f"{label} ({series} series), p50 / p99 in ms:\n"
              f"  scrape (cached snapshot)         {ours[0]:8.3f} / {ours[1]:8.3f}\n"
              f"  render of a new snapshot (loop)  {uncached[0]:8.3f} / {uncached[1]:8.3f}"
              f"   (same via generate_latest: {client_render[0]:.3f} / {client_render[1]:.3f})\n"
              f"  A generate_latest, plain Gauges  {base_a[0]:8.3f} / {base_a[1]:8.3f}"
              f"   -> scrape p99 / A p99 = {ours[1] / base_a[1]:.4f}\n"
              f"  B naive per-scrape collection    {base_b[0]:8.3f} / {base_b[1]:8.3f}"
              f"   -> B p99 / scrape p99 = {base_b[1] / ours[1]:.0f}x")
    finally:
        collection.close()
        kubelet.stop()


async def _http_scrapes(spec: str, interval_s: float, scrapes: int) -> tuple[int, float, float]:
    """End to end: the app with its loop running (and rendering) while a client scrapes."""
    collection = Collection(simulated_from_spec(spec, "bench-node"), "bench-node",
                            intervals=Intervals(gpu_s=interval_s))
    runner = web.AppRunner(make_app(ServerDeps(collection)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    times = []
    renders0 = collection.latest.seq
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(scrapes):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                times.append(time.perf_counter() - t0)
                await asyncio.sleep(0.005)
    finally:
        await runner.cleanup()
    times.sort()
    p99 = times[int(0.99 * (len(times) - 1))]
    return collection.latest.seq - renders0, statistics.median(times) * 1e3, p99 * 1e3


def _exporter_process(seconds: float) -> None:
    """Run the real ``prescale exporter`` (simulated 8 x H100, 1 s interval), scrape it every second,
    and read its CPU time and RSS from /proc over ``seconds`` after a 3 s warm-up."""
    port = 19499
    proc = subprocess.Popen([sys.executable, "-m", "prescale.cli", "exporter", "--backend", "simulated",
                             "--no-pod-attribution", "--port", str(port), "--interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        time.sleep(3.0)
        cpu0, t0 = cpu_s(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                resp.read()
            time.sleep(1.0)
        share = (cpu_s() - cpu0) / (time.monotonic() - t0)
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"exporter process (simulated 8 x H100, 1 s collection, 1 scrape/s, {seconds:.0f} s): "
          f"CPU {share * 100:.2f}% of one core; RSS {rss_kib / 1024:.0f} MiB")


async def main(scrapes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "kubelet.sock"
        await _case("8 x H100", "h100-80gb x8", scrapes, sock)
        await _case("64 x H100", "h100-80gb x64", scrapes, sock)
        await _case("8 x H100, 7 MIG each", "h100-80gb x8:mig=1g.10gb", scrapes, sock)
    for label, spec in (("8 x H100", "h100-80gb x8"), ("64 x H100", "h100-80gb x64")):
        snapshots, p50, p99 = await _http_scrapes(spec, 0.25, 400)
        print(f"HTTP /metrics while the loop collects and renders every 0.25 s, {label}: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({snapshots} snapshots rendered during the run)")
    _exporter_process(10.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=2000)
    asyncio.run(main(parser.parse_args().scrapes))
