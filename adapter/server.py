"""Start and stop the adapter in-process: what the CLI, the benchmarks and the tests use.

``start_adapter`` builds the app, listens on ``host:port`` (0 picks a free port) over TLS and
returns a ``RunningAdapter`` whose ``stop()`` closes it. With ``request_header`` and
``reviewer`` it authenticates the aggregator and authorizes each request; without them it
serves anyone (local development and benchmarks only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from adapter.api.routes import Deps, make_app
from adapter.api.security import Security
from adapter.auth import (
    CachingAuthorizer,
    FrontProxyAuthenticator,
    RequestHeaderConfig,
    SubjectAccessReviewer,
)
from adapter.metrics import AdapterMetrics
from adapter.provider import MetricsProvider
from adapter.tls import CertReloader, self_signed, server_context

log = logging.getLogger(__name__)


@dataclass
class RunningAdapter:
    """A listening adapter; ``url`` is ``https://host:port`` (``http`` when TLS is off)."""

    url: str
    port: int
    app: web.Application
    metrics: AdapterMetrics
    cert_file: Path | None
    _runner: web.AppRunner
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    reloader: CertReloader | None = None
    _reload_task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def stop(self) -> None:
        """Stop listening and release everything ``start_adapter`` created."""
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def build_security(
    request_header: RequestHeaderConfig,
    reviewer: SubjectAccessReviewer,
    *,
    sar_ttl_s: float = 10.0,
    sar_max_entries: int = 10_000,
) -> Security:
    """Front-proxy authenticator plus a cached SubjectAccessReview authorizer."""
    return Security(
        FrontProxyAuthenticator(request_header),
        CachingAuthorizer(reviewer, ttl_s=sar_ttl_s, max_entries=sar_max_entries),
    )


async def start_adapter(
    provider: MetricsProvider,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    request_header: RequestHeaderConfig | None = None,
    reviewer: SubjectAccessReviewer | None = None,
    client_ca_pem: bytes | None = None,
    metrics: AdapterMetrics | None = None,
    request_timeout_s: float = 10.0,
    tls: bool = True,
    public_metrics: bool = True,
    response_cache_s: float = 0.0,
    cert_reload_s: float = 30.0,
) -> RunningAdapter:
    """Serve the adapter; see the module docstring. ``cert_file`` None means self-signed."""
    if (request_header is None) != (reviewer is None):
        raise ValueError("request_header and reviewer go together (both or neither)")
    if request_header is not None and not tls:
        raise ValueError("front-proxy authentication needs TLS")
    metrics = metrics if metrics is not None else AdapterMetrics()
    security = build_security(request_header, reviewer) if request_header and reviewer else None
    app = make_app(Deps(provider, metrics, security, request_timeout_s, public_metrics, response_cache_s))
    tls_setup = _tls(host, cert_file, key_file, request_header, client_ca_pem) if tls else None
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls_setup.ctx if tls_setup else None, backlog=1024)
        await site.start()
    except BaseException:
        await runner.cleanup()
        if tls_setup is not None and tls_setup.tmp is not None:
            tls_setup.tmp.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{bound}"
    log.info("adapter listening", extra={"fields": {"url": url, "auth": security is not None}})
    running = RunningAdapter(
        url,
        bound,
        app,
        metrics,
        tls_setup.cert_file if tls_setup else None,
        runner,
        tls_setup.tmp if tls_setup else None,
    )
    if tls_setup is not None and tls_setup.tmp is None and cert_reload_s > 0:
        running.reloader = CertReloader(tls_setup.ctx, tls_setup.cert_file, tls_setup.key_file)
        running._reload_task = asyncio.create_task(_reload_loop(running.reloader, cert_reload_s))
    return running


@dataclass
class _Tls:
    ctx: ssl.SSLContext
    cert_file: Path
    key_file: Path
    tmp: tempfile.TemporaryDirectory[str] | None


def _tls(
    host: str,
    cert_file: Path | None,
    key_file: Path | None,
    request_header: RequestHeaderConfig | None,
    client_ca_pem: bytes | None,
) -> _Tls:
    """Serving context from the files, or from a self-signed pair in a temporary folder."""
    tmp = None
    if cert_file is None or key_file is None:
        tmp = tempfile.TemporaryDirectory(prefix="prescale-adapter-")
        cert_file, key_file = self_signed(Path(tmp.name), ["localhost", host])
    cas = [request_header.client_ca_pem] if request_header else []
    ctx = server_context(cert_file, key_file, [*cas, *([client_ca_pem] if client_ca_pem else [])])
    return _Tls(ctx, cert_file, key_file, tmp)


async def _reload_loop(reloader: CertReloader, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        if reloader.reload_if_changed():
            log.info("serving certificate reloaded")
