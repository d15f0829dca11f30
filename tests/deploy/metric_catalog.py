"""Every metric name the code exports, read from the programs' own collectors, plus the
outside metrics (kube-state-metrics, kube-apiserver, Prometheus) the dashboards and alerts use.

The metric names of dashboards and alerts are extracted from PromQL with a small lexer: drop
strings, label matchers and grouping clauses, then keep identifiers that are not functions,
keywords or durations.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest


def _module(name: str) -> Any:
    """The programs are imported by name: their collectors are the source of truth at run
    time, and this test helper does not type-check their internals (mypy follows imports)."""
    return importlib.import_module(name)

EXTERNAL = frozenset({
    "up",
    "kube_deployment_spec_replicas", "kube_deployment_status_replicas_ready",
    "kube_horizontalpodautoscaler_status_current_replicas", "kube_horizontalpodautoscaler_spec_max_replicas",
    "aggregator_unavailable_apiservice",
})
"""Not ours: Prometheus itself, kube-state-metrics, kube-apiserver."""

KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "inf", "nan", "le", "atan2",
})
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"),
             "counter": ("_total", "_created"), "gauge": (), "untyped": (), "info": ("_info",)}


def _families(text: str) -> set[str]:
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        names.update(name + s for s in _SUFFIXES.get(kind, ()))
    return names


def exporter_names() -> set[str]:
    backend_mod, collector = _module("gpu_exporter.backend"), _module("gpu_exporter.collector")
    backend = backend_mod.simulated_from_spec("h100-80gb x2", "node-a", backend_mod.sine_load())
    reading = backend.read(1000.0)
    snap = _module("gpu_exporter.collection").Snapshot(
        seq=1, node="node-a", backend="simulated", reading=reading,
        known={r.device.uuid: r.device for r in reading.devices}, backend_up=True,
        kubelet_up=True, last_success_s=1000.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector.FreshnessCollector(lambda: snap, lambda: 1001.0))
    names = _families(collector.render(snap, "prescale").decode())
    names |= _families(generate_latest(registry).decode())
    for family, kind in _module("gpu_exporter.presets").FAMILY_TYPES.items():
        base = family.removesuffix("_total")
        names.update({base} | {base + s for s in _SUFFIXES[kind]})
    return names


def serving_names() -> set[str]:
    registry = CollectorRegistry()
    m = _module("serving.metrics").ServerMetrics(registry, "ns", "pod")
    m.request_done("model", 200, 0.1)
    m.for_model("model").batch_size.observe(1)
    return _families(generate_latest(registry).decode())


def adapter_names() -> set[str]:
    return _families(generate_latest(_module("adapter.metrics").AdapterMetrics().registry).decode())


def controller_names() -> set[str]:
    registry = CollectorRegistry(auto_describe=False)
    _module("forecaster.controller.metrics").ControllerMetrics().register(registry)
    return _families(generate_latest(registry).decode())


def exported_names() -> set[str]:
    return exporter_names() | serving_names() | adapter_names() | controller_names()


def metric_names(expr: str) -> set[str]:
    """Metric names in one PromQL expression (recording-rule names included)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"#[^\n]*", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    found = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        found.add(name)
    return found


def selectors(expr: str) -> set[str]:
    """The instant-vector selectors of one PromQL expression (``name`` or ``name{matchers}``),
    without their ranges and offsets: what must have series for the expression to mean anything."""
    text = re.sub(r"#[^\n]*", " ", expr)
    found = set()
    for name in metric_names(expr):
        pattern = rf'(?<![\w:"]){re.escape(name)}\s*(\{{(?:"(?:[^"\\]|\\.)*"|[^}}"])*\}})?(?!\s*\()'
        for m in re.finditer(pattern, text):
            found.add(name + re.sub(r"\s+", " ", m.group(1) or ""))
    return found


def unknown(exprs: Iterable[str], recorded: set[str], known: set[str]) -> dict[str, set[str]]:
    """Expression -> names in it that no program exports and no rule records."""
    out = {}
    for e in exprs:
        missing = metric_names(e) - known - recorded - EXTERNAL
        if missing:
            out[e] = missing
    return out
