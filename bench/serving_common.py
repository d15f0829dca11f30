"""Shared by the serving benchmarks: the example repository and ``prescale serve`` processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from serving import example

PRESCALE = Path(sys.executable).with_name("prescale")
ROW = [6.7, 3.0, 5.2, 2.3]
BODY = json.dumps({"instances": [ROW]})
QUEUEPROXY_SRC = Path(__file__).resolve().parents[1] / "serving" / "queueproxy"


def example_repo() -> Path:
    return example.build(Path(tempfile.mkdtemp(prefix="prescale-bench-")) / "models", onnx=False)


@dataclass
class Replica:
    """A child process serving on a loopback port: ``prescale serve`` or the queue proxy."""

    proc: subprocess.Popen[bytes]
    port: int
    spawn_to_ready_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, pattern: str) -> float:
        m = re.search(rf"^{pattern} (\S+)$", self.metrics(), re.M)
        return float(m.group(1)) if m else float("nan")

    def kill(self) -> None:
        """For cleanup after a failure: no drain, just make sure nothing is left running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)


def _port(stderr: IO[bytes], deadline: float) -> int:
    while time.monotonic() < deadline:
        line = stderr.readline().decode()
        if not line:
            raise RuntimeError("the child process exited before listening")
        if '"msg":"listening"' in line:
            return int(json.loads(line)["port"])
    raise RuntimeError("the child process did not start listening")


def _wait_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.02)  # poll with a deadline
    raise RuntimeError(f"{url} did not become ready")


def cpu_split() -> tuple[list[str], list[str]]:
    """``taskset`` prefixes that give the server the first half of the CPUs and the load
    generator the rest, so the client's own work never delays the server it measures (and the
    other way round); empty on a single CPU or without taskset."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], []
    half = len(cpus) // 2
    return (["taskset", "-c", ",".join(map(str, cpus[:half]))],
            ["taskset", "-c", ",".join(map(str, cpus[half:]))])


def go_build(source: Path) -> Path:
    """Build the Go program in ``source`` (standard library only) into the cache."""
    out = Path.home() / ".cache" / "prescale" / "bench" / source.name
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=source, check=True)
    return out


def start_proxy(binary: Path, backend: str, *args: str, prefix: Sequence[str] = ()) -> Replica:
    """Start the queue proxy on a free loopback port in front of ``backend``."""
    return _spawn([*prefix, str(binary), "-listen", "127.0.0.1:0", "-backend", backend, *args],
                  time.monotonic() + 10, wait_ready=False)


def _spawn(argv: list[str], deadline: float, *, wait_ready: bool) -> Replica:
    """Run ``argv``, read its port from its JSON "listening" log line, and (``wait_ready``) wait
    until its /ready answers 200; killed again if any of that fails."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        port = _port(proc.stderr, deadline)
        if wait_ready:
            _wait_ready(f"http://127.0.0.1:{port}", deadline)
    except BaseException:
        proc.kill()
        raise
    # Keep reading the log so a full pipe never blocks the child.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return Replica(proc, port, time.monotonic() - t0)


def start(repo: Path, *args: str, timeout_s: float = 60, prefix: Sequence[str] = ()) -> Replica:
    """Start ``prescale serve`` on a free loopback port and wait until it is ready; ``prefix``
    runs it under another command (``taskset``)."""
    return _spawn([*prefix, str(PRESCALE), "--log-format", "json", "serve",
                   "--model-repository", str(repo), "--model", example.SKLEARN_MODEL,
                   "--host", "127.0.0.1", "--port", "0", *args],
                  time.monotonic() + timeout_s, wait_ready=True)
