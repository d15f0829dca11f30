"""The auth middleware: front-proxy authentication, then SubjectAccessReview authorization.

Open paths (health, optionally ``/metrics``) need nothing. Discovery and OpenAPI need an
authenticated caller but no SubjectAccessReview: the aggregator's legacy-discovery call comes
as ``system:kube-aggregator`` with no groups, and a 403 there would make the group stale.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from adapter.api.serialization import CUSTOM_GROUP, EXTERNAL_GROUP, status
from adapter.auth import Attributes, AuthError, CachingAuthorizer, FrontProxyAuthenticator, Identity
from adapter.metrics import AdapterMetrics

IDENTITY: Final = web.RequestKey("identity", Identity)
_GROUPS: Final = (EXTERNAL_GROUP, CUSTOM_GROUP)


@dataclass(frozen=True)
class Security:
    """Authenticator plus authorizer, as the middleware uses them."""

    authenticator: FrontProxyAuthenticator
    authorizer: CachingAuthorizer


def attributes_for(path: str) -> Attributes | None:
    """SubjectAccessReview attributes for a metric path; None for discovery/OpenAPI (no review).

    Mirrors apiserver ``RequestInfo``: a GET without an object name is ``list`` (external
    metrics), with a name it is ``get`` (custom metrics, where the name may be ``*``).
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] != "apis" or parts[1] not in _GROUPS:
        return None if path.startswith(("/apis", "/openapi")) else Attributes("get", path=path)
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
        if not rest:  # GET namespaces/{ns}: the Namespace object itself
            return Attributes("get", group=group, version=version, resource="namespaces", name=namespace)
    if not rest:
        return None
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", "/".join(rest[2:])
    verb = "get" if name else "list"
    return Attributes(
        verb, group=group, version=version, resource=resource, subresource=sub, name=name, namespace=namespace
    )


def _denied_message(identity: Identity, a: Attributes) -> str:
    if not a.resource:
        return f'user "{identity.user}" cannot {a.verb} path "{a.path}"'
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    return f'user "{identity.user}" cannot {a.verb} resource "{res}" in API group "{a.group}"{where}'


def _reply(code: int, reason: str, message: str) -> web.Response:
    return web.Response(
        body=json.dumps(status(code, reason, message)).encode(), status=code, content_type="application/json"
    )


def peer_certificate(request: web.Request) -> bytes | None:
    """The DER client certificate the TLS handshake verified, if the client sent one."""
    transport = request.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_obj, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_obj.getpeercert(binary_form=True)
    return der if der else None


def security_middleware(security: Security, open_paths: Set[str], metrics: AdapterMetrics,
                        review_timeout_s: float) -> Middleware:
    """Authenticate (401), authorize (403) or let through; a review past its deadline is a 503."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        try:
            identity = security.authenticator.authenticate(peer_certificate(request), request.headers)
        except AuthError as e:
            metrics.auth.labels("unauthenticated").inc()
            return _reply(401, "Unauthorized", f"Unauthorized: {e}")
        attrs = attributes_for(request.path)
        if attrs is not None:
            try:
                async with asyncio.timeout(review_timeout_s):
                    allowed = await security.authorizer.allowed(identity, attrs)
            except Exception:  # the review itself failed: not a decision, so not a 403
                metrics.auth.labels("review_error").inc()
                return _reply(503, "ServiceUnavailable", "authorization check failed; retry later")
            if not allowed:
                metrics.auth.labels("forbidden").inc()
                return _reply(403, "Forbidden", _denied_message(identity, attrs))
        metrics.auth.labels("allowed").inc()
        request[IDENTITY] = identity
        return await handler(request)

    return middleware
