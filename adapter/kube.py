"""The adapter's only door to the Kubernetes API (the only importer of ``kubernetes_asyncio``).

- ``KubeReviewer``: SubjectAccessReviews for the authorizer.
- ``read_request_header_config``: the ``kube-system/extension-apiserver-authentication``
  ConfigMap (front-proxy CA, allowed names, header names).
- ``KubePodLister``: pod names for a label selector (Pods-type custom metrics), briefly cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from adapter.api.selectors import Selector
from adapter.auth import Attributes, Identity, RequestHeaderConfig


class KubeError(Exception):
    """The Kubernetes API could not be reached or refused a call."""


class Kube:
    """An API client from a kubeconfig file, or the in-cluster service account when None."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        self._kubeconfig = kubeconfig
        self.api: Any = None

    async def __aenter__(self) -> Kube:
        try:
            if self._kubeconfig is None:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            else:
                await config.load_kube_config(config_file=self._kubeconfig)
        except Exception as e:
            raise KubeError(f"cannot load Kubernetes credentials: {e}") from e
        self.api = client.ApiClient()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.api is not None:
            await self.api.close()


def _strings(data: dict[str, str], key: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = data.get(key)
    if not raw:
        return tuple(default)
    try:
        values = json.loads(raw)
    except ValueError as e:
        raise KubeError(f"extension-apiserver-authentication: {key} is not a JSON list") from e
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise KubeError(f"extension-apiserver-authentication: {key} is not a list of strings")
    return tuple(values)


def request_header_from_configmap(data: dict[str, str]) -> RequestHeaderConfig:
    """Pure: the ConfigMap's ``data`` as a ``RequestHeaderConfig`` (apiserver defaults)."""
    ca = data.get("requestheader-client-ca-file", "")
    if not ca.strip():
        raise KubeError("extension-apiserver-authentication has no requestheader-client-ca-file")
    return RequestHeaderConfig(
        client_ca_pem=ca.encode(),
        allowed_names=_strings(data, "requestheader-allowed-names", ()),
        username_headers=_strings(data, "requestheader-username-headers", ("X-Remote-User",)),
        group_headers=_strings(data, "requestheader-group-headers", ("X-Remote-Group",)),
        extra_prefixes=_strings(data, "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        uid_headers=_strings(data, "requestheader-uid-headers", ()),
    )


async def read_request_header_config(kube: Kube) -> RequestHeaderConfig:
    """Read ``kube-system/extension-apiserver-authentication``."""
    try:
        cm = await client.CoreV1Api(kube.api).read_namespaced_config_map(
            "extension-apiserver-authentication", "kube-system"
        )
    except ApiException as e:
        raise KubeError(f"cannot read extension-apiserver-authentication: HTTP {e.status}") from e
    return request_header_from_configmap(dict(cm.data or {}))


class KubeReviewer:
    """``SubjectAccessReviewer`` backed by ``authorization.k8s.io/v1``."""

    def __init__(self, kube: Kube) -> None:
        self._api = client.AuthorizationV1Api(kube.api)

    async def review(self, identity: Identity, attrs: Attributes) -> bool:
        spec: dict[str, Any] = {
            "user": identity.user,
            "groups": list(identity.groups),
            "extra": {k: list(v) for k, v in identity.extra},
        }
        if identity.uid:
            spec["uid"] = identity.uid
        if attrs.resource:
            spec["resourceAttributes"] = {
                k: v
                for k, v in {
                    "namespace": attrs.namespace,
                    "verb": attrs.verb,
                    "group": attrs.group,
                    "version": attrs.version,
                    "resource": attrs.resource,
                    "subresource": attrs.subresource,
                    "name": attrs.name,
                }.items()
                if v
            }
        else:
            spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
        body: Any = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        try:
            result = await self._api.create_subject_access_review(body)
        except ApiException as e:
            raise KubeError(f"SubjectAccessReview failed: HTTP {e.status}") from e
        return bool(result.status and result.status.allowed)


class KubePodLister:
    """Pod names per (namespace, selector), cached ``cache_s`` so HPAs do not LIST per request."""

    def __init__(self, kube: Kube, *, cache_s: float = 10.0, max_entries: int = 1024) -> None:
        self._api = client.CoreV1Api(kube.api)
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._cache_s = cache_s
        self._max = max_entries

    async def pod_names(self, namespace: str, selector: Selector) -> Sequence[str]:
        key = (namespace, str(selector))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._cache_s:
            return hit[1]
        try:
            pods = await self._api.list_namespaced_pod(namespace, label_selector=key[1])
        except ApiException as e:
            raise KubeError(f"listing pods failed: HTTP {e.status}") from e
        names = [p.metadata.name for p in pods.items]
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (now, names)
        return names
