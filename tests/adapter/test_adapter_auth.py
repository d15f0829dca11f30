"""Front-proxy mTLS + SubjectAccessReview over real TLS on loopback (fake reviewer at the seam)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from adapter_pki import CA, Issued, make_ca
from multidict import CIMultiDict

from adapter.api.security import attributes_for
from adapter.auth import (
    Attributes,
    AuthError,
    CachingAuthorizer,
    FrontProxyAuthenticator,
    Identity,
    RequestHeaderConfig,
)
from adapter.provider import Sample
from adapter.providers.memory import MemoryProvider
from adapter.server import RunningAdapter, start_adapter

E = "/apis/external.metrics.k8s.io/v1beta1"


REQUEST_TIMEOUT_S = 1.0


@dataclass
class FakeReviewer:
    """Allows the HPA's service account only; records every review."""

    allowed_users: set[str] = field(default_factory=lambda: {"system:serviceaccount:kube-system:hpa"})
    calls: list[tuple[Identity, Attributes]] = field(default_factory=list)
    fail: bool = False
    hang: bool = False

    async def review(self, identity: Identity, attrs: Attributes) -> bool:
        self.calls.append((identity, attrs))
        if self.fail:
            raise ConnectionError("apiserver down")
        if self.hang:  # an apiserver that accepts the review and never answers
            await asyncio.Event().wait()
        return identity.user in self.allowed_users


@dataclass
class Env:
    adapter: RunningAdapter
    reviewer: FakeReviewer
    front: CA
    proxy: Issued
    other_name: Issued
    client_ca_user: Issued
    foreign: Issued


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    front, client_ca, foreign_ca = (
        make_ca(tmp_path, "front-proxy-ca"),
        make_ca(tmp_path, "client-ca"),
        make_ca(tmp_path, "foreign-ca"),
    )
    provider = MemoryProvider()
    provider.set_external("queue", "default", [Sample(3, time.time())])
    reviewer = FakeReviewer()
    header = RequestHeaderConfig(front.pem, allowed_names=("front-proxy-client", "aggregator"))
    adapter = await start_adapter(
        provider, request_header=header, reviewer=reviewer, client_ca_pem=client_ca.pem,
        request_timeout_s=REQUEST_TIMEOUT_S,
    )
    try:
        yield Env(
            adapter,
            reviewer,
            front,
            front.issue("front-proxy-client", "proxy"),
            front.issue("someone-else", "other"),
            client_ca.issue("mallory", "mallory"),
            foreign_ca.issue("front-proxy-client", "foreign"),
        )
    finally:
        await adapter.stop()


