"""Helpers shared by the serving tests (imported as ``serving_testlib``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from serving.app import ServeDeps, make_app
from serving.config import ServeConfig, from_mapping
from serving.lifecycle import Lifecycle
from serving.metrics import ServerMetrics
from serving.repository import Repository
from serving.runtimes import Model, Signature, TensorSpec

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parents[2]
needs_go = pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (scripts/setup.sh)")


def go_build(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the Go program in ``source`` (standard library only) into a fresh temporary dir."""
    out = tmp_path_factory.mktemp(source.name) / source.name
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=source, check=True)
    return out


def config(repo: Path, **overrides: Any) -> ServeConfig:
    return from_mapping({"model_repository": str(repo), "namespace": "ns", "pod": "pod-0",
                         "poll_interval_s": 0, **overrides})


def deps_for(cfg: ServeConfig, loader: Callable[[Path], Model] | None = None) -> ServeDeps:
    """Dependencies as the server builds them; ``loader`` replaces the configured model loading."""
    metrics = ServerMetrics(CollectorRegistry(), cfg.namespace, cfg.pod)
    return ServeDeps(cfg, Repository(cfg, metrics, loader), metrics, Lifecycle())


async def poll(path: str, client: Client, status: int = 200, timeout_s: float = 20.0) -> None:
    """GET ``path`` until it answers ``status`` (models load in a thread after start-up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        resp = await client.get(path)
        if resp.status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not answer {status} within {timeout_s} s")


async def start(deps: ServeDeps) -> Client:
    client: Client = TestClient(TestServer(make_app(deps)))
    await client.start_server()
    await poll("/ready", client)
    return client


class GatedModel:
    """Returns the first column; while ``gate`` is clear each call waits for it (max 10 s)."""

    runtime = "fake"
    signature = Signature(TensorSpec("input", "FP32", (4,)), TensorSpec("label", "FP32", ()))

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        self.calls += 1
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        return np.asarray(batch[:, 0])

    def close(self) -> None:
        self.gate.set()


async def poll_metric(client: Client, family: str, value: float, timeout_s: float = 5.0) -> None:
    """Scrape /metrics until ``family{...}`` reads ``value``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        text = await (await client.get("/metrics")).text()
        if any(line.startswith(f"{family}{{") and float(line.rsplit(" ", 1)[1]) == value
               for line in text.splitlines()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{family} never read {value}")


@dataclass
class Child:
    """A program under test serving on a loopback port, and the log lines it has written."""

    proc: asyncio.subprocess.Process
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    async for line in stream:
        into.append(line.decode())


@asynccontextmanager
async def child(argv: Sequence[str], timeout_s: float) -> AsyncIterator[Child]:
    """Run ``argv``, wait for its JSON "listening" log line (which names its port), keep
    collecting its stderr, and kill it at the end if it is still running."""
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    log: list[str] = []
    port = 0
    async with asyncio.timeout(timeout_s):
        while not port:
            line = (await proc.stderr.readline()).decode()
            assert line, f"{argv[0]} exited early: {''.join(log)}"
            log.append(line)
            if '"msg":"listening"' in line:
                port = int(json.loads(line)["port"])
    collector = asyncio.create_task(_collect(proc.stderr, log))
    try:
        yield Child(proc, port, log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await collector
