"""The JSON documents of the two metrics APIs, field for field as the Go types write them.

Only plain dicts here: the routes pass them to ``json.dumps``. Every value goes through
``quantities.float_quantity`` (the NaN/Inf/negative policy); rejected values drop their item.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from adapter.api.quantities import float_quantity
from adapter.api.selectors import Selector
from adapter.provider import CustomMetricInfo, ObjectSample, Sample

EXTERNAL_GROUP: Final = "external.metrics.k8s.io"
CUSTOM_GROUP: Final = "custom.metrics.k8s.io"
EXTERNAL_VERSIONS: Final = ("v1beta1",)
CUSTOM_VERSIONS: Final = ("v1beta2", "v1beta1")  # preferred first
#: Listed when no metric is configured: an empty list breaks kubectl/helm (cma#146).
PLACEHOLDER_EXTERNAL: Final = "externalmetrics"
PLACEHOLDER_CUSTOM: Final = "custommetrics"
#: Discovery lists at most this many names; beyond it, the placeholder (cma#150).
MAX_LISTED: Final = 500

Doc = dict[str, Any]


def rfc3339(ts_s: float) -> str:
    """``metav1.Time`` on the wire: UTC, whole seconds."""
    return _rfc3339_second(int(ts_s))


@functools.lru_cache(maxsize=1024)
def _rfc3339_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))


def status(code: int, reason: str, message: str) -> Doc:
    """A ``metav1.Status`` failure; client-go shows ``message`` to the user."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def external_list(metric: str, samples: Iterable[Sample]) -> tuple[Doc, int]:
    """``ExternalMetricValueList`` and how many samples the value policy dropped."""
    items, dropped = [], 0
    for s in samples:
        q = float_quantity(s.value)
        if q is None:
            dropped += 1
            continue
        items.append(
            {
                "metricName": metric,
                "metricLabels": dict(s.labels) or None,
                "timestamp": rfc3339(s.timestamp_s),
                "value": q,
            }
        )
    doc = {
        "kind": "ExternalMetricValueList",
        "apiVersion": f"{EXTERNAL_GROUP}/v1beta1",
        "metadata": {},
        "items": items,
    }
    return doc, dropped


def _label_selector(sel: Selector) -> Doc | None:
    """``metav1.LabelSelector`` for the v1beta2 ``metric.selector`` field (null when empty)."""
    if not sel.requirements:
        return None
    exprs = []
    for r in sel.requirements:
        op = {
            "=": "In",
            "in": "In",
            "!=": "NotIn",
            "notin": "NotIn",
            "exists": "Exists",
            "!": "DoesNotExist",
            ">": "Gt",
            "<": "Lt",
        }[r.op.value]
        exprs.append({"key": r.key, "operator": op, "values": list(r.values)})
    return {"matchExpressions": exprs}


def custom_list(
    version: str, metric: str, metric_selector: Selector, samples: Iterable[ObjectSample]
) -> tuple[Doc, int]:
    """``MetricValueList`` for v1beta1 or v1beta2, and how many values were dropped."""
    items, dropped = [], 0
    for s in samples:
        q = float_quantity(s.value)
        if q is None:
            dropped += 1
            continue
        ref: Doc = {"kind": s.obj.kind, "name": s.obj.name, "apiVersion": s.obj.api_version}
        if s.obj.namespace is not None:
            ref["namespace"] = s.obj.namespace
        item: Doc = {"describedObject": ref}
        if version == "v1beta2":
            item["metric"] = {"name": metric, "selector": _label_selector(metric_selector)}
        else:
            item["metricName"] = metric
        item["timestamp"] = rfc3339(s.timestamp_s)
        if s.window_s is not None:
            item["windowSeconds" if version == "v1beta2" else "window"] = s.window_s
        item["value"] = q
        if version == "v1beta1":
            item["selector"] = _label_selector(metric_selector)
        items.append(item)
    doc = {
        "kind": "MetricValueList",
        "apiVersion": f"{CUSTOM_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }
    return doc, dropped


def _resource(name: str, namespaced: bool, kind: str) -> Doc:
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get"]}


def external_resources(metrics: Sequence[str]) -> Doc:
    """``APIResourceList`` for external metrics: never empty, never huge."""
    names = list(metrics) if 0 < len(metrics) <= MAX_LISTED else [PLACEHOLDER_EXTERNAL]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{EXTERNAL_GROUP}/v1beta1",
        "resources": [_resource(n, True, "ExternalMetricValueList") for n in names],
    }


def custom_resources(version: str, metrics: Sequence[CustomMetricInfo]) -> Doc:
    """``APIResourceList`` for custom metrics, names ``<group-resource>/<metric>``."""
    if 0 < len(metrics) <= MAX_LISTED:
        res = [_resource(f"{m.group_resource}/{m.metric}", m.namespaced, "MetricValueList") for m in metrics]
    else:
        res = [_resource(PLACEHOLDER_CUSTOM, True, "MetricValueList")]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{CUSTOM_GROUP}/{version}",
        "resources": res,
    }


def api_group(group: str, versions: Sequence[str], *, typed: bool = True) -> Doc:
    """``APIGroup``; the first version is preferred."""
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    doc: Doc = {"name": group, "versions": gvs, "preferredVersion": gvs[0]}
    return {"kind": "APIGroup", "apiVersion": "v1", **doc} if typed else doc


def api_group_list() -> Doc:
    """``APIGroupList`` for ``/apis`` (the legacy form; we never claim the v2 aggregated type)."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            api_group(CUSTOM_GROUP, CUSTOM_VERSIONS, typed=False),
            api_group(EXTERNAL_GROUP, EXTERNAL_VERSIONS, typed=False),
        ],
    }
