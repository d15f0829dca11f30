"""A real Prometheus on a free loopback port with backfilled data (until the shared fixture lands)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def openmetrics(
    series: Sequence[tuple[str, dict[str, str], float]], *, end_s: float, span_s: int = 240, step_s: int = 15
) -> str:
    """Gauge samples of constant value from ``end_s - span_s`` to ``end_s`` (OpenMetrics text)."""
    lines, typed = [], set()
    for name, labels, _ in series:
        if name not in typed:
            lines.append(f"# TYPE {name} gauge")
            typed.add(name)
        body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        value = next(v for n, ls, v in series if n == name and ls == labels)
        for t in range(int(end_s) - span_s, int(end_s) + 1, step_s):
            lines.append(f"{name}{{{body}}} {value} {t}")
    return "\n".join(lines) + "\n# EOF\n"


@contextmanager
def prometheus(tmp: Path, data: str, *, deadline_s: float = 20.0) -> Iterator[str]:
    """Backfill ``data`` (OpenMetrics) into a fresh TSDB, start Prometheus, yield its URL."""
    assert PROMETHEUS
    assert PROMTOOL
    storage = tmp / "tsdb"
    storage.mkdir()
    (tmp / "data.om").write_text(data)
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(tmp / "data.om"), str(storage)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, deadline_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("prometheus not ready before the deadline")
