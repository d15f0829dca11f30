"""The PredictiveAutoscaler ``status``: conditions with stable transition times, and the body.

Pure functions over what one reconcile found; the reconciler patches the result onto the
``/status`` subresource with a JSON merge patch (the whole ``conditions`` list each time).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from forecaster.decider import Decision, ForecastQuality, WindowForecast

CONDITION_TYPES: Final = ("Ready", "ForecastHealthy", "AbleToScale", "ScalingLimited")


@dataclass(frozen=True)
class Condition:
    """One condition as the controller sees it at a reconcile."""

    type: str
    status: bool
    reason: str
    message: str = ""


def rfc3339(t_s: float) -> str:
    """Kubernetes time format (seconds resolution, UTC, ``Z``)."""
    return dt.datetime.fromtimestamp(t_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> float:
    """Seconds since the epoch of a Kubernetes timestamp."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def conditions(
    previous: Sequence[Mapping[str, Any]], now_s: float, new: Sequence[Condition], generation: int
) -> list[dict[str, Any]]:
    """The condition list; ``lastTransitionTime`` moves only when the status flips."""
    prev = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for c in new:
        status = "True" if c.status else "False"
        old = prev.get(c.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": c.message[:1000],
                "lastTransitionTime": since or rfc3339(now_s),
                "observedGeneration": generation,
            }
        )
    return out


def _num(x: float | None, digits: int = 4) -> float | None:
    """JSON-safe number: NaN and Inf become absent (never a NaN in the API)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def forecast_status(
    wf: WindowForecast, planned: float | None, quantile: float | None, horizon_s: float, now_s: float
) -> dict[str, Any]:
    bands = [
        {"quantile": _num(q), "peakRps": _num(v)} for q, v in zip(wf.quantiles, wf.peak_rps, strict=True)
    ]
    return _drop_none(
        {
            "time": rfc3339(now_s),
            "horizonSeconds": _num(horizon_s, 1),
            "meanPeakRps": _num(wf.mean_peak_rps),
            "plannedPeakRps": _num(planned),
            "quantile": _num(quantile),
            "bands": bands,
        }
    )


def model_status(
    name: str, quality: ForecastQuality, fitted_at_s: float | None, notes: str
) -> dict[str, Any]:
    return _drop_none(
        {
            "name": name or None,
            "errorRatio": _num(quality.error_ratio),
            "coverage": _num(quality.coverage),
            "samples": quality.samples,
            "lastFitTime": rfc3339(fitted_at_s) if fitted_at_s is not None else None,
            "notes": notes[:500] or None,
        }
    )


def decision_status(decision: Decision, applied: bool, now_s: float) -> dict[str, Any]:
    return {
        "time": rfc3339(now_s),
        "replicas": decision.replicas,
        "reason": decision.reason,
        "detail": decision.detail[:500],
        "applied": applied,
    }


def limited(decision: Decision | None) -> Condition:
    """``ScalingLimited``: True when bounds or rate limits changed the recommendation."""
    hits = [
        n
        for n in ("at max_replicas", "at min_replicas", "rate limited")
        if decision is not None and n in decision.detail
    ]
    if hits:
        return Condition("ScalingLimited", True, "Limited", ", ".join(hits))
    return Condition("ScalingLimited", False, "WithinLimits")


def body(**fields: Any) -> dict[str, Any]:
    """A status body without absent fields; numbers made JSON-safe."""
    out: dict[str, Any] = {}
    for k, raw in fields.items():
        v = _num(raw) if isinstance(raw, float) else raw
        if v is not None:
            out[k] = v
    return out
