"""adapter/kube.py against a fake kube-apiserver on loopback (kubeconfig -> http://127.0.0.1:PORT)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapter.api.selectors import parse_selector
from adapter.auth import Attributes, Identity
from adapter.kube import Kube, KubeError, KubePodLister, KubeReviewer, read_request_header_config

CM = {
    "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
    "requestheader-allowed-names": '["front-proxy-client"]',
    "requestheader-group-headers": '["X-Remote-Group"]',
}


class FakeApiserver:
    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.pod_lists: list[str] = []

    async def sar(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.reviews.append(body)
        allowed = body["spec"]["user"] == "hpa"
        return web.json_response({**body, "status": {"allowed": allowed}}, status=201)

    async def configmap(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "data": CM,
                "metadata": {"name": "extension-apiserver-authentication"},
            }
        )

    async def pods(self, request: web.Request) -> web.Response:
        self.pod_lists.append(request.query.get("labelSelector", ""))
        items = [{"metadata": {"name": n, "namespace": "llm"}} for n in ("a", "b")]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[Kube, FakeApiserver]]:
    fake = FakeApiserver()
    app = web.Application()
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", fake.sar)
    app.router.add_get(
        "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", fake.configmap
    )
    app.router.add_get("/api/v1/namespaces/llm/pods", fake.pods)
    server = TestServer(app)
    await server.start_server()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server.make_url("")}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    try:
        async with Kube(str(kubeconfig)) as k:
            yield k, fake
    finally:
        await server.close()


async def test_subject_access_review(kube: tuple[Kube, FakeApiserver]) -> None:
    k, fake = kube
    reviewer = KubeReviewer(k)
    attrs = Attributes(
        "list", group="external.metrics.k8s.io", version="v1beta1", resource="q", namespace="ns"
    )
    assert await reviewer.review(Identity("hpa", ("system:authenticated",), (("scopes", ("a",)),)), attrs)
    assert not await reviewer.review(Identity("bob"), Attributes("get", path="/metrics"))
    first, second = fake.reviews
    assert first["spec"]["resourceAttributes"] == {
        "namespace": "ns",
        "verb": "list",
        "group": "external.metrics.k8s.io",
        "version": "v1beta1",
        "resource": "q",
    }
    assert first["spec"]["extra"] == {"scopes": ["a"]}
    assert second["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}


async def test_configmap_and_pods(kube: tuple[Kube, FakeApiserver]) -> None:
    k, fake = kube
    cfg = await read_request_header_config(k)
    assert cfg.allowed_names == ("front-proxy-client",)
    assert cfg.username_headers == ("X-Remote-User",)
    pods = KubePodLister(k)
    assert await pods.pod_names("llm", parse_selector("app=chat")) == ["a", "b"]
    assert await pods.pod_names("llm", parse_selector("app=chat")) == ["a", "b"]
    assert fake.pod_lists == ["app=chat"]  # cached
    with pytest.raises(KubeError):
        await pods.pod_names("missing", parse_selector("app=chat"))


async def test_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(KubeError):
        async with Kube(str(tmp_path / "nope")):
            pass
