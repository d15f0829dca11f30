"""Demand history from Prometheus range queries (or any Prometheus-compatible query API).

Prometheus answers at most 11,000 points per series per ``query_range`` call, so a long
window is split into chunks of ``MAX_POINTS`` steps and the pieces are stitched together.
Range answers are aligned to the step on our side: a sample lands in the slot of its
timestamp and missing slots stay NaN, so a gap in the data is a gap in the series (the
models fill or tolerate it), never a silent shift of every later point.

Errors: :class:`SourceUnavailable` (connection, timeout, 5xx: the controller holds its last
safe decision), :class:`QueryError` (Prometheus rejected the query: the user must fix it).
An empty answer is not an error here; the caller decides (see ``EmptyResult`` handling in
the controller).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
import numpy as np

from forecaster.models.base import FloatArray

MAX_POINTS: Final = 11_000
_BODY_LIMIT: Final = 300


class SourceError(Exception):
    """Base class of metric-source failures."""


class SourceUnavailable(SourceError):
    """The source could not be reached or failed (transient)."""


class QueryError(SourceError):
    """The source rejected the query (bad PromQL, wrong type): a user error."""


@dataclass(frozen=True)
class RangeResult:
    """A demand series on a uniform grid: ``values[i]`` is the value at ``start_s + i * step_s``."""

    start_s: float
    step_s: float
    values: FloatArray
    """NaN where the query returned no sample."""

    @property
    def end_s(self) -> float:
        """Timestamp of the last slot."""
        return float(self.start_s + (self.values.shape[0] - 1) * self.step_s)


class MetricSource(Protocol):
    """What the controller reads demand from."""

    async def range(self, query: str, start_s: float, end_s: float, step_s: float) -> RangeResult:
        """The query over ``[start_s, end_s]`` at ``step_s``, summed over series."""
        ...

    async def instant(self, query: str, at_s: float | None = None) -> float | None:
        """The query's value now (or at ``at_s``), summed over series; None when empty."""
        ...


def grid(start_s: float, end_s: float, step_s: float) -> int:
    """Number of slots in ``[start_s, end_s]`` at ``step_s``."""
    if not (step_s > 0 and end_s >= start_s):
        raise ValueError(f"bad range: start={start_s}, end={end_s}, step={step_s}")
    return math.floor((end_s - start_s) / step_s + 1e-9) + 1


def place(values: FloatArray, start_s: float, step_s: float, samples: list[list[Any]]) -> None:
    """Add ``[timestamp, "value"]`` samples into their slots (NaN-aware sum over series)."""
    for ts, raw in samples:
        i = round((float(ts) - start_s) / step_s)
        v = float(raw)
        if 0 <= i < values.shape[0] and math.isfinite(v):
            values[i] = v if math.isnan(values[i]) else values[i] + v


class PrometheusSource:
    """:class:`MetricSource` over the Prometheus HTTP API; the session is owned by the caller."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = dict(headers or {})

    async def _api(self, endpoint: str, params: Mapping[str, str]) -> Any:
        url = f"{self.url}/api/v1/{endpoint}"
        try:
            async with self._session.post(
                url, data=dict(params), headers=self._headers, timeout=self._timeout
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise SourceUnavailable(f"prometheus {endpoint}: {type(e).__name__}: {e}") from e
        if status >= 500 or status == 429:
            raise SourceUnavailable(f"prometheus {endpoint}: HTTP {status}: {text[:_BODY_LIMIT]}")
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise SourceUnavailable(f"prometheus {endpoint}: HTTP {status}, not JSON") from e
        if status != 200 or doc.get("status") != "success":
            raise QueryError(
                f"prometheus rejected {params.get('query', '')!r}: "
                f"{str(doc.get('error', text))[:_BODY_LIMIT]}"
            )
        return doc["data"]

    async def range(self, query: str, start_s: float, end_s: float, step_s: float) -> RangeResult:
        n = grid(start_s, end_s, step_s)
        values = np.full(n, np.nan)
        for first in range(0, n, MAX_POINTS):
            last = min(n, first + MAX_POINTS) - 1
            data = await self._api(
                "query_range",
                {
                    "query": query,
                    "start": f"{start_s + first * step_s:.3f}",
                    "end": f"{start_s + last * step_s:.3f}",
                    "step": f"{step_s:g}",
                },
            )
            if data.get("resultType") != "matrix":
                raise QueryError(f"query {query!r} returned {data.get('resultType')}, not a range vector")
            for series in data["result"]:
                place(values, start_s, step_s, series["values"])
        return RangeResult(start_s, step_s, values)

    async def instant(self, query: str, at_s: float | None = None) -> float | None:
        params = {"query": query} if at_s is None else {"query": query, "time": f"{at_s:.3f}"}
        data = await self._api("query", params)
        if data.get("resultType") == "scalar":
            return float(data["result"][1])
        if data.get("resultType") != "vector":
            raise QueryError(f"query {query!r} returned {data.get('resultType')}, not an instant vector")
        if not data["result"]:
            return None
        return float(sum(float(r["value"][1]) for r in data["result"]))
