"""GPU backends behind one Protocol, and the deterministic simulated backend.

A backend is read from the collection thread only: ``read(now)`` returns one immutable
``BackendReading`` (devices, devices lost this round, per-field errors). Scrapes never call it.
The simulated backend models a node of identical GPUs (for example 8 x H100 80GB, optionally
split into MIG instances) whose load comes from a function of ``(gpu_index, now)`` or a trace,
so tests and the demo get the same numbers every run.
"""

from __future__ import annotations

import csv
import hashlib
import math
import uuid as uuidlib
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gpu_exporter.fields import MIB, clock_event_reasons


class BackendError(Exception):
    """Base of the errors a backend raises."""


class BackendUnavailable(BackendError):
    """The whole backend cannot be read now (library missing, driver reloading, in backoff)."""


@dataclass(frozen=True)
class Device:
    """Identity of a physical GPU or of one MIG instance (which is its own device)."""

    index: int
    """Index of the physical GPU (a MIG instance carries its parent's index)."""
    uuid: str
    model: str
    pci_bus_id: str = ""
    mig_profile: str = ""
    """MIG profile such as ``1g.10gb``; empty for a whole GPU."""
    gpu_instance: str = ""
    """MIG GPU-instance id; empty for a whole GPU."""
    parent_uuid: str = ""
    """UUID of the physical GPU a MIG instance lives on; empty for a whole GPU."""


@dataclass(frozen=True)
class DeviceReading:
    """Everything read from one device in one collection round."""

    device: Device
    timestamp_s: float
    values: Mapping[str, float]
    """Metric name (``gpu_exporter.fields``) -> value in base units; absent when unsupported."""
    clock_events: frozenset[str] | None = None
    """Active clock-event reasons; None when the device cannot report them."""
    xid_counts: Mapping[int, int] = field(default_factory=dict)
    """XID code -> events seen since the exporter started (never decreases)."""


@dataclass(frozen=True)
class FieldError:
    """A sample dropped this round: which field, and the NVML reason (``NotSupported``, ...)."""

    field: str
    reason: str


@dataclass(frozen=True)
class BackendReading:
    """One round: readable devices, devices that were lost, and the samples dropped."""

    devices: tuple[DeviceReading, ...]
    lost: tuple[Device, ...] = ()
    field_errors: tuple[FieldError, ...] = ()
    driver_version: str = ""


class Backend(Protocol):
    """What the collection loop needs from a GPU source."""

    name: str

    def read(self, now: float) -> BackendReading:
        """Read every device. Raises ``BackendUnavailable`` when no device can be read."""
        ...

    def close(self) -> None:
        """Release the library; ``read`` may initialise again later."""
        ...


# --- simulated backend ------------------------------------------------------------------

LoadFn = Callable[[int, float], float]
"""(gpu index, now in seconds) -> load in 0..1."""


@dataclass(frozen=True)
class GpuProfile:
    """Static characteristics of a simulated GPU model."""

    model: str
    memory_total_bytes: int
    power_idle_watts: float
    power_max_watts: float
    sm_clock_max_hz: float
    memory_clock_hz: float
    reserved_bytes: int = 512 * MIB
    has_gpm: bool = True
    """Hopper and later: SM activity/occupancy/tensor/DRAM through NVML GPM."""
    mig_profiles: Mapping[str, int] = field(default_factory=dict)
    """MIG profile -> how many instances of it fit on one GPU."""


PROFILES: Mapping[str, GpuProfile] = {
    "h100-80gb": GpuProfile("NVIDIA H100 80GB HBM3", 80 * 1024 * MIB, 70.0, 700.0, 1.98e9, 2.619e9,
                            mig_profiles={"1g.10gb": 7, "2g.20gb": 3, "3g.40gb": 2, "7g.80gb": 1}),
    "h200-141gb": GpuProfile("NVIDIA H200", 141 * 1024 * MIB, 75.0, 700.0, 1.98e9, 3.2e9,
                             mig_profiles={"1g.18gb": 7, "3g.71gb": 2}),
    "a100-80gb": GpuProfile("NVIDIA A100-SXM4-80GB", 80 * 1024 * MIB, 60.0, 400.0, 1.41e9, 1.593e9,
                            has_gpm=False, mig_profiles={"1g.10gb": 7, "3g.40gb": 2}),
    "l4": GpuProfile("NVIDIA L4", 24 * 1024 * MIB, 16.0, 72.0, 2.04e9, 6.251e9, has_gpm=False),
}


