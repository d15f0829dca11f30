"""A minimal ``external.metrics.k8s.io`` server registered with the real aggregator: the HPA
baseline of the controller's cluster tests reads the same demand the controller forecasts."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from controller_cluster_lib import wait_for

from prescale.stack import pki, procs
from prescale.stack.cluster import Cluster


class _ExternalMetrics(BaseHTTPRequestHandler):
    value: Callable[[], float] = staticmethod(lambda: 0.0)
    GV = "/apis/external.metrics.k8s.io/v1beta1"

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == self.GV:
            doc: dict[str, Any] = {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "external.metrics.k8s.io/v1beta1",
                "resources": [
                    {
                        "name": "*",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                ],
            }
        elif path.startswith(self.GV + "/namespaces/"):
            metric = path.rsplit("/", 1)[-1]
            milli = round(type(self).value() * 1000)
            doc = {
                "kind": "ExternalMetricValueList",
                "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": [
                    {
                        "metricName": metric,
                        "metricLabels": {},
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "value": f"{milli}m",
                    }
                ],
            }
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def external_metrics_api(
    cluster: Cluster, namespace: str, address: str, work: Path, value: Callable[[], float]
) -> Iterator[None]:
    """A minimal ``external.metrics.k8s.io`` server registered with the aggregator (test only)."""
    ca, leaf = (
        pki.KeyPair(work / "em-ca.crt", work / "em-ca.key"),
        pki.KeyPair(work / "em.crt", work / "em.key"),
    )
    pki.make_ca(ca, "em-ca")
    pki.make_leaf(leaf, ca, "em", server=True, dns=(f"em.{namespace}.svc",), ips=(address,))
    handler = type("Handler", (_ExternalMetrics,), {"value": staticmethod(value)})
    port = procs.free_port(address)
    server = ThreadingHTTPServer((address, port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "em", "namespace": namespace},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "em-1",
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": "em",
                    "endpointslice.kubernetes.io/managed-by": "prescale-tests",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "caBundle": base64.b64encode(ca.cert.read_bytes()).decode(),
                "service": {"name": "em", "namespace": namespace, "port": 443},
            },
        },
    ]
    try:
        cluster.apply(yaml.safe_dump_all(objects))

        def available() -> bool:
            doc = json.loads(
                cluster.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json")
            )
            return any(
                c["type"] == "Available" and c["status"] == "True"
                for c in doc.get("status", {}).get("conditions", [])
            )

        wait_for(available, 60, "external metrics APIService Available")
        yield
    finally:
        cluster.kubectl("delete", "apiservice", "v1beta1.external.metrics.k8s.io", "--ignore-not-found")
        server.shutdown()
        server.server_close()
        thread.join(5)
