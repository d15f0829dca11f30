"""The demo's report: one self-contained HTML page with the comparison table and plots."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
from matplotlib.figure import Figure

from forecaster.backtest.frontier import Frontier


@dataclass(frozen=True)
class Row:
    """One policy's figures in the comparison table."""

    policy: str
    under_provisioned_share: float
    gpu_hours: float
    violation_minutes: float
    scale_actions: int


@dataclass(frozen=True)
class Curve:
    """A line on the capacity plot: replicas ready x capacity over trace time (hours)."""

    label: str
    hours: Sequence[float]
    values: Sequence[float]


def table_text(rows: Sequence[Row], baseline: str = "hpa") -> str:
    """The comparison as a plain-text table, with ratios against ``baseline``."""
    base = next((r for r in rows if r.policy == baseline), None)
    width = max([len("policy"), *(len(r.policy) for r in rows)])
    out = [f"{'policy':<{width}} {'under-prov.':>11} {'GPU-hours':>10} {'vs ' + baseline:>15} "
           f"{'viol. min':>9} {'actions':>7}"]
    for r in rows:
        ratio = f"{r.gpu_hours / base.gpu_hours:.2f}x" if base and base.gpu_hours > 0 else "-"
        out.append(f"{r.policy:<{width}} {r.under_provisioned_share:>11.2%} {r.gpu_hours:>10.1f} {ratio:>15} "
                   f"{r.violation_minutes:>9.1f} {r.scale_actions:>7d}")
    return "\n".join(out)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def capacity_plot(demand: Curve, curves: Sequence[Curve], title: str) -> str:
    """Demand against ready capacity per policy; returns a base64 PNG."""
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.fill_between(demand.hours, demand.values, color="#bbbbbb", label=demand.label, step="post")
    for c in curves:
        ax.step(c.hours, c.values, where="post", label=c.label, linewidth=1.3)
    ax.set_xlabel("trace time (hours)")
    ax.set_ylabel("requests / s")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


@dataclass(frozen=True)
class Marker:
    """A single point on the frontier plot (a live run)."""

    label: str
    under_provisioned_share: float
    gpu_hours: float


def frontier_plot(front: Frontier, markers: Sequence[Marker] = ()) -> str:
    """Under-provisioning against GPU-hours: both sweeps as curves, live runs as points."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for pts, label, fmt in ((front.hpa, "hpa: target utilization", "o-"),
                            (front.predictive, "prescale: miss cost ratio", "s-")):
        ordered = sorted(pts, key=lambda p: p.gpu_hours)
        ax.plot([p.gpu_hours for p in ordered], [100 * p.under_provisioned_share for p in ordered], fmt,
                label=label)
        for p in ordered:
            ax.annotate(f"{p.knob:g}", (p.gpu_hours, 100 * p.under_provisioned_share),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    for m in markers:
        ax.plot([m.gpu_hours], [100 * m.under_provisioned_share], "*", markersize=12, label=m.label)
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("under-provisioned share of demand (%)")
    ax.set_title(f"frontier: replay with a decision every {front.step_s:g} s (lower left is better)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return _png(fig)


def write_html(path: Path, title: str, rows: Sequence[Row], *, plots: Mapping[str, str],
               params: Mapping[str, object], notes: Sequence[str] = ()) -> None:
    """Write the report; ``plots`` maps a caption to a base64 PNG."""
    esc = html.escape
    param_rows = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in params.items())
    figures = "".join(f'<figure><img src="data:image/png;base64,{b64}" alt="{esc(cap)}">'
                      f"<figcaption>{esc(cap)}</figcaption></figure>" for cap, b64 in plots.items())
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
pre{{background:#f6f6f6;padding:1em}}img{{max-width:100%}}</style></head>
<body><h1>{esc(title)}</h1>
<h2>Comparison</h2><pre>{esc(table_text(rows))}</pre>
<ul>{note_items}</ul>
{figures}
<h2>Parameters</h2><table>{param_rows}</table>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