def constant_load(value: float) -> LoadFn:
    """Every GPU at the same load all the time."""
    return lambda _index, _now: value


def sine_load(period_s: float = 600.0, low: float = 0.1, high: float = 0.9) -> LoadFn:
    """A daily-shape stand-in: a sine per GPU, phase-shifted by index so GPUs differ."""
    def load(index: int, now: float) -> float:
        phase = 2 * math.pi * (now / period_s + index / 8)
        return low + (high - low) * (0.5 + 0.5 * math.sin(phase))
    return load


def trace_load(points: Sequence[tuple[float, float]]) -> LoadFn:
    """Piecewise-linear load over ``(t_seconds, load)`` points, held flat outside them."""
    if not points:
        raise ValueError("trace_load needs at least one (t, load) point")
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]

    def load(_index: int, now: float) -> float:
        i = bisect_right(ts, now)
        if i == 0:
            return vs[0]
        if i == len(ts):
            return vs[-1]
        t0, t1, v0, v1 = ts[i - 1], ts[i], vs[i - 1], vs[i]
        return v0 + (v1 - v0) * (now - t0) / (t1 - t0)
    return load


def load_trace_csv(path: Path) -> LoadFn:
    """A trace from a CSV file with a ``timestamp_s,load`` header."""
    with path.open(newline="") as f:
        rows = [(float(r["timestamp_s"]), float(r["load"])) for r in csv.DictReader(f)]
    return trace_load(sorted(rows))


def _uuid(seed: str) -> str:
    return str(uuidlib.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16]))


@dataclass
class _SimState:
    energy_j: float = 0.0
    last_now: float | None = None
    xids: dict[int, int] = field(default_factory=dict)


