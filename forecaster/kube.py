"""The forecaster's only door to the Kubernetes API (the only importer of ``kubernetes_asyncio``).

Everything above this module speaks plain JSON dicts and API paths through the
:class:`KubeApi` Protocol, so the controller and the actuators are tested against an
in-memory fake at the same seam. Status codes are mapped to exceptions here, once:
404 -> :class:`NotFound`, 409 -> :class:`Conflict`, 410 -> :class:`Gone`,
422/400 -> :class:`Invalid`, 429, 5xx and connection failures -> :class:`Retryable`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final, Protocol

import aiohttp
from kubernetes_asyncio import client, config

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]
MERGE_PATCH: Final = "application/merge-patch+json"
_BODY_LIMIT: Final = 300


class KubeError(Exception):
    """The API refused a call or could not be reached; ``status`` is the HTTP code (0: none)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """404: the object (or its kind) does not exist."""


class Conflict(KubeError):
    """409: stale resourceVersion or the object already exists."""


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; relist."""


class Invalid(KubeError):
    """400/422: the API rejected the object (admission, schema, CEL rules)."""


class Retryable(KubeError):
    """429, 5xx or a transport failure: try again after a backoff."""


_BY_STATUS: Final[dict[int, type[KubeError]]] = {
    404: NotFound,
    409: Conflict,
    410: Gone,
    400: Invalid,
    422: Invalid,
    429: Retryable,
}


def error_for(status: int, body: bytes | str, what: str) -> KubeError:
    """The exception for an HTTP status; the message quotes the API's ``message`` (truncated)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    message, reason = text[:_BODY_LIMIT], ""
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            message = str(doc.get("message", message))[:_BODY_LIMIT]
            reason = str(doc.get("reason", ""))
    except ValueError:
        pass
    cls = _BY_STATUS.get(status) or (Retryable if status >= 500 else KubeError)
    return cls(f"{what}: {status} {message}", status, reason)


class KubeApi(Protocol):
    """What the controller and the actuators need from the API server (paths, JSON dicts)."""

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObj:
        """GET an object or a list."""
        ...

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        """POST ``body`` to a collection path."""
        ...

    async def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        """PATCH with ``application/merge-patch+json`` (works for custom resources too)."""
        ...

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        """PUT: optimistic-concurrency update (``metadata.resourceVersion`` must match)."""
        ...

    async def delete(self, path: str) -> None:
        """DELETE; a missing object is not an error."""
        ...

    def watch(self, path: str, resource_version: str, timeout_s: int) -> AsyncIterator[tuple[str, JsonObj]]:
        """Watch events ``(type, object)`` from ``resource_version``; raises Gone when too old."""
        ...


class Kube:
    """:class:`KubeApi` over kubernetes_asyncio; a kubeconfig file, or in-cluster when None."""

    def __init__(self, kubeconfig: str | None = None, *, request_timeout_s: float = 15.0) -> None:
        self._kubeconfig = kubeconfig
        self._timeout_s = request_timeout_s
        self._api: Any = None

    async def __aenter__(self) -> Kube:
        cfg = client.Configuration()
        try:
            if self._kubeconfig is None:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                await config.load_kube_config(config_file=self._kubeconfig, client_configuration=cfg)
        except Exception as e:
            raise KubeError(f"cannot load Kubernetes credentials: {e}") from e
        self._api = client.ApiClient(configuration=cfg)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
    ) -> Any:
        """One request; returns the open aiohttp response (the caller reads or streams it)."""
        if self._api is None:
            raise KubeError("Kube used outside 'async with'")
        try:
            resp = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_s if timeout_s is not None else self._timeout_s,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise Retryable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if not 200 <= resp.status <= 299:
            data = await resp.read()
            resp.release()
            raise error_for(resp.status, data, f"{method} {path}")
        return resp

    async def _json(self, method: str, path: str, **kw: Any) -> JsonObj:
        resp = await self._call(method, path, **kw)
        try:
            data = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise Retryable(f"{method} {path}: reading the body: {e}") from e
        finally:
            resp.release()
        doc = json.loads(data) if data else {}
        if not isinstance(doc, dict):
            raise KubeError(f"{method} {path}: the answer is not a JSON object")
        return doc

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObj:
        return await self._json("GET", path, query=query)

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        return await self._json("POST", path, body=body)

    async def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        return await self._json("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        return await self._json("PUT", path, body=body)

    async def delete(self, path: str) -> None:
        try:
            await self._json("DELETE", path)
        except NotFound:
            return

    async def watch(
        self, path: str, resource_version: str, timeout_s: int
    ) -> AsyncIterator[tuple[str, JsonObj]]:
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_s),
            "allowWatchBookmarks": "true",
        }
        resp = await self._call("GET", path, query=query, timeout_s=timeout_s + 10)
        try:
            while True:
                try:
                    line = await resp.content.readline()
                except (TimeoutError, aiohttp.ClientError) as e:
                    raise Retryable(f"watch {path}: {e}") from e
                if not line:
                    return
                event = json.loads(line)
                kind, obj = str(event.get("type", "")), event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code", 500))
                    raise error_for(code, json.dumps(obj), f"watch {path}")
                yield kind, obj
        finally:
            resp.release()


class Retrying:
    """:class:`KubeApi` that retries 429, 5xx and transport failures (and 409 on merge patches)
    with exponential backoff; watches are not retried here (the watch loop resumes them)."""

    def __init__(
        self, inner: KubeApi, *, attempts: int = 4, first_backoff_s: float = 0.2, max_backoff_s: float = 5.0
    ) -> None:
        self.inner, self.attempts = inner, attempts
        self.first_backoff_s, self.max_backoff_s = first_backoff_s, max_backoff_s
        self.retries = 0

    async def _retry(self, make: Any, retry_on: tuple[type[KubeError], ...] = (Retryable,)) -> Any:
        delay = self.first_backoff_s
        for attempt in range(self.attempts):
            try:
                return await make()
            except retry_on as e:
                if attempt == self.attempts - 1:
                    raise
                self.retries += 1
                log.debug("retrying", extra={"fields": {"error": str(e), "attempt": attempt + 1}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        raise KubeError("unreachable")  # pragma: no cover

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObj:
        result: JsonObj = await self._retry(lambda: self.inner.get(path, query))
        return result

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        result: JsonObj = await self._retry(lambda: self.inner.create(path, body))
        return result

    async def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        result: JsonObj = await self._retry(lambda: self.inner.merge_patch(path, body), (Retryable, Conflict))
        return result

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        result: JsonObj = await self._retry(lambda: self.inner.replace(path, body))
        return result

    async def delete(self, path: str) -> None:
        await self._retry(lambda: self.inner.delete(path))

    def watch(self, path: str, resource_version: str, timeout_s: int) -> AsyncIterator[tuple[str, JsonObj]]:
        return self.inner.watch(path, resource_version, timeout_s)
