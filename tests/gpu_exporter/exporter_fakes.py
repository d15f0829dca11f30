"""Test doubles at the exporter's seams: a fake pynvml module and an instant clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    """Mirrors pynvml: one subclass per NVML return code."""


def _error(name: str) -> type[NVMLError]:
    return type(f"NVMLError_{name}", (NVMLError,), {})


ERRORS = {n: _error(n) for n in (
    "NotSupported", "NoPermission", "GpuIsLost", "LibRmVersionMismatch", "Uninitialized",
    "LibraryNotFound", "Timeout", "NotFound", "DriverNotLoaded")}


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    util: int = 50
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)
    gpm: bool = True
    mig: list[tuple[str, int, str]] = field(default_factory=list)
    """(mig uuid, gpu instance id, profile)."""
    sm_util_pct: float = 40.0


class FakeNvml:
    """The pynvml functions the backend calls, over a list of ``FakeGpu``."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_AGGREGATE_ECC = 1
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_GPM_METRICS_GET_VERSION = 1
    nvmlEventTypeXidCriticalError = 8
    nvmlMemory_v2 = 0x02000028
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.initialized = False
        self.init_error: str | None = None
        self.global_error: str | None = None
        self.init_calls = 0
        self.calls: dict[str, int] = {}
        self.events: list[tuple[int, int]] = []
        self.gpm_tick = 0
        for name, cls in ERRORS.items():
            setattr(self, f"NVMLError_{name}", cls)

    def _gpu(self, h: Any, what: str) -> FakeGpu:
        self.calls[what] = self.calls.get(what, 0) + 1
        if not self.initialized:
            raise ERRORS["Uninitialized"]()
        if self.global_error:
            raise ERRORS[self.global_error]()
        gpu: FakeGpu = self.gpus[h] if isinstance(h, int) else h.gpu
        if gpu.lost:
            raise ERRORS["GpuIsLost"]()
        if what in gpu.unsupported:
            raise ERRORS["NotSupported"]()
        return gpu

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error:
            raise ERRORS[self.init_error]()
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.95.05"

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialized:
            raise ERRORS["Uninitialized"]()
        if self.global_error:
            raise ERRORS[self.global_error]()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return h.uuid if isinstance(h, SimpleNamespace) else self._gpu(h, "uuid").uuid

    def nvmlDeviceGetName(self, h: Any) -> bytes:
        if isinstance(h, SimpleNamespace):
            return f"{h.gpu.name} MIG {h.profile}".encode()
        return self._gpu(h, "name").name.encode()

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        self._gpu(h, "pci")
        return SimpleNamespace(busId=f"00000000:{h:02X}:00.0".encode())

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        g = self._gpu(h, "utilization")
        return SimpleNamespace(gpu=g.util, memory=g.util // 2)

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        assert version == self.nvmlMemory_v2
        total = 80 * 2**30 if isinstance(h, int) else 10 * 2**30
        return SimpleNamespace(total=total, used=2**30, free=total - 2**30 - 2**29, reserved=2**29)

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        self._gpu(h, "power")
        return 350_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        self._gpu(h, "energy")
        return 123_456_000

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        self._gpu(h, "temperature")
        return 644245923 if self.gpus[h].name == "sentinel" else 55

    def nvmlDeviceGetClockInfo(self, h: Any, clock: int) -> int:
        return 1980 if clock == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPcieReplayCounter(self, h: Any) -> int:
        return 3

    def nvmlDeviceGetTotalEccErrors(self, h: Any, kind: int, counter: int) -> int:
        self._gpu(h, "ecc")
        return 7 if kind == self.NVML_MEMORY_ERROR_TYPE_CORRECTED else 0

    def nvmlDeviceGetRemappedRows(self, h: Any) -> tuple[int, int, int, int]:
        self._gpu(h, "remap")
        return (2, 0, 1, 0)

    def nvmlDeviceGetFieldValues(self, h: Any, ids: list[tuple[int, int]]) -> list[Any]:
        self._gpu(h, "field_values")
        out = []
        for fid, _scope in ids:
            value = SimpleNamespace(ullVal=1000 * fid, uiVal=0, dVal=0.0)
            ret = 3 if fid == 82 and "memory_temp" in self.gpus[h].unsupported else 0
            out.append(SimpleNamespace(fieldId=fid, nvmlReturn=ret, valueType=3, value=value))
        return out

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        self._gpu(h, "clock_events")
        return 0x4 | 0x40

    def nvmlGpmQueryDeviceSupport(self, h: Any) -> Any:
        return SimpleNamespace(isSupportedDevice=self._gpu(h, "gpm").gpm)

    def nvmlGpmSampleAlloc(self) -> Any:
        return SimpleNamespace(freed=False)

    def nvmlGpmSampleGet(self, h: Any, sample: Any) -> None:
        sample.gpu = self._gpu(h, "gpm_sample")

    def nvmlGpmMigSampleGet(self, h: Any, gi: int, sample: Any) -> None:
        sample.gpu = self._gpu(h, "gpm_mig_sample")

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        sample.freed = True

    def c_nvmlGpmMetricsGet_t(self) -> Any:
        return SimpleNamespace(metrics=[SimpleNamespace(metricId=0) for _ in range(32)])

    def nvmlGpmMetricsGet(self, req: Any) -> Any:
        for m in req.metrics:
            pct = req.sample2.gpu.sm_util_pct
            m.value, m.nvmlReturn = (pct if m.metricId < 20 else 100.0), 0
        return req

    def nvmlDeviceGetMigMode(self, h: Any) -> tuple[int, int]:
        g = self._gpu(h, "mig_mode")
        return (1, 1) if g.mig else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, slot: int) -> Any:
        g = self._gpu(h, "mig_handle")
        if slot >= len(g.mig):
            raise ERRORS["NotFound"]()
        uuid, gi, profile = g.mig[slot]
        return SimpleNamespace(gpu=g, uuid=uuid, gi=gi, profile=profile)

    def nvmlDeviceGetGpuInstanceId(self, m: Any) -> int:
        return int(m.gi)

    def nvmlEventSetCreate(self) -> str:
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h: Any, kind: int, event_set: str) -> None:
        self._gpu(h, "register_events")

    def nvmlEventSetFree(self, event_set: str) -> None:
        pass

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int) -> Any:
        if not self.events:
            raise ERRORS["Timeout"]()
        index, xid = self.events.pop(0)
        return SimpleNamespace(device=index, eventData=xid, eventType=self.nvmlEventTypeXidCriticalError)


class FakeClock:
    """Time that advances only when the code sleeps (or a test says so)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)
