"""A real Kubernetes control plane on this machine: etcd, kube-apiserver (aggregation layer
on), kube-controller-manager (real HPA controller), kube-scheduler and KWOK for nodes and pods.

Call :func:`netns.enter_private` first: the apiserver advertises, and the aggregator routes
to, a private address that only exists inside that namespace.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from prescale.stack import kube_api, kwok_stages, procs
from prescale.stack.errors import StackError
from prescale.stack.pki import ClusterPki, make_cluster_pki
from prescale.stack.polling import wait_for

K8S_VERSION_FILE: Final = Path(__file__).resolve().parents[2] / "scripts" / "versions.env"
BINARIES: Final = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
SERVICE_CIDR: Final = "10.96.0.0/16"


def pinned_version() -> str:
    for line in K8S_VERSION_FILE.read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise StackError(f"{K8S_VERSION_FILE}: no K8S_VERSION line")


def default_bin_dir() -> Path:
    cache = os.environ.get("PRESCALE_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prescale")
    return Path(cache) / "k8s" / pinned_version() / "bin"


@dataclass(frozen=True)
class ClusterConfig:
    """How the local control plane is started."""

    work_dir: Path
    """Certificates, data, logs and the kubeconfig go here."""
    bin_dir: Path = field(default_factory=default_bin_dir)
    """Where scripts/build-k8s.sh put the binaries."""
    address: str = "10.200.0.1"
    """The private address the apiserver advertises (inside the network namespace)."""
    apiserver_port: int = 6443
    pod_ready_delay_s: float = 2.0
    """Default time from pod start to Ready; per pod: annotation pod-ready.stage.kwok.x-k8s.io/delay."""
    gpu_nodes: int = 2
    gpus_per_node: int = 8
    hpa_sync_period_s: int = 5
    """kube-controller-manager --horizontal-pod-autoscaler-sync-period (upstream default 15)."""
    hpa_downscale_stabilization_s: int = 0
    """--horizontal-pod-autoscaler-downscale-stabilization (upstream default 300)."""
    start_timeout_s: float = 180.0


@dataclass
class Cluster:
    """A started control plane. Use as a context manager or call :meth:`stop`."""

    config: ClusterConfig
    pki: ClusterPki
    kubeconfig: Path
    server: str
    processes: list[procs.Process] = field(default_factory=list)

    def kubectl(self, *args: str, stdin: str | None = None, timeout_s: float = 60.0) -> str:
        """Run the cluster's own kubectl; raise with its stderr on failure."""
        argv = [str(self.config.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, manifest: str) -> str:
        return self.kubectl("apply", "-f", "-", stdin=manifest)

    @functools.cached_property
    def _admin_tls(self) -> ssl.SSLContext:
        return kube_api.admin_context(self.pki)

    def get(self, path: str) -> Any:
        """GET an API path as the admin (fast: no kubectl process), parsed JSON."""
        return kube_api.get_json(f"{self.server}{path}", self._admin_tls)

    def apply_crds(self, manifest: str, timeout_s: float = 30.0) -> list[str]:
        """Apply ``manifest`` and wait until every CustomResourceDefinition in it is
        Established; returns their names."""
        self.apply(manifest)
        names = [str(d["metadata"]["name"]) for d in yaml.safe_load_all(manifest)
                 if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
        for name in names:
            self.wait_established(name, timeout_s)
        return names

    def wait_established(self, crd: str, timeout_s: float = 30.0) -> None:
        """Wait until the CustomResourceDefinition ``crd`` is Established. ``kubectl wait``
        fails at once instead while a CRD just created has no conditions yet."""

        def established() -> bool:
            doc = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
            return any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in (doc.get("status") or {}).get("conditions") or [])

        wait_for(established, timeout_s, f"CRD {crd} Established", self.logs)

    def logs(self) -> str:
        """The last lines of every component's log, for a failed test."""
        return "\n".join(f"--- {p.name} ({p.log_path})\n{procs.log_tail(p.log_path, 15)}"
                         for p in self.processes)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()

    def _apiserver_index(self) -> int:
        for i, p in enumerate(self.processes):
            if p.name == "kube-apiserver":
                return i
        raise StackError("this cluster has no kube-apiserver process")

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, as a restart would): its clients see their
        connections close and new ones refused until :meth:`start_apiserver`."""
        self.processes[self._apiserver_index()].stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver again with the same arguments; return once it is ready."""
        i = self._apiserver_index()
        old = self.processes[i]
        if old.alive():
            return
        p = procs.start(old.name, old.argv, old.log_path)
        self.processes[i] = p
        p.wait_ready(lambda: kube_api.http_ok(f"{self.server}/readyz", self._admin_tls),
                     self.config.start_timeout_s, "ready again (/readyz)")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def missing_binaries(bin_dir: Path) -> list[str]:
    return [b for b in BINARIES if not (bin_dir / b).is_file()]


def _write_kubeconfig(path: Path, server: str, pki: ClusterPki) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "prescale-local",
        "clusters": [{"name": "prescale-local", "cluster": {
            "server": server, "certificate-authority": str(pki.ca.cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki.admin.cert), "client-key": str(pki.admin.key)}}],
        "contexts": [{"name": "prescale-local", "context": {"cluster": "prescale-local", "user": "admin"}}],
    }
    path.write_text(yaml.safe_dump(doc))


def gpu_node_manifest(name: str, gpus: int, pool: str = "gpu-default") -> dict[str, object]:
    """A KWOK node with ``gpus`` nvidia.com/gpu, tainted like a real GPU pool."""
    cap = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok",
                       "nvidia.com/gpu.present": "true", "prescale.dev/node-pool": pool},
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"capacity": cap, "allocatable": cap},
    }


