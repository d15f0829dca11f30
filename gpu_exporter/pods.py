"""Pod attribution from the kubelet PodResources v1 API (``List``), refreshed off the scrape path.

- One persistent channel, rebuilt when the socket file is replaced (a kubelet restart removes and
  recreates it: the directory is mounted, so the new socket appears under the same path).
- The receive limit is raised far above gRPC's 4 MiB default (dcgm-exporter #509).
- Device IDs are matched by GPU UUID, MIG UUID (new and ``MIG-GPU-<uuid>/<gi>/<ci>`` formats),
  index, GKE ``nvidia<N>[/gi<G>]``, with time-slicing/MPS replica suffixes ``<id>::<n>`` stripped.
- Every pod holding a device is kept (shared GPUs list all their pods, sorted), never the last.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc  # type: ignore[import-untyped]

from gpu_exporter.backend import Device
from gpu_exporter.podresources import api_pb2

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
LIST_METHOD = "/v1.PodResourcesLister/List"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GPU_RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")


class KubeletError(Exception):
    """PodResources could not be listed (socket missing, timeout, error status)."""


@dataclass(frozen=True, order=True)
class PodRef:
    """A container that holds a device."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class Attribution:
    """Device key -> every container holding it. Keys come from ``device_keys``/``id_keys``."""

    by_key: Mapping[str, tuple[PodRef, ...]] = field(default_factory=dict)

    def pods_for(self, device: Device) -> tuple[PodRef, ...]:
        found: set[PodRef] = set()
        for key in device_keys(device):
            found.update(self.by_key.get(key, ()))
        return tuple(sorted(found))


EMPTY = Attribution()


def id_keys(device_id: str) -> tuple[str, ...]:
    """Lookup keys for a device ID reported by a device plugin."""
    base = device_id.split("::", 1)[0]  # time-slicing / MPS replica
    if base.startswith("MIG-GPU-") and base.count("/") == 2:
        parent, gi, _ci = base[len("MIG-"):].split("/")
        return (base, f"{parent}/gi{gi}")
    return (base,)


def device_keys(d: Device) -> tuple[str, ...]:
    """Lookup keys under which a plugin may have reported this device."""
    if d.mig_profile:
        return (d.uuid, f"{d.parent_uuid}/gi{d.gpu_instance}", f"nvidia{d.index}/gi{d.gpu_instance}")
    return (d.uuid, str(d.index), f"nvidia{d.index}")


def attribution_from(response: api_pb2.ListPodResourcesResponse,
                     prefixes: Iterable[str] = GPU_RESOURCE_PREFIXES) -> Attribution:
    """Build the attribution map from a ``List`` response; non-GPU resources are ignored."""
    wanted = tuple(prefixes)
    by_key: dict[str, set[PodRef]] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            ref = PodRef(pod.namespace, pod.name, container.name)
            for dev in container.devices:
                if not dev.resource_name.startswith(wanted):
                    continue
                for device_id in dev.device_ids:
                    for key in id_keys(device_id):
                        by_key.setdefault(_gke(key), set()).add(ref)
    return Attribution({k: tuple(sorted(v)) for k, v in by_key.items()})


def _gke(key: str) -> str:
    """GKE reports ``nvidia0/gi1/vgpu2``: drop the vgpu part (a replica, like ``::n``)."""
    parts = key.split("/")
    if key.startswith("nvidia") and parts[-1].startswith("vgpu"):
        return "/".join(parts[:-1])
    return key


class PodResourcesClient:
    """Blocking client for ``List``; call from the collection thread, never on a scrape."""

    def __init__(self, socket_path: Path = DEFAULT_SOCKET, timeout_s: float = 2.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self._channel: grpc.Channel | None = None
        self._identity: tuple[int, int] | None = None

    def _call(self) -> grpc.UnaryUnaryMultiCallable:
        try:
            st = os.stat(self.socket_path)
        except FileNotFoundError as e:
            self.close()
            raise KubeletError(f"kubelet socket {self.socket_path} is missing") from e
        identity = (st.st_dev, st.st_ino)
        if self._channel is None or identity != self._identity:
            if self._channel is not None:
                log.info("kubelet socket replaced, reconnecting",
                         extra={"fields": {"socket": str(self.socket_path)}})
            self.close()
            self._channel = grpc.insecure_channel(
                f"unix://{self.socket_path}",
                options=[("grpc.max_receive_message_length", self.max_message_bytes)])
            self._identity = identity
        return self._channel.unary_unary(
            LIST_METHOD,
            request_serializer=api_pb2.ListPodResourcesRequest.SerializeToString,
            response_deserializer=api_pb2.ListPodResourcesResponse.FromString)

    def list(self) -> api_pb2.ListPodResourcesResponse:
        call = self._call()
        try:
            response: api_pb2.ListPodResourcesResponse = call(
                api_pb2.ListPodResourcesRequest(), timeout=self.timeout_s)
        except grpc.RpcError as e:
            code = e.code().name if hasattr(e, "code") else "UNKNOWN"
            raise KubeletError(f"PodResources List failed: {code}") from e
        return response

    def attribution(self) -> Attribution:
        return attribution_from(self.list())

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._identity = None
