"""kube-state-metrics against the local control plane: the binary scripts/build-k8s.sh builds
from the Go module proxy (pinned as ``KSM_VERSION`` in scripts/versions.env) next to the
control-plane binaries, run as a plain process on loopback with the cluster's admin kubeconfig.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prescale.stack import procs
from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError
from prescale.stack.kube_api import http_ok

BINARY: Final = "kube-state-metrics"
DEFAULT_RESOURCES: Final = ("deployments", "horizontalpodautoscalers")


@dataclass(frozen=True)
class KubeStateMetrics:
    process: procs.Process
    target: str
    """``host:port`` of the object metrics (``/metrics``), for a scrape config."""
    telemetry_target: str
    """``host:port`` of kube-state-metrics' own metrics."""


def binary(cluster: Cluster) -> Path:
    path = cluster.config.bin_dir / BINARY
    if not path.is_file():
        raise StackError(f"{BINARY} is missing in {cluster.config.bin_dir}: run scripts/build-k8s.sh "
                         "(scripts/setup.sh does), which builds the version pinned in scripts/versions.env")
    return path


@contextlib.contextmanager
def run_kube_state_metrics(cluster: Cluster, work: Path, *, namespaces: Sequence[str] = (),
                           resources: Sequence[str] = DEFAULT_RESOURCES, host: str = "127.0.0.1",
                           timeout_s: float = 60.0) -> Iterator[KubeStateMetrics]:
    """Start kube-state-metrics for ``resources`` in ``namespaces`` (all when empty); ready once
    it has metrics of its own (``/readyz``) and reaches the apiserver (``/livez``)."""
    port, telemetry = procs.free_port(host), procs.free_port(host)
    argv = [str(binary(cluster)), f"--kubeconfig={cluster.kubeconfig}", f"--host={host}", f"--port={port}",
            f"--telemetry-host={host}", f"--telemetry-port={telemetry}", f"--resources={','.join(resources)}"]
    if namespaces:
        argv.append(f"--namespaces={','.join(namespaces)}")
    proc = procs.start("kube-state-metrics", argv, work / "kube-state-metrics.log")
    try:
        proc.wait_ready(lambda: http_ok(f"http://{host}:{telemetry}/readyz") and http_ok(f"http://{host}:{port}/livez"),
                        timeout_s, "ready (/readyz on the telemetry port, /livez)")
        yield KubeStateMetrics(proc, f"{host}:{port}", f"{host}:{telemetry}")
    finally:
        proc.stop()