def _ctx(env: Env, cert: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(env.adapter.cert_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


async def _get(
    env: Env,
    path: str,
    cert: Issued | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(env.adapter.url + path, ssl=_ctx(env, cert), headers=headers or {}) as r,
    ):
        return r.status, await r.json(content_type=None) if r.content_type == "application/json" else {}


HPA = {"X-Remote-User": "system:serviceaccount:kube-system:hpa", "X-Remote-Group": "system:serviceaccounts"}


async def test_front_proxy_allowed(env: Env) -> None:
    code, body = await _get(env, f"{E}/namespaces/default/queue", env.proxy, HPA)
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList"
    identity, attrs = env.reviewer.calls[-1]
    assert identity.user == HPA["X-Remote-User"]
    assert identity.groups == ("system:serviceaccounts", "system:authenticated")
    assert attrs == Attributes(
        "list", group="external.metrics.k8s.io", version="v1beta1", resource="queue", namespace="default"
    )
    await _get(env, f"{E}/namespaces/default/queue", env.proxy, HPA)
    assert len(env.reviewer.calls) == 1  # cached


@pytest.mark.parametrize("who", ["none", "other_name", "client_ca_user"])
async def test_forged_headers_refused_401(env: Env, who: str) -> None:
    cert = None if who == "none" else getattr(env, who)
    code, body = await _get(env, f"{E}/namespaces/default/queue", cert, HPA)
    assert code == 401
    assert body["reason"] == "Unauthorized"
    assert env.reviewer.calls == []


async def test_foreign_ca_refused_in_handshake(env: Env) -> None:
    with pytest.raises(aiohttp.ClientError):
        await _get(env, f"{E}/namespaces/default/queue", env.foreign, HPA)


async def test_denied_403_and_review_error_503(env: Env) -> None:
    code, body = await _get(env, f"{E}/namespaces/default/queue", env.proxy, {"X-Remote-User": "bob"})
    assert code == 403
    assert body["reason"] == "Forbidden"
    assert 'user "bob" cannot list resource "queue"' in str(body["message"])
    env.reviewer.fail = True
    code, _ = await _get(env, f"{E}/namespaces/default/queue", env.proxy, {"X-Remote-User": "carol"})
    assert code == 503


async def test_hanging_review_is_503_within_the_request_deadline(env: Env) -> None:
    env.reviewer.hang = True
    started = time.monotonic()
    code, body = await _get(env, f"{E}/namespaces/default/queue", env.proxy, {"X-Remote-User": "dave"})
    assert code == 503
    assert body["reason"] == "ServiceUnavailable"
    assert time.monotonic() - started < REQUEST_TIMEOUT_S + 5


async def test_open_and_discovery_paths(env: Env) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert (await _get(env, path, None))[0] == 200
    assert (await _get(env, E, None))[0] == 401
    # The aggregator's legacy discovery call: no groups, no SubjectAccessReview needed.
    code, body = await _get(env, E, env.proxy, {"X-Remote-User": "system:kube-aggregator"})
    assert code == 200
    assert body["kind"] == "APIResourceList"
    code, _ = await _get(env, "/openapi/v2", env.proxy, {"X-Remote-User": "system:aggregator"})
    assert code == 200
    assert env.reviewer.calls == []
    masters = {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"}
    assert (await _get(env, f"{E}/namespaces/default/queue", env.proxy, masters))[0] == 200
    assert env.reviewer.calls == []


def test_header_parsing(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    cert = ca.issue("aggregator", "agg")
    der = ssl.PEM_cert_to_DER_cert(cert.cert.read_text())
    auth = FrontProxyAuthenticator(RequestHeaderConfig(ca.pem))  # empty allowed names: any cert of the CA
    headers = CIMultiDict(
        [
            ("X-Remote-User", ""),
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "a"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes%2Fx", "s1"),
            ("X-Remote-Extra-Scopes%2Fx", "s2"),
        ]
    )
    ident = auth.authenticate(der, headers)
    assert ident == Identity("alice", ("a", "system:authenticated"), (("scopes/x", ("s1", "s2")),))
    with pytest.raises(AuthError):
        auth.authenticate(der, CIMultiDict())
    with pytest.raises(AuthError):
        auth.authenticate(b"garbage", headers)


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (
            f"{E}/namespaces/ns/m",
            Attributes(
                "list", group="external.metrics.k8s.io", version="v1beta1", resource="m", namespace="ns"
            ),
        ),
        (
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m",
            Attributes(
                "get",
                group="custom.metrics.k8s.io",
                version="v1beta2",
                resource="pods",
                subresource="m",
                name="*",
                namespace="ns",
            ),
        ),
        (
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/metrics/m",
            Attributes(
                "get",
                group="custom.metrics.k8s.io",
                version="v1beta2",
                resource="metrics",
                name="m",
                namespace="ns",
            ),
        ),
        (E, None),
        ("/apis", None),
        ("/openapi/v2", None),
        ("/other", Attributes("get", path="/other")),
    ],
)
def test_attributes(path: str, want: Attributes | None) -> None:
    assert attributes_for(path) == want


async def test_authorizer_cache_bounded_and_expiring() -> None:
    reviewer = FakeReviewer()
    now = [0.0]
    authz = CachingAuthorizer(reviewer, ttl_s=10, max_entries=2, clock=lambda: now[0])
    who = [Identity(f"u{i}") for i in range(3)]
    attrs = Attributes("get", path="/x")
    for ident in who:
        assert await authz.allowed(ident, attrs) is False
    assert len(authz._cache) == 2
    await authz.allowed(who[2], attrs)
    assert len(reviewer.calls) == 3
    now[0] = 11
    await authz.allowed(who[2], attrs)
    assert len(reviewer.calls) == 4
