"""Serving-metric presets: how each model server's /metrics maps onto the ``inference_*`` families.

One plugin shape (a ``Preset`` is a tuple of ``Rule``s), one dict registry, and one contract test
over every preset. ``normalize`` is pure: exposition text in, normalized samples out (summed over
the source labels that the normalized family drops, e.g. vLLM's ``finished_reason``).

Families (docs/design.md): ``inference_requests_total{model,code}``,
``inference_request_duration_seconds`` (histogram), ``inference_queue_depth``,
``inference_inflight_requests``, ``inference_batch_size`` (histogram),
``inference_prompt_tokens_total``, ``inference_generation_tokens_total``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

Kind = Literal["counter", "gauge", "histogram", "count_of", "sum_of"]

FAMILY_TYPES: Mapping[str, Literal["counter", "gauge", "histogram"]] = {
    "inference_requests_total": "counter",
    "inference_request_duration_seconds": "histogram",
    "inference_queue_depth": "gauge",
    "inference_inflight_requests": "gauge",
    "inference_batch_size": "histogram",
    "inference_prompt_tokens_total": "counter",
    "inference_generation_tokens_total": "counter",
}
FAMILY_HELP: Mapping[str, str] = {
    "inference_requests_total": "Requests completed, by model and result code",
    "inference_request_duration_seconds": "End-to-end request latency",
    "inference_queue_depth": "Requests waiting to be scheduled",
    "inference_inflight_requests": "Requests being processed",
    "inference_batch_size": "Requests per executed batch",
    "inference_prompt_tokens_total": "Prompt (input) tokens processed",
    "inference_generation_tokens_total": "Tokens generated",
}


@dataclass(frozen=True)
class Rule:
    """Map one source family onto one normalized family."""

    source: str
    """Source family name as exposed (without ``_total``/``_bucket``/``_sum``/``_count``)."""
    target: str
    kind: Kind
    """``count_of``/``sum_of``: a counter made from a source histogram's ``_count``/``_sum``."""
    model_label: str = "model"
    code: str = ""
    """Fixed ``code`` label for ``inference_requests_total`` (e.g. ``200`` for success counters)."""
    code_label: str = ""
    """Source label whose value becomes ``code`` (takes precedence over ``code``)."""
    scale: float = 1.0
    """Unit conversion applied to values, ``le`` bounds and ``_sum`` (e.g. 1e-6 for microseconds)."""


Preset = tuple[Rule, ...]

PRESETS: Mapping[str, Preset] = {
    "prescale": (*(Rule(name.removesuffix("_total"), name, kind, code_label="code")
                   for name, kind in FAMILY_TYPES.items()),
                 # Scraped through the queue proxy: what it refused is demand too.
                 Rule("inference_proxy_refused", "inference_requests_total", "counter", code="429")),
    "vllm": (
        Rule("vllm:request_success", "inference_requests_total", "counter", "model_name", code="200"),
        Rule("vllm:e2e_request_latency_seconds", "inference_request_duration_seconds", "histogram",
             "model_name"),
        Rule("vllm:num_requests_waiting", "inference_queue_depth", "gauge", "model_name"),
        Rule("vllm:num_requests_running", "inference_inflight_requests", "gauge", "model_name"),
        Rule("vllm:prompt_tokens", "inference_prompt_tokens_total", "counter", "model_name"),
        Rule("vllm:generation_tokens", "inference_generation_tokens_total", "counter", "model_name"),
    ),
    "triton": (
        Rule("nv_inference_request_success", "inference_requests_total", "counter", code="200"),
        Rule("nv_inference_request_failure", "inference_requests_total", "counter", code="500"),
        Rule("nv_inference_pending_request_count", "inference_queue_depth", "gauge"),
    ),
    "tgi": (
        Rule("tgi_request_success", "inference_requests_total", "counter", "", code="200"),
        Rule("tgi_request_failure", "inference_requests_total", "counter", "", code="500"),
        Rule("tgi_request_duration", "inference_request_duration_seconds", "histogram", ""),
        Rule("tgi_queue_size", "inference_queue_depth", "gauge", ""),
        Rule("tgi_batch_current_size", "inference_inflight_requests", "gauge", ""),
        Rule("tgi_batch_next_size", "inference_batch_size", "histogram", ""),
        Rule("tgi_request_input_length", "inference_prompt_tokens_total", "sum_of", ""),
        Rule("tgi_request_generated_tokens", "inference_generation_tokens_total", "sum_of", ""),
    ),
    "tfserving": (
        Rule(":tensorflow:serving:request_count", "inference_requests_total", "counter", "model_name",
             code_label="status"),
        Rule(":tensorflow:serving:request_latency", "inference_request_duration_seconds", "histogram",
             "model_name", scale=1e-6),
        Rule(":tensorflow:serving:batching_session:processed_batch_size", "inference_batch_size",
             "histogram", "model_name"),
    ),
    "kserve": (
        Rule("request_predict_seconds", "inference_requests_total", "count_of", "model_name", code="200"),
        Rule("request_predict_seconds", "inference_request_duration_seconds", "histogram", "model_name"),
    ),
}
"""Preset name -> rules. Triton exposes no latency histogram or batch histogram by default (its
duration metrics are cumulative microsecond counters), so those families stay absent for it."""

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TrafficSample:
    """One normalized sample; ``name`` includes the suffix (``_bucket``, ``_sum``, ...)."""

    family: str
    name: str
    labels: Labels
    value: float


def normalize(text: str, preset: Preset) -> tuple[TrafficSample, ...]:
    """Normalized samples from exposition ``text``; unknown families are ignored."""
    rules: dict[str, list[Rule]] = {}
    for rule in preset:
        rules.setdefault(rule.source, []).append(rule)
    acc: dict[tuple[str, str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            base, suffix = _split(sample.name)
            for rule in rules.get(base, ()):
                out = _apply(rule, suffix, sample.labels, sample.value)
                if out is not None:
                    key = (rule.target, out[0], out[1])
                    acc[key] = acc.get(key, 0.0) + out[2]
    return tuple(TrafficSample(fam, name, labels, value)
                 for (fam, name, labels), value in sorted(acc.items()))


_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def _split(name: str) -> tuple[str, str]:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _apply(rule: Rule, suffix: str, labels: Mapping[str, str],
           value: float) -> tuple[str, Labels, float] | None:
    """(sample name, labels, value) for one source sample, or None when the rule skips it."""
    if suffix == "_created" or math.isnan(value):
        return None
    out: dict[str, str] = {"model": labels.get(rule.model_label, "") if rule.model_label else ""}
    if rule.target == "inference_requests_total":
        out["code"] = labels.get(rule.code_label, "") if rule.code_label else rule.code
    if rule.kind in ("counter", "gauge") or (rule.kind == "count_of" and suffix == "_count"):
        name = rule.target
    elif rule.kind == "sum_of" and suffix == "_sum":
        name, value = rule.target, value * rule.scale
    elif rule.kind == "histogram" and suffix in ("_bucket", "_sum", "_count"):
        name = rule.target + suffix
        if suffix == "_bucket":
            out["le"] = _le(labels.get("le", "+Inf"), rule.scale)
        elif suffix == "_sum":
            value *= rule.scale
    else:
        return None
    return name, tuple(sorted(out.items())), value


def _le(raw: str, scale: float) -> str:
    bound = float(raw)
    return "+Inf" if math.isinf(bound) else repr(bound * scale) if scale != 1.0 else repr(bound)
