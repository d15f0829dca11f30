"""The NVML backend against the real library and GPU; skips with the reason where NVML is absent.

Run on a GPU machine: ``.venv/bin/pytest tests/gpu_exporter/test_nvml_real.py -m gpu -v -s``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gpu_exporter.backend import BackendUnavailable
from gpu_exporter.collection import Collection
from gpu_exporter.collector import render
from gpu_exporter.nvml import NvmlBackend

pytestmark = pytest.mark.gpu


@pytest.fixture
def backend() -> Iterator[NvmlBackend]:
    nvml = NvmlBackend()
    try:
        nvml.init(time.time())
    except BackendUnavailable as e:
        pytest.skip(f"NVML cannot initialise on this machine: {e}")
    yield nvml
    nvml.close()


def test_reads_real_gpus(backend: NvmlBackend) -> None:
    backend.read(time.time())
    time.sleep(0.2)  # GPM ratios need two samples some time apart; this is the real driver
    reading = backend.read(time.time())
    assert reading.devices, "NVML initialised but reported no device"
    assert reading.driver_version
    for r in reading.devices:
        print(r.device, dict(sorted(r.values.items())), sorted(r.clock_events or ()))
        assert r.device.uuid.startswith(("GPU-", "MIG-"))
        assert r.values["gpu_memory_total_bytes"] > 0
        for name, value in r.values.items():
            assert value >= 0, name
    print("field errors:", sorted({(e.field, e.reason) for e in reading.field_errors}))


async def test_exposition_on_real_gpu(backend: NvmlBackend) -> None:
    collection = Collection(backend, "gpu-test-node")
    await collection.refresh_gpu()
    snap = await collection.refresh_gpu()
    text = render(snap, "prescale").decode()
    print(text)
    assert snap.backend_up
    assert "gpu_memory_used_bytes{" in text
    collection.close()
