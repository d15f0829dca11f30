"""NVML backend logic against a fake pynvml module injected at the seam."""

from __future__ import annotations

import pytest
from exporter_fakes import FakeGpu, FakeNvml

from gpu_exporter.backend import BackendUnavailable, FieldError
from gpu_exporter.nvml import NvmlBackend

T0 = 1000.0


def _backend(*gpus: FakeGpu) -> tuple[FakeNvml, NvmlBackend]:
    lib = FakeNvml(list(gpus) or [FakeGpu("GPU-a"), FakeGpu("GPU-b")])
    return lib, NvmlBackend(lib)


def test_reads_every_field_in_base_units() -> None:
    _lib, backend = _backend()
    backend.read(T0)
    reading = backend.read(T0 + 1)  # GPM needs two samples
    values = reading.devices[0].values
    assert reading.driver_version == "580.95.05"
    assert values["gpu_utilization_ratio"] == 0.5
    assert values["gpu_power_usage_watts"] == 350.0
    assert values["gpu_energy_consumption_joules_total"] == 123_456.0
    assert values["gpu_sm_clock_hertz"] == 1.98e9
    assert values["gpu_memory_reserved_bytes"] == 2**29
    assert values["gpu_sm_active_ratio"] == pytest.approx(0.4)
    assert values["gpu_pcie_transmit_bytes_per_second"] == 100 * 2**20
    assert values["gpu_nvlink_transmit_bytes_total"] == 138_000 * 1024
    assert values["gpu_row_remap_pending"] == 1.0
    assert reading.devices[0].clock_events == frozenset({"sw_power_cap", "hw_thermal_slowdown"})
    assert reading.field_errors == ()


def test_first_round_has_no_gpm_ratios_not_zero() -> None:
    _lib, backend = _backend()
    assert "gpu_sm_active_ratio" not in backend.read(T0).devices[0].values


def test_unsupported_field_is_dropped_counted_and_not_retried() -> None:
    lib, backend = _backend(FakeGpu("GPU-a", unsupported={"power", "memory_temp"}, gpm=False))
    first = backend.read(T0)
    assert "gpu_power_usage_watts" not in first.devices[0].values
    assert "gpu_sm_active_ratio" not in backend.read(T0 + 1).devices[0].values
    assert FieldError("gpu_power_usage_watts", "NotSupported") in first.field_errors
    assert FieldError("gpu_memory_temperature_celsius", "NotSupported") in first.field_errors
    assert lib.calls["power"] == 1


def test_impossible_values_are_dropped() -> None:
    _lib, backend = _backend(FakeGpu("GPU-a", name="sentinel"))
    reading = backend.read(T0)
    assert "gpu_temperature_celsius" not in reading.devices[0].values
    assert FieldError("gpu_temperature_celsius", "OutOfRange") in reading.field_errors


def test_lost_gpu_drops_only_itself() -> None:
    lib, backend = _backend()
    backend.read(T0)
    lib.gpus[1].lost = True
    reading = backend.read(T0 + 1)
    assert [r.device.uuid for r in reading.devices] == ["GPU-a"]
    assert [d.index for d in reading.lost] == [1]


def test_driver_reload_reinitialises_with_backoff() -> None:
    lib, backend = _backend()
    backend.read(T0)
    lib.global_error = "LibRmVersionMismatch"
    with pytest.raises(BackendUnavailable, match="LibRmVersionMismatch"):
        backend.read(T0 + 1)
    lib.global_error = None
    with pytest.raises(BackendUnavailable, match="backoff"):
        backend.read(T0 + 1.5)
    assert len(backend.read(T0 + 2.5).devices) == 2
    assert lib.init_calls == 2


def test_missing_library_backs_off_exponentially() -> None:
    lib, backend = _backend()
    lib.init_error = "LibraryNotFound"
    for t in (0.0, 1.0, 3.0, 7.0):
        with pytest.raises(BackendUnavailable, match="init failed"):
            backend.read(T0 + t)
        with pytest.raises(BackendUnavailable, match="backoff"):
            backend.read(T0 + t + 0.5)
    assert lib.init_calls == 4


def test_xid_events_are_a_true_counter() -> None:
    lib, backend = _backend()
    lib.events = [(0, 79), (0, 79), (1, 13)]
    first = backend.read(T0)
    lib.events = [(0, 79)]
    second = backend.read(T0 + 1)
    assert first.devices[0].xid_counts == {79: 2}
    assert second.devices[0].xid_counts == {79: 3}
    assert second.devices[1].xid_counts == {13: 1}


def test_mig_instances_are_devices_with_profile_and_instance() -> None:
    mig = [("MIG-1", 1, "1g.10gb"), ("MIG-2", 2, "1g.10gb")]
    _lib, backend = _backend(FakeGpu("GPU-a", mig=mig))
    backend.read(T0)
    reading = backend.read(T0 + 1)
    migs = [r for r in reading.devices if r.device.mig_profile]
    assert [(r.device.uuid, r.device.gpu_instance, r.device.parent_uuid) for r in migs] == [
        ("MIG-1", "1", "GPU-a"), ("MIG-2", "2", "GPU-a")]
    assert migs[0].values["gpu_memory_total_bytes"] == 10 * 2**30
    assert migs[0].values["gpu_sm_active_ratio"] == pytest.approx(0.4)


def test_unreadable_gpu_identity_drops_only_that_gpu() -> None:
    _lib, backend = _backend(FakeGpu("GPU-a", unsupported={"pci"}), FakeGpu("GPU-b"))
    reading = backend.read(T0)
    assert [r.device.uuid for r in reading.devices] == ["GPU-b"]
    assert FieldError("device", "NotSupported") in reading.field_errors
