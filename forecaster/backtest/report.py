"""Backtest outputs: the stdout table, the JSON document, the decisions CSV and the plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.backtest.run import PolicyRun, PolicyScore
from forecaster.models.base import FloatArray


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else "-"


def table(scores: dict[str, PolicyScore]) -> str:
    """Aligned text table with ratios against hpa and oracle."""
    hpa, oracle = scores.get("hpa"), scores.get("oracle")
    head = (
        f"{'policy':<11} {'under-prov %':>12} {'GPU-hours':>10} {'viol. min':>10} {'actions':>8} "
        f"{'GPU-h/hpa':>10} {'GPU-h/oracle':>12} {'under/hpa':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, s in scores.items():
        under_ratio = _ratio(s.under_provisioned_share, hpa.under_provisioned_share if hpa else None)
        lines.append(
            f"{name:<11} {100 * s.under_provisioned_share:>12.3f} {s.gpu_hours:>10.1f} "
            f"{s.violation_minutes:>10.1f} {s.scale_actions:>8d} "
            f"{_ratio(s.gpu_hours, hpa.gpu_hours if hpa else None):>10} "
            f"{_ratio(s.gpu_hours, oracle.gpu_hours if oracle else None):>12} {under_ratio:>10}"
        )
    return "\n".join(lines)


def document(params: dict[str, Any], scores: dict[str, PolicyScore], extra: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document: parameters, then per-policy figures."""
    policies = {
        name: {
            "under_provisioned_share": s.under_provisioned_share,
            "gpu_hours": s.gpu_hours,
            "violation_minutes": s.violation_minutes,
            "scale_actions": s.scale_actions,
        }
        for name, s in scores.items()
    }
    return {"parameters": params, "policies": policies, **extra}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_decisions(path: Path, runs: list[PolicyRun], lam: FloatArray, step_s: float) -> None:
    """``policy,t,demand_rps,requested,ready`` for every policy and step."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["policy", "t", "demand_rps", "requested", "ready"])
        for run in runs:
            for i in range(lam.shape[0]):
                w.writerow(
                    [run.name, f"{i * step_s:g}", f"{lam[i]:.6g}", int(run.requested[i]), int(run.ready[i])]
                )


def write_plot(
    path: Path,
    runs: list[PolicyRun],
    lam: FloatArray,
    *,
    step_s: float,
    capacity: float,
    band: FloatArray | None,
    scored_from_s: float,
) -> None:
    """Demand, ready capacity per policy, and the predictive band, over time (hours)."""
    import matplotlib  # noqa: PLC0415 - lazy: only --plot pays for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t_h = np.arange(lam.shape[0]) * step_s / 3600.0
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.plot(t_h, lam, color="black", lw=0.6, label="demand (req/s)")
    for run in runs:
        ax.step(t_h, run.ready * capacity, where="post", lw=0.8, label=f"{run.name} ready capacity")
    if band is not None:
        ax.plot(t_h, band, color="tab:purple", lw=0.5, ls=":", label="predictive planned peak (q*)")
    ax.axvline(scored_from_s / 3600.0, color="grey", ls="--", lw=0.8, label="scored from")
    ax.set_xlabel("hours")
    ax.set_ylabel("requests/s")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
