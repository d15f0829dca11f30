"""Metric rules: which metric names we serve, from which source, with which query.

A rule file is YAML ``{rules: [...]}``; ``from_mapping`` is pure and strict (unknown keys are
errors naming the key), ``load_file`` reads a file, ``load_preset`` one bundled under
``adapter/presets``. Queries are PromQL templates: ``<<matchers>>`` becomes the namespace
matcher plus the request's label selector as *escaped* matchers (never string-pasted), and
``<<group_by>>`` the label naming the described object for custom metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from adapter.api.selectors import Op, Requirement, Selector
from adapter.provider import BadQuery

PRESETS: Final = ("bundled", "vllm", "triton", "tgi", "tfserving", "forecast")
_NAME_RE: Final = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.-]{0,199}$")
_LABEL_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RuleError(ValueError):
    """An invalid rule file; the message names the rule, the key and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """One served metric."""

    name: str
    """Metric name the HPA asks for (``metric.name`` in the HPA spec)."""
    query: str
    """PromQL template (prometheus source) or a series name (scrape source)."""
    api: Literal["external", "custom"] = "external"
    """Which API serves it."""
    source: Literal["prometheus", "scrape"] = "prometheus"
    """Where the value comes from."""
    namespaced: bool = True
    """Add ``namespace="<request namespace>"`` to the matchers."""
    resource: str = "pods"
    """Custom metrics only: the group-resource described (``pods``, ``deployments.apps``)."""
    object_label: str = "pod"
    """Custom metrics only: the series label that names the described object."""
    freshness_s: float = 120.0
    """A value older than this is not served (503), so a stale input cannot scale anything."""
    cache_s: float = 5.0
    """Identical requests within this interval share one upstream query."""
    on_empty: Literal["empty", "zero"] = "empty"
    """External metrics with no series: ``empty`` answers ``items: []``; ``zero`` one item "0"."""
    rate_window_s: float = 0.0
    """Scrape source: 0 serves the latest value (gauge); > 0 the per-second rate over the window."""
    aggregate: Literal["sum", "max", "avg", "none"] = "sum"
    """Scrape source: how matching series combine into one item (``none`` keeps them apart)."""


_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "api": ("external", "custom"),
    "source": ("prometheus", "scrape"),
    "on_empty": ("empty", "zero"),
    "aggregate": ("sum", "max", "avg", "none"),
}
_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "name": str,
    "query": str,
    "api": str,
    "source": str,
    "namespaced": bool,
    "resource": str,
    "object_label": str,
    "freshness_s": (int, float),
    "cache_s": (int, float),
    "on_empty": str,
    "rate_window_s": (int, float),
    "aggregate": str,
}


def _rule_from_mapping(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: a rule must be a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(Rule)}
    for key in raw:
        if key not in known:
            raise RuleError(f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(known))}")
    for key in ("name", "query"):
        if key not in raw:
            raise RuleError(f"{where}: missing required key {key!r}")
    for key, value in raw.items():
        want = _TYPES[key]
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise RuleError(f"{where}: {key}={value!r} has the wrong type")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise RuleError(f"{where}: {key}={value!r}; allowed: {', '.join(_CHOICES[key])}")
    values: dict[str, Any] = {k: (float(v) if _TYPES[k] == (int, float) else v) for k, v in raw.items()}
    rule = Rule(**values)
    _validate(rule, where)
    return rule


def _validate(rule: Rule, where: str) -> None:
    if not _NAME_RE.match(rule.name) or "/" in rule.name:
        raise RuleError(f"{where}: name={rule.name!r} is not a valid metric name")
    if rule.freshness_s <= 0 or rule.cache_s < 0 or rule.rate_window_s < 0:
        raise RuleError(f"{where}: freshness_s must be > 0, cache_s and rate_window_s >= 0")
    if rule.cache_s > rule.freshness_s:
        raise RuleError(f"{where}: cache_s={rule.cache_s} exceeds freshness_s={rule.freshness_s}")
    if not _LABEL_RE.match(rule.object_label):
        raise RuleError(f"{where}: object_label={rule.object_label!r} is not a label name")
    if rule.source == "prometheus" and "<<" in rule.query.replace("<<matchers>>", "").replace(
        "<<group_by>>", ""
    ):
        raise RuleError(f"{where}: query has an unknown placeholder; allowed: <<matchers>>, <<group_by>>")


def from_mapping(doc: Any, origin: str = "rules") -> tuple[Rule, ...]:
    """Validate a parsed rule document ``{rules: [...]}``; names must be unique per API."""
    if not isinstance(doc, Mapping) or set(doc) - {"rules"}:
        raise RuleError(f"{origin}: expected a mapping with the single key 'rules'")
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleError(f"{origin}: 'rules' must be a list")
    rules = tuple(_rule_from_mapping(r, f"{origin}: rule {i}") for i, r in enumerate(raw_rules))
    seen: set[tuple[str, str, str]] = set()
    for r in rules:
        key = (r.api, r.resource if r.api == "custom" else "", r.name)
        if key in seen:
            raise RuleError(f"{origin}: duplicate rule for {r.api} metric {r.name!r}")
        seen.add(key)
    return rules


def load_file(path: Path) -> tuple[Rule, ...]:
    """Read and validate a rule file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RuleError(f"{path}: cannot read rules: {e}") from e
    return from_mapping(doc, str(path))


def load_preset(name: str) -> tuple[Rule, ...]:
    """One bundled preset (see ``PRESETS``)."""
    if name not in PRESETS:
        raise RuleError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    text = (Path(__file__).parent / "presets" / f"{name}.yaml").read_text()
    return from_mapping(yaml.safe_load(text), f"preset {name}")


def prom_label(key: str) -> str:
    """A Kubernetes label key as a Prometheus label name (``app.kubernetes.io/name`` ->
    ``app_kubernetes_io_name``), the mapping kube-state-metrics and Prometheus SD use."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return f"_{name}" if name[0].isdigit() else name


def prom_string(value: str) -> str:
    """A double-quoted PromQL string literal; escapes make injection impossible."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _alternation(values: Sequence[str]) -> str:
    return prom_string("|".join(re.escape(v) for v in values))


def _matcher(r: Requirement) -> str:
    label = prom_label(r.key)
    match r.op:
        case Op.EQUALS:
            return f"{label}={prom_string(r.values[0])}"
        case Op.NOT_EQUALS:
            return f"{label}!={prom_string(r.values[0])}"
        case Op.IN:
            return f"{label}=~{_alternation(r.values)}"
        case Op.NOT_IN:
            return f"{label}!~{_alternation(r.values)}"
        case Op.EXISTS:
            return f'{label}!=""'
        case Op.DOES_NOT_EXIST:
            return f'{label}=""'
        case _:
            raise BadQuery(f"label selector operator {r.op.value!r} cannot be expressed in PromQL")


def render(rule: Rule, namespace: str | None, selector: Selector) -> str:
    """The PromQL for one request: escaped matchers substituted into the template."""
    parts = [f"namespace={prom_string(namespace)}"] if rule.namespaced and namespace is not None else []
    parts += [_matcher(r) for r in selector.requirements]
    return rule.query.replace("<<matchers>>", ",".join(parts)).replace("<<group_by>>", rule.object_label)
