"""``prescale forecaster``: run the PredictiveAutoscaler controller.

Wiring only: flags -> :class:`ControllerConfig` -> Kube, Prometheus source, leader election,
the controller loop and a small aiohttp app serving ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from forecaster.controller.clock import SystemClock
from forecaster.controller.events import EventRecorder
from forecaster.controller.leader import LeaderElector
from forecaster.controller.loop import Controller
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Deps, Reconciler
from forecaster.kube import Kube, KubeError, Retrying
from forecaster.source import PrometheusSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControllerConfig:
    """Everything the controller process is told on its command line."""

    prometheus_url: str
    """Base URL of the Prometheus-compatible query API demand is read from."""
    kubeconfig: str | None = None
    """Kubeconfig file; None: the in-cluster service account."""
    namespace: str | None = None
    """Watch one namespace; None: all namespaces."""
    interval_s: float = 30.0
    """Reconcile period."""
    concurrency: int = 16
    """PredictiveAutoscalers reconciled at once."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a metrics endpoint inside a pod listens on the pod IP
    metrics_port: int = 9403
    leader_elect: bool = True
    lease_namespace: str = "default"
    lease_name: str = "prescale-forecaster"
    lease_s: float = 15.0
    renew_s: float = 5.0
    identity: str = ""
    """This replica's name in the Lease (default: hostname-pid)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale forecaster", description=__doc__.splitlines()[0])
    p.add_argument("--prometheus-url", required=True, help="Prometheus query API base URL")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster")
    p.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    p.add_argument("--interval", type=float, default=30.0, help="reconcile period, seconds (default 30)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--metrics-address", default="0.0.0.0:9403", help="host:port for /metrics and /healthz")
    p.add_argument("--no-leader-elect", action="store_true", help="act without a Lease (one replica only)")
    p.add_argument("--lease-namespace", default="default")
    p.add_argument("--lease-name", default="prescale-forecaster")
    p.add_argument("--lease-duration", type=float, default=15.0, help="seconds (default 15)")
    p.add_argument("--renew-period", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--identity", default="", help="name in the Lease (default hostname-pid)")
    return p


def config_from_args(argv: Sequence[str]) -> ControllerConfig:
    a = _parser().parse_args(list(argv))
    host, _, port = a.metrics_address.rpartition(":")
    if not port.isdigit() or a.interval <= 0 or a.concurrency < 1:
        raise ValueError(
            f"bad flags: --metrics-address={a.metrics_address!r} (host:port), "
            f"--interval={a.interval} (> 0), --concurrency={a.concurrency} (>= 1)"
        )
    if not 0 < a.renew_period < a.lease_duration:
        raise ValueError(
            f"--renew-period={a.renew_period} must be > 0 and < --lease-duration={a.lease_duration}"
        )
    return ControllerConfig(
        prometheus_url=a.prometheus_url,
        kubeconfig=a.kubeconfig,
        namespace=a.namespace,
        interval_s=a.interval,
        concurrency=a.concurrency,
        metrics_host=host or "0.0.0.0",  # noqa: S104
        metrics_port=int(port),
        leader_elect=not a.no_leader_elect,
        lease_namespace=a.lease_namespace,
        lease_name=a.lease_name,
        lease_s=a.lease_duration,
        renew_s=a.renew_period,
        identity=a.identity or f"{socket.gethostname()}-{os.getpid()}",
    )


METRICS_KEY = web.AppKey("metrics", CollectorRegistry)


def make_app(registry: CollectorRegistry) -> web.Application:
    """``/metrics`` (the explicit registry) and ``/healthz``."""
    app = web.Application()
    app[METRICS_KEY] = registry

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(request.app[METRICS_KEY])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def run(cfg: ControllerConfig, stop: asyncio.Event) -> None:
    """Run until ``stop``: leader election, watch, reconcile, metrics endpoint."""
    clock = SystemClock()
    metrics = ControllerMetrics()
    registry = CollectorRegistry()
    metrics.register(registry)
    runner = web.AppRunner(make_app(registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.metrics_host, cfg.metrics_port).start()
    try:
        async with Kube(cfg.kubeconfig) as raw, aiohttp.ClientSession() as session:
            kube = Retrying(raw)
            elector = (
                LeaderElector(
                    raw,
                    clock,
                    cfg.lease_namespace,
                    cfg.lease_name,
                    cfg.identity,
                    lease_s=cfg.lease_s,
                    renew_s=cfg.renew_s,
                )
                if cfg.leader_elect
                else None
            )
            allowed = elector.is_leader if elector is not None else (lambda: True)
            deps = Deps(
                kube,
                PrometheusSource(cfg.prometheus_url, session),
                clock,
                EventRecorder(kube, clock, allowed=allowed),
                interval_s=cfg.interval_s,
                allowed=allowed,
            )
            controller = Controller(
                Reconciler(deps),
                metrics,
                namespace=cfg.namespace,
                concurrency=cfg.concurrency,
                is_leader=allowed,
            )
            log.info(
                "controller started",
                extra={
                    "fields": {
                        "identity": cfg.identity,
                        "leader_elect": cfg.leader_elect,
                        "interval_s": cfg.interval_s,
                    }
                },
            )
            async with asyncio.TaskGroup() as tg:
                if elector is not None:
                    tg.create_task(elector.run(stop))
                tg.create_task(controller.run(stop))
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    try:
        cfg = config_from_args(argv)
    except ValueError as e:
        print(f"prescale forecaster: {e}", file=sys.stderr)
        return 2

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run(cfg, stop)

    failed: list[str] = []
    try:
        asyncio.run(_main())
    except* (KubeError, OSError) as group:
        failed.extend(str(e) for e in group.exceptions)
    if failed:
        print(f"prescale forecaster: {failed[0]}", file=sys.stderr)
        return 1
    return 0
