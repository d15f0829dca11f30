"""Prometheus text format 0.0.4 for metric families, with rendered label sets cached.

``prometheus_client.generate_latest`` re-escapes every label set on every call (about 14 us per
sample here). The exporter's label sets are stable between snapshots (same devices, same pods),
so the rendered ``{...}`` string is cached by label set; a snapshot renders at roughly one dict
lookup and one float format per sample. Output is the same text ``generate_latest`` produces
(pinned by a test that parses both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

MAX_CACHED_LABEL_SETS = 200_000
"""Past this many distinct label sets (pod churn over a long uptime) the cache starts over."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(v: float) -> str:
    """Go-style float text, as ``prometheus_client`` writes it (``1.0``, ``8.6e+09``, ``+Inf``)."""
    return str(floatToGoString(v))  # type: ignore[no-untyped-call]


class TextSerializer:
    """Serializes families; keeps the label-string cache between calls."""

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}

    def _label_text(self, labels: Mapping[str, str]) -> str:
        if not labels:
            return ""
        key = tuple(labels.items())
        text = self._labels.get(key)
        if text is None:
            if len(self._labels) >= MAX_CACHED_LABEL_SETS:
                self._labels.clear()
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            text = self._labels[key] = "{" + inner + "}"
        return text

    def serialize(self, families: Iterable[Metric]) -> bytes:
        out: list[str] = []
        for m in families:
            name = m.name + "_total" if m.type == "counter" else m.name
            doc = m.documentation.replace("\\", r"\\").replace("\n", r"\n")
            typ = "untyped" if m.type == "unknown" else m.type  # the 0.0.4 spelling
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {typ}\n")
            label_text = self._label_text
            out.extend(f"{s.name}{label_text(s.labels)} {_value(s.value)}\n" for s in m.samples)
        return "".join(out).encode()
