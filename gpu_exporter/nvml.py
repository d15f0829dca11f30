"""The NVML backend: the only module that imports ``pynvml`` (from the nvidia-ml-py package).

The pynvml module is injected (``NvmlBackend(lib=...)``) so the logic below is tested against a
small fake with the same function names; production passes the real module. Invariants:

- one ``nvmlInit`` for the process; lifecycle errors (driver reload: ``LibRmVersionMismatch``,
  ``Uninitialized``, ``DriverNotLoaded``) drop every handle and re-initialise with exponential
  backoff (1 s doubling to 30 s) on the caller's clock;
- a per-field error drops that sample and is reported as ``FieldError(field, reason)``; a field
  that answered ``NotSupported`` is not asked again until the next initialisation;
- ``GpuIsLost`` on one device reports that device lost and leaves the others alone;
- XIDs come from an NVML event set drained every round, accumulated as true counters;
- SM activity/occupancy/tensor/DRAM come from GPM (Hopper+), one sample per device kept
  between rounds; absent (not zero) where unsupported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from gpu_exporter.backend import BackendReading, BackendUnavailable, Device, DeviceReading, FieldError
from gpu_exporter.fields import MIB, clock_event_reasons, sane

log = logging.getLogger(__name__)

LIFECYCLE_ERRORS = ("Uninitialized", "DriverNotLoaded", "LibRmVersionMismatch", "LibraryNotFound")
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
GPM_METRICS: dict[int, tuple[str, float]] = {
    1: ("gpu_graphics_engine_active_ratio", 0.01), 2: ("gpu_sm_active_ratio", 0.01),
    3: ("gpu_sm_occupancy_ratio", 0.01), 5: ("gpu_tensor_active_ratio", 0.01),
    10: ("gpu_dram_active_ratio", 0.01),
    20: ("gpu_pcie_transmit_bytes_per_second", MIB), 21: ("gpu_pcie_receive_bytes_per_second", MIB),
}
"""NVML_GPM_METRIC_* id -> (field, scale to base units): percentages and MiB/s."""
MIG_NAME = re.compile(r"MIG\s+(\S+)$")
_UINT_MAX = 0xFFFFFFFF


def load_pynvml() -> ModuleType:
    """Import the real bindings (kept here so only this module imports ``pynvml``)."""
    import pynvml  # noqa: PLC0415 (lazy: the import is the seam the tests replace)

    module: ModuleType = pynvml
    return module


def reason_of(err: BaseException) -> str:
    """``NVMLError_NotSupported`` -> ``NotSupported``; other errors keep their class name."""
    return type(err).__name__.removeprefix("NVMLError_")


class _DeviceLost(Exception):
    pass


class NvmlBackend:
    """Reads GPUs and MIG instances through NVML. Construction does no I/O."""

    name = "nvml"

    def __init__(self, lib: Any | None = None) -> None:
        self._lib: Any = lib
        self._initialized = False
        self._next_init_s = 0.0
        self._backoff_s = BACKOFF_MIN_S
        self._unsupported: set[tuple[str, str]] = set()
        self._gpm_prev: dict[str, Any] = {}
        self._xids: dict[str, dict[int, int]] = {}
        self._event_set: Any = None
        self._driver = ""

    # --- lifecycle -----------------------------------------------------------------------

    def init(self, now: float) -> None:
        """Initialise NVML unless in backoff; raises ``BackendUnavailable`` on failure."""
        if self._initialized:
            return
        if now < self._next_init_s:
            raise BackendUnavailable(f"NVML re-init in backoff for {self._next_init_s - now:.1f}s")
        try:
            if self._lib is None:
                self._lib = load_pynvml()
            self._lib.nvmlInit()
            self._driver = _text(self._lib.nvmlSystemGetDriverVersion())
        except Exception as e:
            self._next_init_s = now + self._backoff_s
            self._backoff_s = min(BACKOFF_MAX_S, self._backoff_s * 2)
            raise BackendUnavailable(f"NVML init failed: {reason_of(e)}: {e}") from e
        self._initialized = True
        self._backoff_s = BACKOFF_MIN_S
        self._unsupported.clear()
        self._gpm_prev.clear()
        self._register_xid_events()
        log.info("NVML initialised", extra={"fields": {"driver": self._driver}})

    def close(self) -> None:
        if not self._initialized:
            return
        self._initialized = False
        self._gpm_prev.clear()
        try:
            if self._event_set is not None:
                self._lib.nvmlEventSetFree(self._event_set)
            self._lib.nvmlShutdown()
        except Exception as e:  # shutting down after a driver reload fails; nothing to keep
            log.info("NVML shutdown failed", extra={"fields": {"reason": reason_of(e)}})
        self._event_set = None

    def _register_xid_events(self) -> None:
        lib = self._lib
        try:
            self._event_set = lib.nvmlEventSetCreate()
            for i in range(lib.nvmlDeviceGetCount()):
                lib.nvmlDeviceRegisterEvents(lib.nvmlDeviceGetHandleByIndex(i),
                                             lib.nvmlEventTypeXidCriticalError, self._event_set)
        except lib.NVMLError as e:
            log.info("XID events unavailable", extra={"fields": {"reason": reason_of(e)}})

    # --- reading -------------------------------------------------------------------------

    def read(self, now: float) -> BackendReading:
        self.init(now)
        try:
            return self._read(now)
        except self._lib.NVMLError as e:
            if reason_of(e) not in LIFECYCLE_ERRORS:
                raise BackendUnavailable(f"NVML read failed: {reason_of(e)}") from e
            log.warning("NVML lifecycle error, re-initialising", extra={"fields": {"reason": reason_of(e)}})
            self.close()
            self._next_init_s = now + self._backoff_s
            raise BackendUnavailable(f"NVML {reason_of(e)}; re-init scheduled") from e

    def _read(self, now: float) -> BackendReading:
        lib = self._lib
        self._drain_xids()
        readings: list[DeviceReading] = []
        lost: list[Device] = []
        errors: list[FieldError] = []
        for i in range(lib.nvmlDeviceGetCount()):
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(i)
                gpu = self._identity(i, handle)
            except lib.NVMLError as e:
                if reason_of(e) in LIFECYCLE_ERRORS:
                    raise
                # GpuIsLost, NoPermission, ...: this GPU is unreadable, the others are not
                errors.append(FieldError("device", reason_of(e)))
                lost.append(Device(i, f"unreadable-{i}", "unknown"))
                continue
            try:
                readings.append(self._read_gpu(gpu, handle, now, errors))
                readings.extend(self._read_mig(gpu, handle, now, errors))
            except _DeviceLost:
                lost.append(gpu)
        return BackendReading(tuple(readings), tuple(lost), tuple(errors), self._driver)

    def _identity(self, index: int, handle: Any) -> Device:
        lib = self._lib
        pci = lib.nvmlDeviceGetPciInfo(handle)
        return Device(index, _text(lib.nvmlDeviceGetUUID(handle)), _text(lib.nvmlDeviceGetName(handle)),
                      _text(getattr(pci, "busId", "")))

    def _get(self, d: Device, name: str, fn: Callable[[], float], errors: list[FieldError]) -> float | None:
        """Call ``fn``; a per-field failure returns None and is recorded (NotSupported: not retried)."""
        if (d.uuid, name) in self._unsupported:
            return None
        try:
            return float(fn())
        except self._lib.NVMLError as e:
            reason = reason_of(e)
            if reason == "GpuIsLost":
                raise _DeviceLost from e
            if reason in LIFECYCLE_ERRORS:
                raise
            if reason == "NotSupported":
                self._unsupported.add((d.uuid, name))
            errors.append(FieldError(name, reason))
            return None

    def _field(self, d: Device, name: str, fn: Callable[[], float], errors: list[FieldError],
               out: dict[str, float]) -> None:
        """Read one metric into ``out``; impossible values are dropped as ``OutOfRange``."""
        value = self._get(d, name, fn, errors)
        if value is None:
            return
        if sane(name, value):
            out[name] = value
        else:
            errors.append(FieldError(name, "OutOfRange"))

    def _read_gpu(self, d: Device, h: Any, now: float, errors: list[FieldError]) -> DeviceReading:
        lib = self._lib
        out: dict[str, float] = {}

        def f(name: str, fn: Callable[[], float]) -> None:
            self._field(d, name, fn, errors, out)

        f("gpu_utilization_ratio", lambda: lib.nvmlDeviceGetUtilizationRates(h).gpu / 100)
        f("gpu_memory_utilization_ratio", lambda: lib.nvmlDeviceGetUtilizationRates(h).memory / 100)
        self._memory(d, h, errors, out)
        f("gpu_power_usage_watts", lambda: lib.nvmlDeviceGetPowerUsage(h) / 1000)
        f("gpu_power_limit_watts", lambda: lib.nvmlDeviceGetEnforcedPowerLimit(h) / 1000)
        f("gpu_energy_consumption_joules_total", lambda: lib.nvmlDeviceGetTotalEnergyConsumption(h) / 1000)
        f("gpu_temperature_celsius", lambda: lib.nvmlDeviceGetTemperature(h, lib.NVML_TEMPERATURE_GPU))
        f("gpu_sm_clock_hertz", lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_SM) * 1e6)
        f("gpu_memory_clock_hertz", lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_MEM) * 1e6)
        f("gpu_pcie_replay_total", lambda: lib.nvmlDeviceGetPcieReplayCounter(h))
        f("gpu_ecc_corrected_errors_total", lambda: lib.nvmlDeviceGetTotalEccErrors(
            h, lib.NVML_MEMORY_ERROR_TYPE_CORRECTED, lib.NVML_AGGREGATE_ECC))
        f("gpu_ecc_uncorrected_errors_total", lambda: lib.nvmlDeviceGetTotalEccErrors(
            h, lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, lib.NVML_AGGREGATE_ECC))
        self._remapped_rows(d, h, errors, out)
        self._field_values(d, h, errors, out)
        self._gpm(d, h, None, errors, out)
        mask = self._get(d, "clock_events", lambda: lib.nvmlDeviceGetCurrentClocksEventReasons(h), errors)
        events = None if mask is None else clock_event_reasons(int(mask))
        return DeviceReading(d, now, out, events, dict(self._xids.get(d.uuid, {})))

    def _memory(self, d: Device, h: Any, errors: list[FieldError], out: dict[str, float]) -> None:
        lib = self._lib
        mem: list[Any] = []

        def info() -> float:
            mem.append(lib.nvmlDeviceGetMemoryInfo(h, version=lib.nvmlMemory_v2))
            return float(mem[0].total)

        self._field(d, "gpu_memory_total_bytes", info, errors, out)
        if mem:
            out["gpu_memory_used_bytes"] = float(mem[0].used)
            out["gpu_memory_free_bytes"] = float(mem[0].free)
            out["gpu_memory_reserved_bytes"] = float(mem[0].reserved)

    def _remapped_rows(self, d: Device, h: Any, errors: list[FieldError], out: dict[str, float]) -> None:
        rows: list[Any] = []

        def remap() -> float:
            rows.extend(self._lib.nvmlDeviceGetRemappedRows(h))
            return float(rows[0])

        self._field(d, "gpu_row_remap_correctable_total", remap, errors, out)
        if rows:
            out["gpu_row_remap_uncorrectable_total"] = float(rows[1])
            out["gpu_row_remap_pending"] = float(bool(rows[2]))
            out["gpu_row_remap_failed"] = float(bool(rows[3]))

    def _field_values(self, d: Device, h: Any, errors: list[FieldError], out: dict[str, float]) -> None:
        """Memory temperature and NVLink byte counters in one batched call (per-field status)."""
        lib = self._lib
        wanted = [(82, 0, "gpu_memory_temperature_celsius", 1.0),
                  (138, _UINT_MAX, "gpu_nvlink_transmit_bytes_total", 1024.0),
                  (139, _UINT_MAX, "gpu_nvlink_receive_bytes_total", 1024.0)]
        wanted = [w for w in wanted if (d.uuid, w[2]) not in self._unsupported]
        if not wanted:
            return
        try:
            values = lib.nvmlDeviceGetFieldValues(h, [(fid, scope) for fid, scope, _, _ in wanted])
        except lib.NVMLError as e:
            errors.append(FieldError("field_values", reason_of(e)))
            return
        for (_, _, name, scale), v in zip(wanted, values, strict=False):
            if v.nvmlReturn != 0:
                reason = "NotSupported" if v.nvmlReturn == 3 else f"Return{v.nvmlReturn}"
                if v.nvmlReturn == 3:
                    self._unsupported.add((d.uuid, name))
                errors.append(FieldError(name, reason))
            elif sane(name, value := _field_value(v) * scale):
                out[name] = value

    def _gpm(self, d: Device, h: Any, gi: int | None, errors: list[FieldError],
             out: dict[str, float]) -> None:
        """Take a GPM sample; with the previous one, compute the activity ratios."""
        lib = self._lib
        if (d.uuid, "gpm") in self._unsupported:
            return
        try:
            if gi is None and not lib.nvmlGpmQueryDeviceSupport(h).isSupportedDevice:
                self._unsupported.add((d.uuid, "gpm"))
                return
            sample = lib.nvmlGpmSampleAlloc()
            if gi is None:
                lib.nvmlGpmSampleGet(h, sample)
            else:
                lib.nvmlGpmMigSampleGet(h, gi, sample)
        except lib.NVMLError as e:
            if reason_of(e) in LIFECYCLE_ERRORS:
                raise
            self._unsupported.add((d.uuid, "gpm"))
            errors.append(FieldError("gpm", reason_of(e)))
            return
        prev = self._gpm_prev.get(d.uuid)
        self._gpm_prev[d.uuid] = sample
        if prev is None:
            return
        try:
            result = lib.nvmlGpmMetricsGet(_gpm_request(lib, prev, sample))
        except lib.NVMLError as e:
            errors.append(FieldError("gpm", reason_of(e)))
            return
        finally:
            lib.nvmlGpmSampleFree(prev)
        for m in result.metrics[: len(GPM_METRICS)]:
            name, scale = GPM_METRICS[m.metricId]
            if m.nvmlReturn == 0 and sane(name, value := float(m.value) * scale):
                out[name] = value

    def _read_mig(self, gpu: Device, h: Any, now: float, errors: list[FieldError]) -> list[DeviceReading]:
        lib = self._lib
        try:
            current, _pending = lib.nvmlDeviceGetMigMode(h)
        except lib.NVMLError:
            return []
        if current != lib.NVML_DEVICE_MIG_ENABLE:
            return []
        readings = []
        for slot in range(lib.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                m = lib.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
            except lib.NVMLError:
                continue  # empty slot (NotFound / InvalidArgument)
            try:
                gi = int(lib.nvmlDeviceGetGpuInstanceId(m))
                name = _text(lib.nvmlDeviceGetName(m))
                mig_uuid = _text(lib.nvmlDeviceGetUUID(m))
            except lib.NVMLError as e:
                if reason_of(e) in LIFECYCLE_ERRORS:
                    raise
                errors.append(FieldError("mig_device", reason_of(e)))
                continue
            match = MIG_NAME.search(name)
            d = Device(gpu.index, mig_uuid, gpu.model, gpu.pci_bus_id,
                       match.group(1) if match else "unknown", str(gi), gpu.uuid)
            out: dict[str, float] = {}
            self._memory(d, m, errors, out)
            self._gpm(d, h, gi, errors, out)
            readings.append(DeviceReading(d, now, out, None, dict(self._xids.get(gpu.uuid, {}))))
        return readings

    def _drain_xids(self) -> None:
        lib = self._lib
        if self._event_set is None:
            return
        for _ in range(1000):  # bounded: an event storm cannot hold the loop
            try:
                data = lib.nvmlEventSetWait_v2(self._event_set, 0)
            except lib.NVMLError:
                return  # Timeout: no more events
            uuid = _text(lib.nvmlDeviceGetUUID(data.device))
            counts = self._xids.setdefault(uuid, {})
            counts[int(data.eventData)] = counts.get(int(data.eventData), 0) + 1


def _gpm_request(lib: Any, first: Any, second: Any) -> Any:
    req = lib.c_nvmlGpmMetricsGet_t()
    req.version = lib.NVML_GPM_METRICS_GET_VERSION
    req.numMetrics = len(GPM_METRICS)
    req.sample1 = first
    req.sample2 = second
    for i, metric_id in enumerate(GPM_METRICS):
        req.metrics[i].metricId = metric_id
    return req


def _field_value(v: Any) -> float:
    """The value of a ``c_nvmlFieldValue_t`` according to its ``valueType``."""
    kinds = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(v.value, kinds.get(v.valueType, "ullVal")))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
