"""The GPU metric contract: one table of per-device fields, their units and their DCGM twins.

Backends fill ``DeviceReading.values`` keyed by the prescale metric name (base units: ratios
0..1, bytes, watts, joules, hertz, celsius). The collector reads this table to name, type and
document each family, and to convert to the classic DCGM name and unit with ``--naming dcgm``.
Changing a name here changes the contract that dashboards and alerts rely on; the tests pin it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MIB = 1024 * 1024


@dataclass(frozen=True)
class Field:
    """One per-device metric family."""

    name: str
    """Exposition name in prescale naming (counters end in ``_total``)."""
    kind: Literal["gauge", "counter"]
    help: str
    dcgm: str | None = None
    """Classic dcgm-exporter name, or None when dcgm-exporter has no equivalent."""
    dcgm_scale: float = 1.0
    """Multiply the base-unit value by this to get the DCGM unit (e.g. 100 for %, 1/MiB)."""
    max_value: float = math.inf
    """Values above this are impossible (driver sentinels such as 4294967295) and are dropped."""


FIELDS: tuple[Field, ...] = (
    Field("gpu_utilization_ratio", "gauge", "Fraction of time one or more kernels ran (NVML, coarse)",
          "DCGM_FI_DEV_GPU_UTIL", 100.0, 1.0),
    Field("gpu_memory_utilization_ratio", "gauge", "Fraction of time device memory was read or written",
          "DCGM_FI_DEV_MEM_COPY_UTIL", 100.0, 1.0),
    Field("gpu_sm_active_ratio", "gauge", "Fraction of cycles an SM had a warp assigned (GPM, Hopper+)",
          "DCGM_FI_PROF_SM_ACTIVE", 1.0, 2.0),
    Field("gpu_sm_occupancy_ratio", "gauge", "Resident warps over the SM maximum (GPM, Hopper+)",
          "DCGM_FI_PROF_SM_OCCUPANCY", 1.0, 2.0),
    Field("gpu_tensor_active_ratio", "gauge", "Fraction of cycles a tensor pipe was active (GPM, Hopper+)",
          "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1.0, 2.0),
    Field("gpu_dram_active_ratio", "gauge", "Fraction of peak DRAM bandwidth used (GPM, Hopper+)",
          "DCGM_FI_PROF_DRAM_ACTIVE", 1.0, 2.0),
    Field("gpu_graphics_engine_active_ratio", "gauge", "Fraction of time the graphics engine was busy (GPM)",
          "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1.0, 2.0),
    Field("gpu_memory_used_bytes", "gauge", "Device memory allocated by processes (memory info v2)",
          "DCGM_FI_DEV_FB_USED", 1 / MIB),
    Field("gpu_memory_free_bytes", "gauge", "Device memory free", "DCGM_FI_DEV_FB_FREE", 1 / MIB),
    Field("gpu_memory_reserved_bytes", "gauge", "Device memory reserved by the driver and firmware",
          "DCGM_FI_DEV_FB_RESERVED", 1 / MIB),
    Field("gpu_memory_total_bytes", "gauge", "Device memory capacity", "DCGM_FI_DEV_FB_TOTAL", 1 / MIB),
    Field("gpu_power_usage_watts", "gauge", "Board power draw", "DCGM_FI_DEV_POWER_USAGE", 1.0, 5000.0),
    Field("gpu_power_limit_watts", "gauge", "Enforced power limit", "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
          1.0, 5000.0),
    Field("gpu_energy_consumption_joules_total", "counter", "Energy used since the driver loaded",
          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1000.0),
    Field("gpu_temperature_celsius", "gauge", "GPU core temperature", "DCGM_FI_DEV_GPU_TEMP", 1.0, 200.0),
    Field("gpu_memory_temperature_celsius", "gauge", "HBM temperature", "DCGM_FI_DEV_MEMORY_TEMP",
          1.0, 200.0),
    Field("gpu_sm_clock_hertz", "gauge", "SM clock", "DCGM_FI_DEV_SM_CLOCK", 1e-6, 1e10),
    Field("gpu_memory_clock_hertz", "gauge", "Memory clock", "DCGM_FI_DEV_MEM_CLOCK", 1e-6, 1e10),
    Field("gpu_pcie_transmit_bytes_per_second", "gauge", "PCIe transmit throughput",
          "DCGM_FI_PROF_PCIE_TX_BYTES", 1.0),
    Field("gpu_pcie_receive_bytes_per_second", "gauge", "PCIe receive throughput",
          "DCGM_FI_PROF_PCIE_RX_BYTES", 1.0),
    Field("gpu_pcie_replay_total", "counter", "PCIe replays (link retries)",
          "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"),
    Field("gpu_nvlink_transmit_bytes_total", "counter", "NVLink data transmitted, all links"),
    Field("gpu_nvlink_receive_bytes_total", "counter", "NVLink data received, all links"),
    Field("gpu_ecc_corrected_errors_total", "counter", "Corrected ECC errors, lifetime (aggregate)",
          "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL"),
    Field("gpu_ecc_uncorrected_errors_total", "counter", "Uncorrected ECC errors, lifetime (aggregate)",
          "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"),
    Field("gpu_row_remap_correctable_total", "counter", "Rows remapped for correctable errors",
          "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"),
    Field("gpu_row_remap_uncorrectable_total", "counter", "Rows remapped for uncorrectable errors",
          "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"),
    Field("gpu_row_remap_pending", "gauge", "1 when a row remap waits for a GPU reset",
          "DCGM_FI_DEV_ROW_REMAP_PENDING", 1.0, 1.0),
    Field("gpu_row_remap_failed", "gauge", "1 when a row remap failed", "DCGM_FI_DEV_ROW_REMAP_FAILURE",
          1.0, 1.0),
)
FIELDS_BY_NAME: Mapping[str, Field] = {f.name: f for f in FIELDS}

CLOCK_EVENT_REASONS: tuple[str, ...] = (
    "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
    "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting",
)
"""Clock-event (throttle) reasons in NVML bit order: reason i is bit ``1 << i``."""


def clock_event_mask(reasons: frozenset[str]) -> int:
    """The NVML bitmask for a set of reasons (what DCGM_FI_DEV_CLOCK_THROTTLE_REASONS shows)."""
    return sum(1 << i for i, r in enumerate(CLOCK_EVENT_REASONS) if r in reasons)


def clock_event_reasons(mask: int) -> frozenset[str]:
    """The reasons set in an NVML clock-event bitmask (unknown bits are ignored)."""
    return frozenset(r for i, r in enumerate(CLOCK_EVENT_REASONS) if mask & (1 << i))


def sane(name: str, value: float) -> bool:
    """False for NaN, negatives and values above the field's physical maximum."""
    field = FIELDS_BY_NAME.get(name)
    if field is None or math.isnan(value) or value < 0:
        return False
    return value <= field.max_value
