"""``prescale exporter``: parse flags, pick the backend, serve until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gpu_exporter.backend import (
    Backend,
    BackendUnavailable,
    LoadFn,
    constant_load,
    load_trace_csv,
    simulated_from_spec,
    sine_load,
)
from gpu_exporter.collection import Collection, Intervals, StaticTargets, TargetSource
from gpu_exporter.collector import NAMINGS
from gpu_exporter.nvml import NvmlBackend
from gpu_exporter.pods import DEFAULT_SOCKET, PodResourcesClient
from gpu_exporter.presets import PRESETS
from gpu_exporter.server import ServerDeps, make_app
from gpu_exporter.traffic import KubeletPods, Target

log = logging.getLogger(__name__)
DEFAULT_PORT = 9402
EXIT_USAGE = 2


class UsageError(Exception):
    """A flag value that cannot be used; the message names the flag and what is allowed."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale exporter", description=__doc__)
    p.add_argument("--address", default="0.0.0.0", help="listen address (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})")
    p.add_argument("--interval", type=float, default=1.0, help="GPU collection interval, seconds")
    p.add_argument("--backend", choices=("auto", "nvml", "simulated"), default="auto")
    p.add_argument("--simulated", default="h100-80gb x8",
                   help="simulated GPUs: PROFILE[xCOUNT][:mig=PROFILE] (default 'h100-80gb x8')")
    p.add_argument("--simulated-load", default="sine",
                   help="sine | constant:VALUE | trace:FILE.csv (columns timestamp_s,load)")
    p.add_argument("--naming", choices=NAMINGS, default="prescale")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname())
    p.add_argument("--kubelet-socket", type=Path, default=DEFAULT_SOCKET)
    p.add_argument("--no-pod-attribution", action="store_true", help="do not call PodResources")
    p.add_argument("--pods-interval", type=float, default=5.0)
    p.add_argument("--kubelet-pods-url", default="",
                   help="discover serving pods from the kubelet, e.g. https://$NODE_IP:10250/pods")
    p.add_argument("--kubelet-token", type=Path,
                   default=Path("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    p.add_argument("--target", action="append", default=[], metavar="NS/POD=URL[,PRESET]",
                   help="a serving pod to scrape (repeatable); presets: " + ", ".join(PRESETS))
    p.add_argument("--traffic-interval", type=float, default=5.0)
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="private key for --tls-cert (PEM)")
    return p


def parse_load(spec: str) -> LoadFn:
    kind, _, arg = spec.partition(":")
    if kind == "sine" and not arg:
        return sine_load()
    if kind == "constant":
        return constant_load(float(arg))
    if kind == "trace":
        return load_trace_csv(Path(arg))
    raise UsageError(f"--simulated-load {spec!r}: allowed sine | constant:VALUE | trace:FILE.csv")


def parse_target(spec: str) -> Target:
    name, _, rest = spec.partition("=")
    namespace, _, pod = name.partition("/")
    url, _, preset = rest.partition(",")
    preset = preset or "prescale"
    if not (namespace and pod and url) or preset not in PRESETS:
        allowed = ", ".join(PRESETS)
        raise UsageError(f"--target {spec!r}: expected NS/POD=URL[,PRESET] with PRESET in {allowed}")
    return Target(namespace, pod, "", url, preset)


def choose_backend(args: argparse.Namespace) -> Backend:
    """NVML when it initialises; with ``auto`` fall back to simulated and say so."""
    if args.backend == "simulated":
        return simulated_from_spec(args.simulated, args.node_name, parse_load(args.simulated_load))
    nvml = NvmlBackend()
    try:
        nvml.init(time.time())
    except BackendUnavailable as e:
        if args.backend == "nvml":
            raise UsageError(f"--backend nvml: {e}") from e
        log.warning("NVML unavailable, falling back to the SIMULATED backend (fake GPUs)",
                    extra={"fields": {"reason": str(e), "simulated": args.simulated}})
        return simulated_from_spec(args.simulated, args.node_name, parse_load(args.simulated_load))
    return nvml


def _ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


def build(args: argparse.Namespace) -> tuple[ServerDeps, ssl.SSLContext | None]:
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval}: must be > 0 seconds")
    targets: TargetSource | None = None
    if args.kubelet_pods_url:
        token = args.kubelet_token if args.kubelet_token.exists() else None
        targets = KubeletPods(args.kubelet_pods_url, token)
    elif args.target:
        targets = StaticTargets(tuple(parse_target(t) for t in args.target))
    tls = _ssl(args)
    pods = None if args.no_pod_attribution else PodResourcesClient(args.kubelet_socket)
    intervals = Intervals(gpu_s=args.interval, pods_s=args.pods_interval, traffic_s=args.traffic_interval)
    collection = Collection(choose_backend(args), args.node_name, pods=pods, targets=targets,
                            intervals=intervals)
    return ServerDeps(collection, args.naming, stale_after_s=max(10.0, 3 * args.interval)), tls


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        deps, tls = build(args)
    except (UsageError, ValueError, OSError) as e:
        print(f"prescale exporter: {e}", file=sys.stderr)
        return EXIT_USAGE
    log.info("exporter starting", extra={"fields": {
        "port": args.port, "backend": deps.collection.backend.name, "node": args.node_name}})
    web.run_app(make_app(deps), host=args.address, port=args.port, ssl_context=tls, print=None,
                access_log=None)
    return 0