class SimulatedBackend:
    """Deterministic GPUs of one profile. Fault injection: unsupported fields, lost GPUs, XIDs."""

    name = "simulated"

    def __init__(self, profile: GpuProfile, count: int = 8, load: LoadFn | None = None, *,
                 node: str = "node", mig_profile: str | None = None,
                 unsupported: frozenset[str] = frozenset()) -> None:
        if mig_profile is not None and mig_profile not in profile.mig_profiles:
            allowed = ", ".join(sorted(profile.mig_profiles)) or "none"
            raise ValueError(f"mig_profile {mig_profile!r} not available on {profile.model}; "
                             f"allowed: {allowed}")
        self.profile = profile
        self.load: LoadFn = load or sine_load()
        self.unsupported = unsupported
        self.lost_indices: set[int] = set()
        self.unavailable = False
        self._devices = self._enumerate(count, node, mig_profile)
        self._state = {d.uuid: _SimState() for d in self._devices}

    def _enumerate(self, count: int, node: str, mig_profile: str | None) -> tuple[Device, ...]:
        devices: list[Device] = []
        for i in range(count):
            gpu_uuid = "GPU-" + _uuid(f"{node}/{i}")
            bus = f"00000000:{0x18 + 0x10 * i:02X}:00.0"
            if mig_profile is None:
                devices.append(Device(i, gpu_uuid, self.profile.model, bus))
                continue
            for gi in range(self.profile.mig_profiles[mig_profile]):
                devices.append(Device(i, "MIG-" + _uuid(f"{node}/{i}/{gi}"), self.profile.model, bus,
                                      mig_profile, str(gi + 1), gpu_uuid))
        return tuple(devices)

    @property
    def devices(self) -> tuple[Device, ...]:
        return self._devices

    def inject_xid(self, index: int, xid: int) -> None:
        """Record an XID event on every device of physical GPU ``index``."""
        for d in self._devices:
            if d.index == index:
                xids = self._state[d.uuid].xids
                xids[xid] = xids.get(xid, 0) + 1

    def read(self, now: float) -> BackendReading:
        if self.unavailable:
            raise BackendUnavailable("simulated driver reload")
        readings: list[DeviceReading] = []
        lost: list[Device] = []
        errors: list[FieldError] = []
        for d in self._devices:
            if d.index in self.lost_indices:
                lost.append(d)
                continue
            values = self._values(d, now)
            for name in sorted(self.unsupported & values.keys()):
                del values[name]
                errors.append(FieldError(name, "NotSupported"))
            readings.append(DeviceReading(d, now, values, self._clock_events(d, now),
                                          dict(self._state[d.uuid].xids)))
        return BackendReading(tuple(readings), tuple(lost), tuple(errors), "580.95.05")

    def _share(self, d: Device) -> float:
        if not d.mig_profile:
            return 1.0
        return int(d.mig_profile.split("g", 1)[0]) / 7

    def _values(self, d: Device, now: float) -> dict[str, float]:
        p = self.profile
        load = min(1.0, max(0.0, self.load(d.index, now)))
        share = self._share(d)
        total = p.memory_total_bytes * share
        used = (0.05 + 0.85 * min(1.0, load * 4)) * (total - p.reserved_bytes * share)
        power = (p.power_idle_watts + (p.power_max_watts - p.power_idle_watts) * load) * share
        state = self._state[d.uuid]
        if state.last_now is not None and now > state.last_now:
            state.energy_j += power * (now - state.last_now)
        state.last_now = now
        values: dict[str, float] = {
            "gpu_memory_total_bytes": total,
            "gpu_memory_reserved_bytes": p.reserved_bytes * share,
            "gpu_memory_used_bytes": used,
            "gpu_memory_free_bytes": total - p.reserved_bytes * share - used,
        }
        if p.has_gpm:
            values |= {"gpu_sm_active_ratio": 0.95 * load, "gpu_sm_occupancy_ratio": 0.6 * load,
                       "gpu_tensor_active_ratio": 0.7 * load, "gpu_dram_active_ratio": 0.8 * load,
                       "gpu_graphics_engine_active_ratio": min(1.0, 1.1 * load),
                       "gpu_pcie_transmit_bytes_per_second": 2e9 * load,
                       "gpu_pcie_receive_bytes_per_second": 4e9 * load}
        if d.mig_profile:
            return values
        return values | {
            "gpu_utilization_ratio": min(1.0, 1.2 * load), "gpu_memory_utilization_ratio": 0.6 * load,
            "gpu_power_usage_watts": power, "gpu_power_limit_watts": p.power_max_watts,
            "gpu_energy_consumption_joules_total": state.energy_j,
            "gpu_temperature_celsius": 30 + 45 * load, "gpu_memory_temperature_celsius": 35 + 40 * load,
            "gpu_sm_clock_hertz": p.sm_clock_max_hz * (0.5 + 0.5 * load),
            "gpu_memory_clock_hertz": p.memory_clock_hz,
            "gpu_nvlink_transmit_bytes_total": 1e11 * state.energy_j / p.power_max_watts,
            "gpu_nvlink_receive_bytes_total": 1e11 * state.energy_j / p.power_max_watts,
            "gpu_pcie_replay_total": 0.0,
            "gpu_ecc_corrected_errors_total": 0.0, "gpu_ecc_uncorrected_errors_total": 0.0,
            "gpu_row_remap_correctable_total": 0.0, "gpu_row_remap_uncorrectable_total": 0.0,
            "gpu_row_remap_pending": 0.0, "gpu_row_remap_failed": 0.0,
        }

    def _clock_events(self, d: Device, now: float) -> frozenset[str]:
        load = self.load(d.index, now)
        if load < 0.05:
            return clock_event_reasons(0x1)
        return clock_event_reasons(0x4) if load > 0.95 else frozenset()

    def close(self) -> None:
        """Nothing to release."""


def simulated_from_spec(spec: str, node: str, load: LoadFn | None = None) -> SimulatedBackend:
    """Build from ``PROFILE[xCOUNT][:mig=PROFILE]``, e.g. ``h100-80gb x8`` or ``h100-80gb:mig=1g.10gb``."""
    name, _, opts = spec.partition(":")
    name, _, count = name.replace(" ", "").partition("x")
    if name not in PROFILES:
        raise ValueError(f"unknown GPU profile {name!r}; allowed: {', '.join(sorted(PROFILES))}")
    mig = None
    if opts:
        key, _, mig = opts.partition("=")
        if key != "mig" or not mig:
            raise ValueError(f"bad simulated option {opts!r}; allowed: mig=PROFILE")
    return SimulatedBackend(PROFILES[name], int(count or 8), load, node=node, mig_profile=mig)
