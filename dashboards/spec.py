"""What a dashboard is, independent of the library that renders it to Grafana JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PanelKind = Literal["timeseries", "stat", "bars"]


@dataclass(frozen=True)
class Query:
    """One PromQL target. ``legend`` uses Grafana's ``{{label}}`` syntax."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel; width is in grid columns (24 per row), height in grid units (30 px)."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    """A Grafana unit id: ``percentunit`` (0..1), ``bytes``, ``watt``, ``celsius``, ``s``, ``reqps``."""
    kind: PanelKind = "timeseries"
    description: str = ""
    width: int = 12
    height: int = 8
    stacked: bool = False
    band: tuple[str, str] | None = None
    """Legends of a lower and an upper series: the area between them is shaded (forecast band)."""
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A query variable; ``query`` is a Grafana ``label_values(...)`` expression."""

    name: str
    label: str
    query: str
    include_all: bool = True
    multi: bool = True


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("prescale",))
