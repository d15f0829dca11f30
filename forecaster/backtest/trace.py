"""Reading and checking a trace CSV (``timestamp_s,requests[,...]``), and turning it into
demand per control step under the replay model of docs/design.md.

Every problem is one line naming the row (1-based, header is row 1) and what is allowed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forecaster.models.base import FloatArray

TIME_COLUMN = "timestamp_s"


class TraceError(Exception):
    """A trace file cannot be replayed; the message is one line for the user."""


@dataclass(frozen=True)
class Trace:
    """A validated trace: bucket start times (s) and request counts per bucket."""

    timestamps_s: FloatArray
    requests: FloatArray
    bucket_s: float
    """Length of the buckets (the median spacing; the last bucket has this length)."""
    column: str
    name: str

    @property
    def span_s(self) -> float:
        return float(self.timestamps_s[-1] - self.timestamps_s[0] + self.bucket_s)


def _parse_float(text: str, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"row {row}: {column}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"row {row}: {column}={text!r} must be a finite number")
    return value


def _header(reader: csv.DictReader[str], column: str, name: str) -> None:
    fields = reader.fieldnames or []
    for need in (TIME_COLUMN, column):
        if need not in fields:
            have = ", ".join(fields) or "none"
            raise TraceError(f"{name}: row 1: missing column {need!r} (columns present: {have})")


def parse_rows(lines: list[str], column: str = "requests", name: str = "trace") -> Trace:
    """Validate CSV text lines into a :class:`Trace` (pure; no file access)."""
    reader = csv.DictReader(lines)
    _header(reader, column, name)
    ts: list[float] = []
    counts: list[float] = []
    for row, rec in enumerate(reader, start=2):
        t = _parse_float(rec.get(TIME_COLUMN) or "", row, TIME_COLUMN)
        v = _parse_float(rec.get(column) or "", row, column)
        if v < 0:
            raise TraceError(f"row {row}: {column}={v:g} is negative; counts must be >= 0")
        if ts and t == ts[-1]:
            raise TraceError(f"row {row}: duplicated timestamp_s={t:g}; timestamps must be unique")
        if ts and t < ts[-1]:
            raise TraceError(
                f"row {row}: timestamp_s={t:g} is before the previous row ({ts[-1]:g}); "
                "timestamps must increase"
            )
        ts.append(t)
        counts.append(v)
    if len(ts) < 2:
        raise TraceError(f"{name}: {len(ts)} data rows; at least 2 are needed")
    t_arr = np.asarray(ts)
    return Trace(t_arr, np.asarray(counts), float(np.median(np.diff(t_arr))), column, name)


def load_trace(path: Path, column: str = "requests") -> Trace:
    """Read and validate a trace file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read: {e}") from e
    return parse_rows(text.splitlines(), column, path.name)


def demand_per_step(trace: Trace, step_s: float) -> FloatArray:
    """Demand (requests/s) per control step, held constant over each bucket.

    A bucket shorter than the step contributes its peak rate (the step's demand is the
    highest rate of the buckets starting in it); steps inside a longer bucket take its rate.
    """
    t0 = trace.timestamps_s[0]
    durations = np.append(np.diff(trace.timestamps_s), trace.bucket_s)
    rates = trace.requests / durations
    n_steps = math.ceil(trace.span_s / step_s - 1e-9)
    idx = np.floor((trace.timestamps_s - t0) / step_s + 1e-9).astype(np.int64)
    lam = np.full(n_steps, -1.0)
    np.maximum.at(lam, idx, rates)
    # Steps that no bucket starts in lie inside the previous (longer) bucket: forward-fill.
    starts = np.where(lam >= 0, np.arange(n_steps), 0)
    np.maximum.accumulate(starts, out=starts)
    return lam[starts]