def _start_etcd(cfg: ClusterConfig, logs: Path) -> tuple[procs.Process, str]:
    client, peer = procs.free_port(), procs.free_port()
    url = f"http://127.0.0.1:{client}"
    p = procs.start("etcd", [
        str(cfg.bin_dir / "etcd"), "--name=local", f"--data-dir={cfg.work_dir / 'etcd'}",
        "--unsafe-no-fsync", f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=local=http://127.0.0.1:{peer}", "--log-level=warn",
    ], logs / "etcd.log")
    p.wait_ready(lambda: kube_api.http_ok(f"{url}/health"), cfg.start_timeout_s, "healthy")
    return p, url


def _start_apiserver(cfg: ClusterConfig, pki: ClusterPki, etcd_url: str, logs: Path) -> procs.Process:
    p = procs.start("kube-apiserver", [
        str(cfg.bin_dir / "kube-apiserver"),
        f"--advertise-address={cfg.address}", "--bind-address=0.0.0.0",
        f"--secure-port={cfg.apiserver_port}", f"--etcd-servers={etcd_url}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}", "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        # The aggregation layer: the front-proxy CA and the client certificate the
        # aggregator presents to extension API servers, and endpoint routing.
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        "--enable-aggregator-routing=true",
        "--profiling=false", "--v=1",
    ], logs / "kube-apiserver.log")
    ctx = kube_api.admin_context(pki)
    p.wait_ready(lambda: kube_api.http_ok(f"https://127.0.0.1:{cfg.apiserver_port}/readyz", ctx),
                 cfg.start_timeout_s, "ready (/readyz)")
    return p


def _start_controllers(cfg: ClusterConfig, pki: ClusterPki, kubeconfig: Path,
                       logs: Path) -> list[procs.Process]:
    k = str(kubeconfig)
    kcm_port, sched_port = procs.free_port(), procs.free_port()
    kcm = procs.start("kube-controller-manager", [
        str(cfg.bin_dir / "kube-controller-manager"), f"--kubeconfig={k}",
        f"--authentication-kubeconfig={k}", f"--authorization-kubeconfig={k}",
        "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca.cert}", f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}", f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--horizontal-pod-autoscaler-sync-period={cfg.hpa_sync_period_s}s",
        f"--horizontal-pod-autoscaler-downscale-stabilization={cfg.hpa_downscale_stabilization_s}s",
        "--profiling=false", "--v=1",
    ], logs / "kube-controller-manager.log")
    sched = procs.start("kube-scheduler", [
        str(cfg.bin_dir / "kube-scheduler"), f"--kubeconfig={k}",
        f"--authentication-kubeconfig={k}", f"--authorization-kubeconfig={k}",
        "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false",
        "--profiling=false",
    ], logs / "kube-scheduler.log")
    stages = cfg.work_dir / "kwok-stages.yaml"
    kwok_stages.write_stages(stages, cfg.bin_dir.parent / "kwok-stages", cfg.pod_ready_delay_s)
    kwok = procs.start("kwok", [
        str(cfg.bin_dir / "kwok"), f"--kubeconfig={k}", f"--config={stages}",
        "--manage-all-nodes=true", "--node-lease-duration-seconds=40", "--cidr=10.0.0.0/16",
    ], logs / "kwok.log")
    insecure = kube_api.insecure_context()
    kcm.wait_ready(lambda: kube_api.http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure),
                   cfg.start_timeout_s, "healthy")
    sched.wait_ready(lambda: kube_api.http_ok(f"https://127.0.0.1:{sched_port}/healthz", insecure),
                     cfg.start_timeout_s, "healthy")
    return [kcm, sched, kwok]


def _nodes_schedulable(cluster: Cluster, names: set[str]) -> bool:
    items = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    ready = set()
    for n in items:
        conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
        taints = {t["key"] for t in n.get("spec", {}).get("taints", []) or []}
        if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
            ready.add(n["metadata"]["name"])
    return names <= ready


def _default_sa_exists(cluster: Cluster) -> bool:
    try:
        cluster.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name")
    except StackError:
        return False
    return True


def start(cfg: ClusterConfig) -> Cluster:
    """Start every component, create the GPU nodes, and return once pods can be scheduled."""
    missing = missing_binaries(cfg.bin_dir)
    if missing:
        raise StackError(f"control-plane binaries missing in {cfg.bin_dir}: {', '.join(missing)}; "
                         "run scripts/build-k8s.sh (or make test) to build them")
    logs = cfg.work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pki = make_cluster_pki(cfg.work_dir / "pki", cfg.address)
    kubeconfig = cfg.work_dir / "kubeconfig"
    server = f"https://127.0.0.1:{cfg.apiserver_port}"
    _write_kubeconfig(kubeconfig, server, pki)
    cluster = Cluster(config=cfg, pki=pki, kubeconfig=kubeconfig, server=server)
    try:
        etcd, etcd_url = _start_etcd(cfg, logs)
        cluster.processes.append(etcd)
        cluster.processes.append(_start_apiserver(cfg, pki, etcd_url, logs))
        cluster.processes.extend(_start_controllers(cfg, pki, kubeconfig, logs))
        names = {f"gpu-node-{i}" for i in range(cfg.gpu_nodes)}
        docs = [gpu_node_manifest(n, cfg.gpus_per_node) for n in sorted(names)]
        cluster.apply(yaml.safe_dump_all(docs))
        wait_for(lambda: _nodes_schedulable(cluster, names), cfg.start_timeout_s,
                 "GPU nodes Ready and untainted", cluster.logs)
        wait_for(lambda: _default_sa_exists(cluster), cfg.start_timeout_s,
                 "default service account", cluster.logs)
    except BaseException:
        cluster.stop()
        raise
    return cluster
