"""Front-proxy authentication and delegated (SubjectAccessReview) authorization.

The kube-apiserver proxies to us over mTLS with its front-proxy client certificate and names
the real user in ``X-Remote-*`` headers. Those headers are trusted only when the peer
certificate was issued by the request-header CA and (if the allowed-names list is non-empty)
its CN is an allowed name; then ``system:authenticated`` is added, as the Go authenticator
does. Every authenticated request is then authorized with a SubjectAccessReview (cached for
``ttl_s``, bounded, concurrent identical reviews coalesced), except for ``system:masters``.

Python's ``ssl`` verifies client certificates in the handshake (``CERT_OPTIONAL``): a
certificate chaining to no trusted CA never reaches HTTP. The CA check here tells the
front-proxy CA apart from the plain client CA, and handles the allowed names.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from multidict import MultiMapping

AUTHENTICATED: Final = "system:authenticated"
MASTERS: Final = "system:masters"


@dataclass(frozen=True)
class Identity:
    """Who is asking: user name, groups and extra attributes (from the front proxy)."""

    user: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class Attributes:
    """SubjectAccessReview attributes: resource ones when ``resource`` is set, else the path."""

    verb: str
    path: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The ``extension-apiserver-authentication`` settings (or their file equivalents)."""

    client_ca_pem: bytes
    """PEM bundle of the front-proxy (request-header) CA."""
    allowed_names: tuple[str, ...] = ()
    """Allowed front-proxy certificate CNs; empty admits any certificate from that CA."""
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    """Headers naming the user; the first non-empty one wins."""
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    """Headers naming groups; every value of every header counts."""
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    """Prefixes of extra-attribute headers; the rest of the name is the (unescaped) key."""
    uid_headers: tuple[str, ...] = ()
    """Headers naming the user's UID (optional)."""


class AuthError(Exception):
    """Authentication failed: answered 401."""


def _load_cas(pem: bytes) -> list[x509.Certificate]:
    cas = x509.load_pem_x509_certificates(pem)
    if not cas:
        raise ValueError("request-header CA bundle holds no certificate")
    return cas


class FrontProxyAuthenticator:
    """Turns a verified peer certificate plus headers into an ``Identity``."""

    def __init__(self, config: RequestHeaderConfig, *, cache_size: int = 1024) -> None:
        self._config = config
        self._cas = _load_cas(config.client_ca_pem)
        self._cert_ok: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size

    def _is_front_proxy(self, der: bytes) -> bool:
        key = hashlib.sha256(der).digest()
        hit = self._cert_ok.get(key)
        if hit is None:
            hit = self._check(der)
            self._cert_ok[key] = hit
            if len(self._cert_ok) > self._cache_size:
                self._cert_ok.popitem(last=False)
        return hit

    def _check(self, der: bytes) -> bool:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return False
        if not any(_issued_by(cert, ca) for ca in self._cas):
            return False
        if not self._config.allowed_names:
            return True
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return any(cn in self._config.allowed_names for cn in cns)

    def authenticate(self, peer_der: bytes | None, headers: MultiMapping[str]) -> Identity:
        """The identity of a request, or ``AuthError`` (no certificate, wrong CA or name, no user)."""
        if peer_der is None:
            raise AuthError("a client certificate is required")
        if not self._is_front_proxy(peer_der):
            raise AuthError("the client certificate is not an allowed front-proxy certificate")
        cfg = self._config
        user = next((v for h in cfg.username_headers for v in _getall(headers, h) if v), "")
        if not user:
            raise AuthError("no user in the front-proxy headers")
        groups = [g for h in cfg.group_headers for g in _getall(headers, h)]
        if AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        uid = next((v for h in cfg.uid_headers for v in _getall(headers, h) if v), "")
        return Identity(user, tuple(groups), _extra(headers, cfg.extra_prefixes), uid)


def _getall(headers: MultiMapping[str], name: str) -> list[str]:
    return list(headers.getall(name, []))


def _extra(headers: MultiMapping[str], prefixes: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found: dict[str, list[str]] = {}
    for name in set(headers.keys()):
        for prefix in prefixes:
            if name.lower().startswith(prefix.lower()):
                key = urllib.parse.unquote(name[len(prefix) :]).lower()
                found.setdefault(key, []).extend(_getall(headers, name))
    return tuple(sorted((k, tuple(v)) for k, v in found.items()))


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class SubjectAccessReviewer(Protocol):
    """The seam to the kube-apiserver: one SubjectAccessReview per call."""

    async def review(self, identity: Identity, attrs: Attributes) -> bool:
        """Whether ``identity`` may do ``attrs``; raises on transport errors."""
        ...


@dataclass
class _Entry:
    allowed: bool
    expires: float


@dataclass
class CachingAuthorizer:
    """SubjectAccessReview results cached per (identity, attributes), bounded, coalesced."""

    reviewer: SubjectAccessReviewer
    ttl_s: float = 10.0
    max_entries: int = 10_000
    clock: Callable[[], float] = time.monotonic
    always_allow_groups: tuple[str, ...] = (MASTERS,)
    _cache: OrderedDict[tuple[Identity, Attributes], _Entry] = field(default_factory=OrderedDict)
    _inflight: dict[tuple[Identity, Attributes], asyncio.Future[bool]] = field(default_factory=dict)

    async def allowed(self, identity: Identity, attrs: Attributes) -> bool:
        """Cached decision; errors from the reviewer propagate (the caller answers 503)."""
        if any(g in self.always_allow_groups for g in identity.groups):
            return True
        key = (identity, attrs)
        now = self.clock()
        entry = self._cache.get(key)
        if entry is not None and entry.expires > now:
            return entry.allowed
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            decision = await self.reviewer.review(identity, attrs)
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]
        fut.set_result(decision)
        self._store(key, decision, now)
        return decision

    def _store(self, key: tuple[Identity, Attributes], decision: bool, now: float) -> None:
        self._cache[key] = _Entry(decision, now + self.ttl_s)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
