"""A real gRPC server speaking podresources/v1 on a unix socket, like the kubelet."""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]

from gpu_exporter.podresources import api_pb2


def pod(namespace: str, name: str, container: str, resource: str, *ids: str) -> api_pb2.PodResources:
    return api_pb2.PodResources(name=name, namespace=namespace, containers=[api_pb2.ContainerResources(
        name=container, devices=[api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))])])


class FakeKubelet:
    """Serves ``List`` from ``self.pods``; ``delay`` makes it slow (released by ``release``)."""

    def __init__(self, socket_path: Path, pods: list[api_pb2.PodResources]) -> None:
        self.socket_path = socket_path
        self.pods = pods
        self.calls = 0
        self.slow = threading.Event()
        self.release = threading.Event()
        self.server: Any = None

    def _list(self, request: api_pb2.ListPodResourcesRequest,
              context: Any) -> api_pb2.ListPodResourcesResponse:
        self.calls += 1
        if self.slow.is_set():
            self.release.wait(10)
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)

    def start(self) -> FakeKubelet:
        handler = grpc.method_handlers_generic_handler("v1.PodResourcesLister", {
            "List": grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=api_pb2.ListPodResourcesRequest.FromString,
                response_serializer=api_pb2.ListPodResourcesResponse.SerializeToString)})
        self.server = grpc.server(futures.ThreadPoolExecutor(4),
                                  options=[("grpc.max_send_message_length", 512 * 1024 * 1024)])
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix://{self.socket_path}")
        self.server.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.stop(None).wait()
        self.socket_path.unlink(missing_ok=True)
