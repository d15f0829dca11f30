"""The real parts for the on-real-data test: the bundled model server as a process on loopback,
the metrics adapter as a process registered with the test control plane's aggregator, the GPU
exporter in-process (so a test can lose a GPU or raise an XID on its simulated backend)."""

from __future__ import annotations

import asyncio
import importlib
import json
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from deploylib import ROOT

from prescale.stack import procs
from prescale.stack.adapter import LocalAdapter, run_adapter
from prescale.stack.cluster import Cluster

NAMESPACE = "prod"
DEPLOYMENT = "model-server"
POD = "model-server-7d9f8-abcde"
NODE = "gpu-node-0"
BUNDLED_RULES = ROOT / "adapter" / "presets" / "bundled.yaml"


def _module(name: str) -> Any:
    """Program modules by name (this helper does not type-check their internals)."""
    return importlib.import_module(name)


def wait_http(url: str, timeout_s: float, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready within {timeout_s}s")
        time.sleep(0.2)


def _prescale(*args: str) -> list[str]:
    return [sys.executable, "-m", "prescale.cli", *args]


@contextmanager
def serving(work: Path, batch_timeout_ms: float) -> Iterator[str]:
    """``prescale serve`` with the example models; a long batch timeout makes every request
    slower than the 0.5 s latency SLO (the induced latency fault)."""
    repo = work / "models"
    procs.start("make-example-repo", _prescale("serve", "--make-example-repo", str(repo)),
                work / "example.log").popen.wait(120)
    port = procs.free_port()
    p = procs.start("serving", _prescale(
        "serve", "--model-repository", str(repo), "--model", "iris", "--host", "127.0.0.1",
        "--port", str(port), "--max-batch-size", "64", "--batch-timeout-ms", str(batch_timeout_ms)),
        work / "serving.log",
        env={"POD_NAMESPACE": NAMESPACE, "POD_NAME": POD})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", 60)
        yield url
    finally:
        p.stop()


@contextmanager
def adapter(cluster: Cluster, work: Path, address: str, prometheus_url: str) -> Iterator[LocalAdapter]:
    """``prescale adapter`` with the bundled preset's rules, behind real APIServices on the
    private address (front-proxy authentication and SubjectAccessReviews as in a cluster)."""
    rules = yaml.safe_load(BUNDLED_RULES.read_text())
    with run_adapter(cluster, work / "adapter", address, prometheus_url, rules=rules) as running:
        wait_http(f"{running.url}/readyz", 30, verified(running.ca))
        yield running


def verified(ca: Path) -> ssl.SSLContext:
    """Trust the adapter's own CA (its certificate names the private address)."""
    return ssl.create_default_context(cafile=str(ca))


class Exporter:
    """gpu_exporter's app over a simulated backend, served from a thread with its own loop."""

    def __init__(self, serving_url: str) -> None:
        backend_mod, collection = _module("gpu_exporter.backend"), _module("gpu_exporter.collection")
        traffic = _module("gpu_exporter.traffic")
        self.backend = backend_mod.simulated_from_spec("h100-80gb x2", NODE, backend_mod.sine_load())
        target = traffic.Target(NAMESPACE, POD, DEPLOYMENT, f"{serving_url}/metrics", "prescale")
        self.collection = collection.Collection(
            self.backend, NODE, targets=collection.StaticTargets((target,)),
            intervals=collection.Intervals(gpu_s=0.5, traffic_s=1.0))
        self.port = procs.free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="exporter", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        web = _module("aiohttp.web")
        server = _module("gpu_exporter.server")
        runner = web.AppRunner(server.make_app(server.ServerDeps(self.collection)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Exporter:
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError("exporter did not start")
        wait_http(f"http://127.0.0.1:{self.port}/healthz", 30)
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(15)


class Traffic:
    """Inference requests from a few threads until stopped."""

    def __init__(self, serving_url: str, threads: int = 4) -> None:
        self.url = f"{serving_url}/v2/models/iris/infer"
        self.body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                            "data": [5.1, 3.5, 1.4, 0.2]}]}).encode()
        self.done = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        while not self.done.is_set():
            req = urllib.request.Request(self.url, data=self.body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    r.read()
                self.sent += 1
            except OSError:
                time.sleep(0.05)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(10)
