"""The project's own adapter (``prescale adapter``) as a real process behind the local
aggregator: a CA and serving certificate of its own, a rules file, and one APIService per
metrics API group, removed again when the context ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from prescale.stack import aggregation, pki, procs
from prescale.stack.cluster import Cluster

EXTERNAL: Final = ("external.metrics.k8s.io", "v1beta1")
CUSTOM: Final = ("custom.metrics.k8s.io", "v1beta2")
SERVICE: Final = "prescale-adapter"
NAMESPACE: Final = "kube-system"


@dataclass(frozen=True)
class LocalAdapter:
    process: procs.Process
    url: str
    """``https://<private address>:<port>``: the adapter itself, bypassing the aggregator."""
    ca: Path
    """The CA that signed its serving certificate (the APIServices' caBundle)."""
    backends: tuple[aggregation.ApiServiceBackend, ...]


@contextlib.contextmanager
def run_adapter(cluster: Cluster, work: Path, address: str, prometheus_url: str, *,
                rules: Mapping[str, Any], groups: tuple[tuple[str, str], ...] = (EXTERNAL, CUSTOM),
                log: Path | None = None) -> Iterator[LocalAdapter]:
    """Start ``prescale adapter`` on ``address`` with ``rules`` and register it for ``groups``."""
    work.mkdir(parents=True, exist_ok=True)
    ca = pki.KeyPair(work / "adapter-ca.crt", work / "adapter-ca.key")
    serving = pki.KeyPair(work / "adapter.crt", work / "adapter.key")
    pki.make_ca(ca, "prescale-local-adapter-ca")
    pki.make_leaf(serving, ca, SERVICE, server=True, dns=(f"{SERVICE}.{NAMESPACE}.svc",), ips=(address,))
    rules_file = work / "adapter-rules.yaml"
    rules_file.write_text(yaml.safe_dump(dict(rules)))
    port = procs.free_port(address)
    proc = procs.start("prescale-adapter", procs.prescale_command(
        "adapter", f"--bind-address={address}", f"--secure-port={port}",
        f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
        f"--rules={rules_file}", f"--prometheus-url={prometheus_url}", f"--kubeconfig={cluster.kubeconfig}",
    ), log or work / "adapter.log")
    backends = tuple(aggregation.ApiServiceBackend(
        group=group, version=version, service=SERVICE, namespace=NAMESPACE, address=address, port=port,
        ca_pem=ca.cert.read_bytes()) for group, version in groups)
    try:
        for b in backends:
            aggregation.register(cluster, b)
        yield LocalAdapter(proc, f"https://{address}:{port}", ca.cert, backends)
    finally:
        try:
            for b in backends:
                aggregation.unregister(cluster, b)
        finally:
            proc.stop()
