"""``prescale serve``: run the model server until SIGTERM, then drain and exit.

On SIGTERM (or SIGINT) readiness turns false at once; the server keeps accepting for
``drain_delay_s`` so balancers stop sending, then stops listening, answers every in-flight
and queued request, and exits 0 within ``grace_period_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from serving import example
from serving.app import ServeDeps, make_app
from serving.config import ServeConfig, from_mapping, load_file
from serving.errors import ConfigError
from serving.lifecycle import Lifecycle
from serving.metrics import ServerMetrics
from serving.repository import Repository

log = logging.getLogger(__name__)
EXIT_CONFIG = 2
GC_GEN0_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default: 700). Each request
allocates hundreds of short-lived objects; at the default, collections run thousands of times
a second under load and walk every pending request and connection, and that time lands on the
event loop. The measured effect is in docs/serving.md ("Garbage collection")."""


def tune_gc() -> None:
    """Freeze what start-up allocated (modules, configuration) out of the collector's reach, and
    collect the young generation less often. Called once, by the server process only."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale serve", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="YAML file with the settings below (flags override it)")
    p.add_argument("--model-repository", help="root of <model>/<version>/ directories")
    p.add_argument("--model", action="append", dest="models", help="serve only this model (repeatable)")
    p.add_argument("--latest", type=int, help="serve the N latest versions (default 1)")
    p.add_argument("--versions", help="serve exactly these versions, e.g. 1,3")
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="0 picks a free port (it is logged)")
    p.add_argument("--max-batch-size", type=int, help="rows per model call; 1 disables batching")
    p.add_argument("--batch-timeout-ms", type=float, help="wait for more requests after the first")
    p.add_argument("--workers", type=int, help="batches computed in parallel")
    p.add_argument("--executor", help="where the model runs: thread (default) or process "
                   "(a model process per worker, for GIL-bound models such as scikit-learn)")
    p.add_argument("--max-queue-size", type=int, help="queued requests before 429")
    p.add_argument("--request-timeout-s", type=float, help="per-request deadline")
    p.add_argument("--max-wait-ms", type=float, help="429 when the expected wait (event-loop lag + "
                   "queue) exceeds this; 0 (default) turns it off")
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--poll-interval-s", type=float, help="rescan for new versions; 0 disables")
    p.add_argument("--drain-delay-s", type=float, help="keep accepting this long after SIGTERM")
    p.add_argument("--grace-period-s", type=float, help="SIGTERM to exit, at most")
    p.add_argument("--make-example-repo", metavar="DIR", type=Path,
                   help="write the example iris models to DIR and exit")
    return p


def _mapping(ns: argparse.Namespace) -> dict[str, Any]:
    """The config file's mapping with the given flags laid over it."""
    data: dict[str, Any] = load_file(ns.config) if ns.config else {}
    top = ("model_repository", "models", "host", "port", "max_body_bytes", "poll_interval_s",
           "drain_delay_s", "grace_period_s")
    data.update({k: getattr(ns, k) for k in top if getattr(ns, k) is not None})
    batching = dict(data.get("batching") or {})
    for key in ("max_batch_size", "workers", "executor", "max_queue_size", "request_timeout_s"):
        if getattr(ns, key) is not None:
            batching[key] = getattr(ns, key)
    if ns.batch_timeout_ms is not None:
        batching["batch_timeout_s"] = ns.batch_timeout_ms / 1000
    if ns.max_wait_ms is not None:
        batching["max_wait_s"] = ns.max_wait_ms / 1000
    if batching:
        data["batching"] = batching
    if ns.latest is not None:
        data["version_policy"] = {"latest": ns.latest}
    if ns.versions is not None:
        try:
            data["version_policy"] = {"versions": [int(v) for v in ns.versions.split(",")]}
        except ValueError:
            raise ConfigError(f"--versions: {ns.versions!r} is not a comma-separated list of integers"
                              ) from None
    data.setdefault("namespace", os.environ.get("POD_NAMESPACE", ""))
    data.setdefault("pod", os.environ.get("POD_NAME", socket.gethostname()))
    return data


def parse_config(argv: list[str]) -> ServeConfig:
    """The validated configuration for a command line (raises ConfigError)."""
    ns = _parser().parse_args(argv)
    return from_mapping(_mapping(ns))


def build_deps(cfg: ServeConfig) -> ServeDeps:
    metrics = ServerMetrics(CollectorRegistry(), cfg.namespace, cfg.pod)
    return ServeDeps(cfg, Repository(cfg, metrics), metrics, Lifecycle())


def shutdown_timeout_s(cfg: ServeConfig) -> float:
    """Time left for in-flight requests after the drain delay, keeping a margin for exit."""
    margin = min(1.0, 0.2 * cfg.grace_period_s)
    return max(0.1, cfg.grace_period_s - cfg.drain_delay_s - margin)


async def serve(cfg: ServeConfig) -> None:
    deps = build_deps(cfg)
    runner = web.AppRunner(make_app(deps), access_log=None, shutdown_timeout=shutdown_timeout_s(cfg))
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    port = runner.addresses[0][1]
    log.info("listening", extra={"fields": {"host": cfg.host, "port": port}})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    t0 = time.monotonic()
    deps.lifecycle.start_draining(deps.metrics)
    if cfg.drain_delay_s > 0:
        await asyncio.sleep(cfg.drain_delay_s)  # the balancer's notice period, still serving
    await runner.cleanup()
    log.info("drained, exiting", extra={"fields": {"drain_s": round(time.monotonic() - t0, 3)}})


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    if ns.make_example_repo is not None:
        example.build(ns.make_example_repo)
        print(f"example repository written to {ns.make_example_repo}")
        return 0
    try:
        cfg = from_mapping(_mapping(ns))
    except ConfigError as e:
        print(f"prescale serve: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if not cfg.model_repository.is_dir():
        print(f"prescale serve: model_repository: {cfg.model_repository} is not a directory", file=sys.stderr)
        return EXIT_CONFIG
    tune_gc()
    try:
        asyncio.run(serve(cfg))
    except OSError as e:
        print(f"prescale serve: cannot listen on {cfg.host}:{cfg.port}: {e}", file=sys.stderr)
        return 1
    return 0
