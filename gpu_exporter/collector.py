"""prometheus_client Collector over the latest snapshot: a scrape never touches NVML or the kubelet.

Naming ``prescale`` (default) follows docs/design.md: base units, ``gpu_*`` families, labels ``gpu``,
``uuid``, ``model``, ``node`` (+ ``mig_profile``, ``gpu_instance`` for MIG instances, and
``namespace``, ``pod``, ``container`` for each container holding the device: a shared GPU yields
one series per holder with the device's value, so ``max by (uuid)`` de-duplicates).
Naming ``dcgm`` renames the device fields to the classic ``DCGM_FI_*`` names, units and labels;
families DCGM has no name for keep their prescale names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from gpu_exporter.backend import Device, DeviceReading
from gpu_exporter.collection import Snapshot
from gpu_exporter.exposition import TextSerializer
from gpu_exporter.fields import CLOCK_EVENT_REASONS, FIELDS, clock_event_mask
from gpu_exporter.presets import FAMILY_HELP, FAMILY_TYPES

Naming = Literal["prescale", "dcgm"]
NAMINGS: tuple[Naming, ...] = ("prescale", "dcgm")
Labels = dict[str, str]


def device_labels(d: Device, node: str, naming: Naming) -> Labels:
    if naming == "dcgm":
        labels = {"gpu": str(d.index), "UUID": d.uuid, "pci_bus_id": d.pci_bus_id,
                  "device": f"nvidia{d.index}", "modelName": d.model, "hostname": node}
        if d.mig_profile:
            labels |= {"GPU_I_PROFILE": d.mig_profile, "GPU_I_ID": d.gpu_instance}
        return labels
    labels = {"gpu": str(d.index), "uuid": d.uuid, "model": d.model, "node": node}
    if d.mig_profile:
        labels |= {"mig_profile": d.mig_profile, "gpu_instance": d.gpu_instance}
    return labels


def _metric(name: str, doc: str, typ: str) -> Metric:
    """A family; counters are named without ``_total`` (prometheus_client adds it to HELP/TYPE)."""
    return Metric(name.removesuffix("_total") if typ == "counter" else name, doc, typ)


class SnapshotCollector(Collector):
    """Turns a ``Snapshot`` into metric families. ``source`` returns the snapshot to show."""

    def __init__(self, source: Callable[[], Snapshot], naming: Naming = "prescale") -> None:
        self.source = source
        self.naming = naming

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        yield from self._devices(snap)
        yield from self._traffic(snap)
        yield from self._self(snap)

    def _holders(self, snap: Snapshot, d: Device, base: Labels) -> list[Labels]:
        pods = snap.attribution.pods_for(d)
        if not pods:
            return [base]
        return [base | {"namespace": p.namespace, "pod": p.pod, "container": p.container} for p in pods]

    def _devices(self, snap: Snapshot) -> Iterator[Metric]:
        dcgm = self.naming == "dcgm"
        readings = snap.reading.devices
        series = [(r, self._holders(snap, r.device, device_labels(r.device, snap.node, self.naming)))
                  for r in readings]
        yield self._info(snap)
        yield self._up(snap)
        for f in FIELDS:
            if dcgm and f.dcgm is None:
                continue
            if dcgm:
                typ = "gauge" if f.kind == "gauge" else "untyped"
                m, sample_name, scale = Metric(str(f.dcgm), f.help, typ), str(f.dcgm), f.dcgm_scale
            else:
                m, sample_name, scale = _metric(f.name, f.help, f.kind), f.name, 1.0
            for r, holders in series:
                value = r.values.get(f.name)
                if value is not None:
                    m.samples.extend(Sample(sample_name, h, value * scale) for h in holders)
            yield m
        yield from self._events(series, dcgm)
        stamp = Metric("gpu_sample_timestamp_seconds", "Wall time the device was last read", "gauge")
        for r, holders in series:
            stamp.samples.extend(Sample(stamp.name, h, r.timestamp_s) for h in holders)
        yield stamp
        alloc = Metric("gpu_allocation_info", "One series per container holding a device (join on uuid)",
                       "gauge")
        for _r, holders in series:
            alloc.samples.extend(Sample(alloc.name, h, 1.0) for h in holders if "pod" in h)
        yield alloc

    def _events(self, series: list[tuple[DeviceReading, list[Labels]]], dcgm: bool) -> Iterator[Metric]:
        reasons = Metric("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS" if dcgm else "gpu_clock_event_active",
                         "Active clock-event (throttle) reasons", "gauge")
        xids = _metric("gpu_xid_errors_total", "XID errors seen since the exporter started", "counter")
        for r, holders in series:
            for h in holders:
                if r.clock_events is not None and dcgm:
                    reasons.samples.append(Sample(reasons.name, h, float(clock_event_mask(r.clock_events))))
                elif r.clock_events is not None:
                    reasons.samples.extend(Sample(reasons.name, h | {"reason": reason},
                                                  float(reason in r.clock_events))
                                           for reason in CLOCK_EVENT_REASONS)
                xids.samples.extend(Sample("gpu_xid_errors_total", h | {"xid": str(code)}, float(n))
                                    for code, n in sorted(r.xid_counts.items()))
        yield reasons
        yield xids

    def _info(self, snap: Snapshot) -> Metric:
        m = Metric("gpu_info", "Identity of each GPU and MIG instance", "gauge")
        for r in snap.reading.devices:
            d = r.device
            labels = device_labels(d, snap.node, "prescale") | {
                "pci_bus_id": d.pci_bus_id, "driver_version": snap.reading.driver_version}
            if d.parent_uuid:
                labels["parent_uuid"] = d.parent_uuid
            m.samples.append(Sample("gpu_info", labels, 1.0))
        return m

    def _up(self, snap: Snapshot) -> Metric:
        m = Metric("gpu_up", "1 when the device was read in the last round, 0 when lost", "gauge")
        read = {r.device.uuid for r in snap.reading.devices}
        for uuid, d in sorted(snap.known.items()):
            m.samples.append(Sample("gpu_up", device_labels(d, snap.node, "prescale"), float(uuid in read)))
        return m

    def _traffic(self, snap: Snapshot) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for s in snap.traffic.samples:
            m = families.get(s.family)
            if m is None:
                m = families[s.family] = _metric(s.family, FAMILY_HELP[s.family], FAMILY_TYPES[s.family])
            m.samples.append(Sample(s.name, dict(s.labels), s.value))
        yield from families.values()
        up = Metric("inference_target_up", "1 when the serving pod's metrics were scraped", "gauge")
        for target, ok in snap.traffic.up:
            up.samples.append(Sample(up.name, {"namespace": target.namespace, "pod": target.pod,
                                               "deployment": target.deployment, "preset": target.preset},
                                     float(ok)))
        yield up

    def _self(self, snap: Snapshot) -> Iterator[Metric]:
        errors = _metric("gpu_exporter_field_errors_total", "Samples dropped, by field and NVML reason",
                         "counter")
        for (name, reason), n in sorted(snap.field_errors_total.items()):
            errors.samples.append(Sample("gpu_exporter_field_errors_total", {"field": name, "reason": reason},
                                         float(n)))
        yield errors
        yield _gauge("gpu_exporter_collection_duration_seconds", "Duration of the last GPU collection",
                     snap.collection_duration_s)
        yield _gauge("gpu_exporter_last_success_timestamp_seconds", "Wall time of the last good GPU read",
                     snap.last_success_s)
        failures = _metric("gpu_exporter_collection_failures_total", "GPU collections that failed", "counter")
        failures.samples.append(Sample("gpu_exporter_collection_failures_total", {},
                                       float(snap.collection_failures_total)))
        yield failures
        yield _gauge("gpu_exporter_backend_up", "1 when the GPU backend answered", float(snap.backend_up),
                     {"backend": snap.backend})
        if snap.kubelet_up is not None:
            yield _gauge("gpu_exporter_kubelet_up", "1 when PodResources answered", float(snap.kubelet_up))


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    m = Metric(name, doc, "gauge")
    m.samples.append(Sample(name, dict(labels or {}), value))
    return m


class FreshnessCollector(Collector):
    """The one per-scrape value: how old the snapshot's GPU data is."""

    def __init__(self, source: Callable[[], Snapshot], now: Callable[[], float]) -> None:
        self.source = source
        self.now = now

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        age = self.now() - snap.last_success_s if snap.last_success_s else float("inf")
        yield _gauge("gpu_exporter_snapshot_age_seconds", "Seconds since the last successful GPU read", age)


_SERIALIZER = TextSerializer()


def render(snap: Snapshot, naming: Naming, serializer: TextSerializer = _SERIALIZER) -> bytes:
    """Exposition text of one snapshot (the server renders each snapshot once)."""
    return serializer.serialize(SnapshotCollector(lambda: snap, naming).collect())


def render_with_client(snap: Snapshot, naming: Naming) -> bytes:
    """The same text through ``prometheus_client.generate_latest`` (reference for tests and bench)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap, naming))
    return generate_latest(registry)
