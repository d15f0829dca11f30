"""Pod attribution against a real gRPC server serving podresources/v1 on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from exporter_kubelet import FakeKubelet, pod

from gpu_exporter.backend import Device
from gpu_exporter.podresources import api_pb2
from gpu_exporter.pods import KubeletError, PodRef, PodResourcesClient, attribution_from, id_keys

GPU0 = Device(0, "GPU-aaaa", "H100")
GPU1 = Device(1, "GPU-bbbb", "H100")
MIG = Device(2, "MIG-cccc", "H100", mig_profile="1g.10gb", gpu_instance="3", parent_uuid="GPU-dddd")
PODS = [
    pod("serving", "llm-0", "server", "nvidia.com/gpu", "GPU-aaaa"),
    pod("serving", "small-a", "server", "nvidia.com/gpu", "GPU-bbbb::0"),  # time-slicing replicas
    pod("serving", "small-b", "server", "nvidia.com/gpu", "GPU-bbbb::1"),
    pod("batch", "mig-job", "main", "nvidia.com/mig-1g.10gb", "MIG-cccc"),
    pod("kube-system", "cpu-only", "main", "cpu", "0"),
]


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    (tmp_path / "pod-resources").mkdir()
    return tmp_path / "pod-resources" / "kubelet.sock"


@pytest.fixture
def kubelet(socket_path: Path) -> Iterator[FakeKubelet]:
    server = FakeKubelet(socket_path, list(PODS)).start()
    yield server
    server.stop()


def test_id_formats() -> None:
    assert id_keys("GPU-x::3") == ("GPU-x",)
    assert id_keys("MIG-GPU-abc/1/0") == ("MIG-GPU-abc/1/0", "GPU-abc/gi1")
    assert id_keys("0") == ("0",)


def test_attribution_from_real_server(kubelet: FakeKubelet, socket_path: Path) -> None:
    client = PodResourcesClient(socket_path)
    attribution = client.attribution()
    client.close()
    assert attribution.pods_for(GPU0) == (PodRef("serving", "llm-0", "server"),)
    assert attribution.pods_for(GPU1) == (PodRef("serving", "small-a", "server"),
                                          PodRef("serving", "small-b", "server"))
    assert attribution.pods_for(MIG) == (PodRef("batch", "mig-job", "main"),)


def test_index_gke_and_old_mig_formats() -> None:
    response = api_pb2.ListPodResourcesResponse(pod_resources=[
        pod("a", "by-index", "c", "nvidia.com/gpu", "0"),
        pod("a", "gke", "c", "nvidia.com/gpu", "nvidia1"),
        pod("a", "gke-mig", "c", "nvidia.com/gpu", "nvidia2/gi3/vgpu0"),
        pod("a", "old-mig", "c", "nvidia.com/mig-1g.10gb", "MIG-GPU-dddd/3/0"),
    ])
    attribution = attribution_from(response)
    assert [p.pod for p in attribution.pods_for(GPU0)] == ["by-index"]
    assert [p.pod for p in attribution.pods_for(GPU1)] == ["gke"]
    assert [p.pod for p in attribution.pods_for(MIG)] == ["gke-mig", "old-mig"]


def test_kubelet_restart_socket_removed_and_recreated(kubelet: FakeKubelet, socket_path: Path) -> None:
    client = PodResourcesClient(socket_path)
    assert client.attribution().pods_for(GPU0)
    kubelet.stop()
    with pytest.raises(KubeletError, match="missing"):
        client.attribution()
    new_pods = [pod("serving", "llm-1", "server", "nvidia.com/gpu", "GPU-aaaa")]
    restarted = FakeKubelet(socket_path, new_pods).start()
    try:
        assert [p.pod for p in client.attribution().pods_for(GPU0)] == ["llm-1"]
    finally:
        client.close()
        restarted.stop()


def test_response_larger_than_grpc_default_limit(socket_path: Path) -> None:
    big = [pod("ns", f"pod-{i:05d}-{'x' * 200}", "c", "nvidia.com/gpu", f"GPU-{i}") for i in range(20000)]
    server = FakeKubelet(socket_path, big).start()
    try:
        response = PodResourcesClient(socket_path).list()
        assert response.ByteSize() > 4 * 1024 * 1024
        assert len(response.pod_resources) == 20000
    finally:
        server.stop()


def test_slow_kubelet_times_out(kubelet: FakeKubelet, socket_path: Path) -> None:
    kubelet.slow.set()
    client = PodResourcesClient(socket_path, timeout_s=0.2)
    with pytest.raises(KubeletError, match="DEADLINE_EXCEEDED"):
        client.list()
    kubelet.release.set()
    client.close()
