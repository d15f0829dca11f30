"""Draw a Grafana dashboard JSON as a PNG with matplotlib, laid out by ``gridPos``.

No Grafana server exists offline; this is the picture a person looks at to judge the layout,
titles, units and legends. The data comes from a ``Source``: ``synthetic`` (deterministic
series shaped by each query: one line per legend series, values in the panel's unit), or the
range queries of a live Prometheus (tests/deploy/test_deploy_real_data.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.gridspec import GridSpec

SCALE = {"percentunit": (0.3, 0.9), "bytes": (20e9, 70e9), "watt": (250.0, 650.0), "celsius": (40.0, 80.0),
         "s": (0.05, 0.4), "reqps": (50.0, 180.0), "short": (1.0, 8.0)}
POINTS = 120
Source = Callable[[str, str, str], dict[str, np.ndarray]]
"""(expr, legendFormat, unit) -> legend -> values on one shared time grid."""


def _rng(expr: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(expr.encode()).hexdigest()[:8], 16))


def synthetic(expr: str, legend: str, unit: str) -> dict[str, np.ndarray]:
    """Legend -> values: three series when the legend names labels ({{...}}), else one."""
    lo, hi = SCALE.get(unit, SCALE["short"])
    rng = _rng(expr)
    t = np.linspace(0, 2 * np.pi, POINTS)
    labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)
    names = ([re.sub(r"\{\{\s*(\w+)\s*\}\}", rf"\g<1>-{i}", legend) for i in range(3)] if labels
             else [legend or "value"])
    quantile = re.search(r'quantile="([0-9.]+)"', expr)
    lift = 1.0 + (float(quantile.group(1)) - 0.5) if quantile else 1.0
    out = {}
    for i, name in enumerate(names):
        wave = 0.5 + 0.35 * np.sin(t + i) + 0.05 * rng.standard_normal(POINTS)
        out[name] = lift * (lo + (hi - lo) * np.clip(wave, 0, 1))
    return out


def _draw_timeseries(ax: Any, panel: dict[str, Any], source: Source) -> None:
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    stacked = panel["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode") == "normal"
    series: dict[str, np.ndarray] = {}
    for target in panel.get("targets", []):
        series |= source(target["expr"], target.get("legendFormat", ""), unit)
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=9, color="grey")
        return
    x = np.arange(len(next(iter(series.values()))))
    bands = {o["matcher"]["options"]: p["value"] for o in panel["fieldConfig"].get("overrides", [])
             for p in o["properties"] if p["id"] == "custom.fillBelowTo"}
    if stacked:
        ax.stackplot(x, *(np.nan_to_num(v) for v in series.values()), labels=list(series), alpha=0.7)
    else:
        for name, values in series.items():
            ax.plot(x, values, label=name, linewidth=1)
    for lower, upper in bands.items():
        if lower in series and upper in series:
            ax.fill_between(x, series[lower], np.maximum(series[lower], series[upper]), alpha=0.2)
    ax.set_ylabel(unit, fontsize=6)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5, loc="upper left", ncol=2, frameon=False)


def _draw_stat(ax: Any, panel: dict[str, Any], source: Source) -> None:
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    values = list(source(panel["targets"][0]["expr"], "", unit).values())
    ax.set_axis_off()
    if not values or np.isnan(values[0][-1]):
        ax.text(0.5, 0.4, "no data", ha="center", va="center", fontsize=12, color="grey")
        return
    value = values[0][-1]
    text = f"{value:.0%}" if unit == "percentunit" else f"{value:,.0f} {unit if unit != 'short' else ''}"
    ax.text(0.5, 0.4, text.strip(), ha="center", va="center", fontsize=16, color="tab:green")


def render_png(dashboard: dict[str, Any], out: Path, source: Source = synthetic) -> Path:
    """Draw every panel where its gridPos puts it; return the PNG path."""
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.28 + 1))
    grid = GridSpec(rows, 24, figure=fig, hspace=2.5, wspace=1.5)
    fig.suptitle(dashboard["title"], fontsize=12)
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        if p["type"] == "row":
            ax.set_axis_off()
            ax.text(0, 0.5, p["title"], fontsize=9, fontweight="bold", va="center")
            continue
        ax.set_title(p["title"], fontsize=8, loc="left")
        if p["type"] == "stat":
            _draw_stat(ax, p, source)
        else:
            _draw_timeseries(ax, p, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out

