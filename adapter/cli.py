"""``prescale adapter``: serve the external and custom metrics APIs until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from adapter import rules as rules_mod
from adapter.auth import RequestHeaderConfig, SubjectAccessReviewer
from adapter.metrics import AdapterMetrics
from adapter.provider import MetricsProvider
from adapter.providers.composite import CompositeProvider
from adapter.providers.prometheus import PodLister, PrometheusConfig, PrometheusProvider
from adapter.providers.scrape import ScrapeConfig, ScrapeProvider, ScrapeTarget
from adapter.server import start_adapter

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale adapter", description=__doc__)
    p.add_argument("--bind-address", default="0.0.0.0", help="listen address (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (default 6443)")
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate (default: self-signed)")
    p.add_argument("--tls-private-key-file", type=Path, help="serving key")
    p.add_argument("--rules", type=Path, action="append", default=[], help="rule file (repeatable)")
    p.add_argument(
        "--preset",
        action="append",
        default=[],
        choices=rules_mod.PRESETS,
        help="bundled rule preset (repeatable)",
    )
    p.add_argument("--prometheus-url", default="http://prometheus:9090")
    p.add_argument("--prometheus-timeout", type=float, default=5.0, help="seconds per query")
    p.add_argument("--prometheus-token-file", type=Path, help="bearer token file")
    p.add_argument("--prometheus-basic-auth-file", type=Path, help="file with 'user:password'")
    p.add_argument("--prometheus-tenant", help="X-Scope-OrgID value (Mimir/Cortex/Thanos)")
    p.add_argument("--prometheus-ca-file", help="CA bundle for an HTTPS Prometheus")
    p.add_argument("--prometheus-insecure-skip-verify", action="store_true")
    p.add_argument(
        "--requestheader-client-ca-file",
        type=Path,
        help="front-proxy CA file (default: read kube-system/extension-apiserver-authentication)",
    )
    p.add_argument(
        "--requestheader-allowed-names",
        default="",
        help="comma-separated allowed front-proxy CNs (with --requestheader-client-ca-file)",
    )
    p.add_argument("--kubeconfig", help="kubeconfig for SubjectAccessReviews (default: in-cluster)")
    p.add_argument("--request-timeout", type=float, default=10.0, help="seconds per metric request")
    p.add_argument(
        "--response-cache-seconds",
        type=float,
        default=1.0,
        help="reuse an encoded answer for identical requests this long (0: off)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without authentication or authorization (local development only)",
    )
    return p


def _prom_config(ns: argparse.Namespace) -> PrometheusConfig:
    token = ns.prometheus_token_file.read_text().strip() if ns.prometheus_token_file else None
    basic = None
    if ns.prometheus_basic_auth_file:
        user, _, password = ns.prometheus_basic_auth_file.read_text().strip().partition(":")
        basic = (user, password)
    return PrometheusConfig(
        ns.prometheus_url,
        ns.prometheus_timeout,
        token,
        basic,
        ns.prometheus_tenant,
        ns.prometheus_ca_file,
        ns.prometheus_insecure_skip_verify,
    )


def _load_rules(ns: argparse.Namespace) -> tuple[rules_mod.Rule, ...]:
    loaded: list[rules_mod.Rule] = []
    for name in ns.preset or ([] if ns.rules else ["bundled", "forecast"]):
        loaded += rules_mod.load_preset(name)
    for path in ns.rules:
        loaded += rules_mod.load_file(path)
    return rules_mod.from_mapping({"rules": [r.__dict__ for r in loaded]}, "combined rules")


async def _auth(
    ns: argparse.Namespace, stack: AsyncExitStack
) -> tuple[RequestHeaderConfig | None, SubjectAccessReviewer | None, PodLister | None]:
    if ns.insecure_no_auth:
        log.warning("serving WITHOUT authentication (--insecure-no-auth)")
        return None, None, None
    from adapter import kube  # noqa: PLC0415 - only when talking to a cluster

    k = await stack.enter_async_context(kube.Kube(ns.kubeconfig))
    if ns.requestheader_client_ca_file:
        names = tuple(n for n in ns.requestheader_allowed_names.split(",") if n)
        header = RequestHeaderConfig(ns.requestheader_client_ca_file.read_bytes(), names)
    else:
        header = await kube.read_request_header_config(k)
    return header, kube.KubeReviewer(k), kube.KubePodLister(k)


def parse_target(spec: str) -> ScrapeTarget:
    """``'URL label=value ...'`` -> ``ScrapeTarget``."""
    url, *pairs = spec.split()
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--scrape-target: {pair!r} is not label=value")
        labels[key] = value
    return ScrapeTarget(url, labels)


async def _providers(
    ns: argparse.Namespace, stack: AsyncExitStack, pods: PodLister | None, metrics: AdapterMetrics
) -> MetricsProvider:
    """The configured sources; they report upstream errors and latency into ``metrics``."""
    rules = _load_rules(ns)
    providers: list[MetricsProvider] = []
    if any(r.source == "prometheus" for r in rules):
        providers.append(
            await stack.enter_async_context(
                PrometheusProvider(_prom_config(ns), rules, pods=pods, metrics=metrics)
            )
        )
    if any(r.source == "scrape" for r in rules):
        config = ScrapeConfig([parse_target(t) for t in ns.scrape_target], interval_s=ns.scrape_interval)
        scrape = await stack.enter_async_context(ScrapeProvider(config, rules, metrics=metrics))
        scrape.start_loop()
        providers.append(scrape)
    return CompositeProvider(providers)


async def _run(ns: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        header, reviewer, pods = await _auth(ns, stack)
        metrics = AdapterMetrics()
        provider = await _providers(ns, stack, pods, metrics)
        running = await start_adapter(
            provider,
            metrics=metrics,
            host=ns.bind_address,
            port=ns.secure_port,
            cert_file=ns.tls_cert_file,
            key_file=ns.tls_private_key_file,
            request_header=header,
            reviewer=reviewer,
            request_timeout_s=ns.request_timeout,
            response_cache_s=ns.response_cache_seconds,
        )
        try:
            await stop.wait()
        finally:
            await running.stop()
    return 0


def main(argv: list[str]) -> int:
    """Entry point for ``prescale adapter``; errors print one line and exit non-zero."""
    ns = _parser().parse_args(argv)
    if (ns.tls_cert_file is None) != (ns.tls_private_key_file is None):
        print("prescale adapter: --tls-cert-file and --tls-private-key-file go together", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(ns))
    except (rules_mod.RuleError, OSError, ValueError) as e:
        print(f"prescale adapter: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # kube.KubeError and friends: one line, no traceback
        print(f"prescale adapter: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
